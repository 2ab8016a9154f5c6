"""Which message types each role may send.

Rule 1: before ``hello`` only ``hello`` is accepted; after it, never again.
Rule 2: a role sends only the types listed here; anything else is ``forbidden``.
Per-call checks (is the sender a party of that call?) belong to the call control.
"""

from __future__ import annotations

from .errors import Forbidden, NotAuthenticated

__all__ = ["ALLOWED", "check_allowed"]

_CALL_PARTY = frozenset(
    {"ping", "call.hangup", "call.media_failed", "call.data", "rtc.sdp", "rtc.ice"}
)
_ANSWERS = _CALL_PARTY | {
    "expert.status",
    "offer.accept",
    "offer.reject",
    "wrapup.done",
}

ALLOWED: dict[str, frozenset[str]] = {
    "kiosk": _CALL_PARTY
    | {
        "call.request",
        "call.cancel",
        "call.invite",
        "device.page",
        "case.consent",
        "case.share",
        "case.withdraw",
    },
    "expert": _ANSWERS
    | {
        "call.transfer",
        "call.invite",
        "device.scan",
        "device.print",
        "device.cancel",
        "case.review",
    },
    "interpreter": _ANSWERS,
    "supervisor": _CALL_PARTY | {"queue.subscribe", "call.join"},
    "admin": frozenset({"ping", "queue.subscribe"}),
    # The kiosk's device agent: it reports; commands reach it from the call's expert.
    "device": frozenset({"ping", "device.health", "device.progress"}),
}


def check_allowed(role: str | None, message_type: str) -> None:
    if role is None:
        if message_type != "hello":
            raise NotAuthenticated("send 'hello' with your token first")
        return
    if message_type == "hello":
        raise Forbidden("already authenticated on this connection")
    if message_type not in ALLOWED.get(role, frozenset()):
        raise Forbidden(f"a {role} may not send {message_type!r}")
