"""ICE servers for a call, with short-lived TURN credentials (the TURN REST scheme).

The username is ``"<unix expiry>:<user>"`` and the password is
base64(HMAC-SHA1(secret, username)): coturn started with ``use-auth-secret`` and the
same ``static-auth-secret`` checks them without any call to this server.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

__all__ = ["ice_servers", "turn_credentials"]


def turn_credentials(secret: str, user: str, now: float, ttl_s: float) -> tuple[str, str]:
    username = f"{int(now + ttl_s)}:{user}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()


def ice_servers(
    stun_urls: list[str],
    turn_urls: list[str],
    turn_secret: str,
    user: str,
    now: float,
    ttl_s: float,
) -> list[dict[str, object]]:
    """The RTCConfiguration.iceServers a party of a call should use."""
    servers: list[dict[str, object]] = []
    if stun_urls:
        servers.append({"urls": list(stun_urls)})
    if turn_urls and turn_secret:
        username, credential = turn_credentials(turn_secret, user, now, ttl_s)
        servers.append({"urls": list(turn_urls), "username": username, "credential": credential})
    return servers
