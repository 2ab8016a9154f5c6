"""JWT authentication: who is on the other end of a connection, and in which role.

Tokens are checked against an algorithm allow-list (so ``alg: none`` and algorithm
confusion are refused), must carry ``sub``, ``role`` and ``exp``, and are verified
with the shared secret (HS*) or with the identity provider's keys from its JWKS URL
(RS256/ES256). A token travels in the first WebSocket message or in an
``Authorization: Bearer`` header, never in a URL.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, Literal

import jwt

from signaling import NotAuthenticated

from .config import Config

__all__ = ["ROLES", "Authenticator", "Principal", "mint_token"]

Role = Literal["kiosk", "expert", "interpreter", "supervisor", "admin", "device"]
ROLES: tuple[Role, ...] = ("kiosk", "expert", "interpreter", "supervisor", "admin", "device")


@dataclass(frozen=True)
class Principal:
    """The verified identity behind a token."""

    role: Role
    id: str
    name: str
    partner: str = ""
    services: tuple[str, ...] = ()
    languages: tuple[str, ...] = ()
    expires_at: float = 0.0

    @property
    def answers_calls(self) -> bool:
        return self.role in ("expert", "interpreter")

    @property
    def watches_queues(self) -> bool:
        return self.role in ("admin", "supervisor")


class Authenticator:
    def __init__(self, config: Config) -> None:
        self._config = config
        self._auth = config.auth
        self._jwks = jwt.PyJWKClient(self._auth.jwks_url) if self._auth.jwks_url else None

    async def verify(self, token: str) -> Principal:
        """The principal of a valid token; ``NotAuthenticated`` saying why otherwise."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise NotAuthenticated("the token is not a JWT") from None
        algorithm = header.get("alg")
        if algorithm not in self._auth.algorithms:
            raise NotAuthenticated(f"token algorithm {algorithm!r} is not allowed")
        key: Any
        if str(algorithm).startswith("HS"):
            key = self._auth.hs256_secret
        elif self._jwks is not None:
            jwks = self._jwks
            try:
                signing_key = await asyncio.to_thread(jwks.get_signing_key_from_jwt, token)
            except jwt.PyJWTError as exc:
                raise NotAuthenticated(f"no key to check the token: {exc}") from None
            # The header chooses both the key (kid) and the algorithm (alg): an RSA key
            # named with an EC algorithm, or the reverse, would reach the crypto library
            # as a key of the wrong type.
            if signing_key.key_type != _KEY_TYPE_OF.get(str(algorithm)[:2]):
                raise NotAuthenticated(
                    f"the token's algorithm {algorithm!r} does not fit its key "
                    f"({signing_key.key_type} key {signing_key.key_id!r})"
                )
            key = signing_key.key
        else:
            raise NotAuthenticated("no key is configured for this token algorithm")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=list(self._auth.algorithms),
                issuer=self._auth.issuer or None,
                audience=self._auth.audience or None,
                leeway=self._auth.leeway_s,
                options={
                    "require": ["exp", "sub", "role"],
                    "verify_aud": bool(self._auth.audience),
                },
            )
        except jwt.ExpiredSignatureError:
            raise NotAuthenticated("the token has expired") from None
        except jwt.PyJWTError as exc:
            raise NotAuthenticated(f"the token is not valid: {exc}") from None
        return self._principal(claims)

    def _principal(self, claims: dict[str, Any]) -> Principal:
        role = claims.get("role")
        subject = claims.get("sub")
        if role not in ROLES:
            raise NotAuthenticated(f"unknown role {role!r}")
        if not isinstance(subject, str) or not subject:
            raise NotAuthenticated("the token has no subject")
        name = claims.get("name")
        partner = str(claims.get("partner", ""))
        services = _strings(claims.get("services", []))
        languages = _strings(claims.get("languages", ["fr"]))
        if role == "kiosk":
            kiosk = self._config.kiosk(subject)
            if kiosk is None:
                raise NotAuthenticated(f"kiosk {subject!r} is not configured on this server")
            name = name or kiosk.name
            services = tuple(kiosk.services)
        elif role == "device":
            # A kiosk's device agent: it acts for that kiosk's scanner and printer only.
            kiosk = self._config.kiosk(subject)
            if kiosk is None:
                raise NotAuthenticated(f"device of kiosk {subject!r}: no such kiosk is configured")
            name = name or f"{kiosk.name} (device)"
            services = ()
        elif role in ("expert", "interpreter"):
            known = self._config.expert(subject)
            if not services and known is not None:
                services = tuple(known.services)
            name = name or (known.name if known else subject)
            partner = partner or (known.partner if known else "")
        return Principal(
            role=role,
            id=subject,
            name=str(name or subject),
            partner=partner,
            services=services,
            languages=languages,
            expires_at=float(claims["exp"]),
        )


_KEY_TYPE_OF = {"RS": "RSA", "PS": "RSA", "ES": "EC"}
"""The JWK key type each family of asymmetric algorithms needs."""


def _strings(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise NotAuthenticated("token claims 'services' and 'languages' are lists of strings")
    return tuple(value)


def mint_token(
    config: Config, role: str, sub: str, *, ttl_s: float | None = None, **claims: Any
) -> str:
    """A development token signed with the configured shared secret."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    secret = config.auth.hs256_secret
    if not secret:
        raise ValueError(
            "minting needs auth.hs256_secret (tokens from an identity provider are minted there)"
        )
    now = time.time()
    payload = {
        "sub": sub,
        "role": role,
        "iat": int(now),
        "exp": int(now + (ttl_s if ttl_s is not None else config.auth.dev_token_ttl_s)),
        **claims,
    }
    if config.auth.issuer:
        payload.setdefault("iss", config.auth.issuer)
    if config.auth.audience:
        payload.setdefault("aud", config.auth.audience)
    return jwt.encode(payload, secret, algorithm="HS256")
