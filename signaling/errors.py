"""Typed protocol errors: each carries the ``code`` sent on the wire.

They are turned into ``error`` messages in exactly one place (the WebSocket edge).
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "Forbidden",
    "InvalidData",
    "MalformedMessage",
    "NotAuthenticated",
    "ProtocolError",
    "RateLimited",
    "Unavailable",
    "UnknownType",
]


class ProtocolError(Exception):
    """Base of the errors a client caused; ``code`` is stable, ``reason`` is for people."""

    code = "protocol_error"

    def __init__(self, reason: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.details = details or {}


class MalformedMessage(ProtocolError):
    code = "malformed_message"


class InvalidData(ProtocolError):
    """A channel's payload that does not fit the channel (shape or size)."""

    code = "invalid_data"


class UnknownType(ProtocolError):
    code = "unknown_type"


class NotAuthenticated(ProtocolError):
    code = "not_authenticated"


class Forbidden(ProtocolError):
    code = "forbidden"


class RateLimited(ProtocolError):
    code = "rate_limited"


class Unavailable(ProtocolError):
    """Not the client's fault: a part the server needs (the shared bus) is down for now."""

    code = "service_unavailable"
