"""What a client call can raise: every aiohttp error is mapped to one of these at the
boundary, so callers catch ``ClientError`` and never a transport's own exceptions."""

from __future__ import annotations

from typing import Any

from signaling.messages import ErrorMessage

__all__ = [
    "ClientError",
    "ConnectFailed",
    "ConnectionLost",
    "ServerError",
    "UnexpectedMessage",
]


class ClientError(Exception):
    """Base of everything the client raises besides ``TimeoutError``."""


class ConnectFailed(ClientError):
    """No WebSocket could be opened: nothing listens, or the server refused the upgrade."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        """HTTP status of a refused upgrade (403 for a foreign ``Origin``...), else None."""


class ConnectionLost(ClientError):
    """The WebSocket closed while the client still needed it."""

    def __init__(self, message: str, *, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        """The WebSocket close code (1008 policy, 1009 too big, 4000 replaced...), if any."""


class ServerError(ClientError):
    """The server answered a request with ``error``: ``code`` is the stable wire code."""

    def __init__(
        self,
        code: str,
        reason: str,
        details: dict[str, Any] | None = None,
        *,
        request_id: str | None = None,
    ) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason
        self.details = details or {}
        self.request_id = request_id

    @classmethod
    def from_message(cls, message: ErrorMessage) -> ServerError:
        return cls(message.code, message.reason, dict(message.details), request_id=message.id)

    def to_message(self) -> ErrorMessage:
        """The ``error`` message this was made from, for code that reasons on the wire."""
        return ErrorMessage(
            code=self.code, reason=self.reason, id=self.request_id, details=self.details
        )


class UnexpectedMessage(ClientError):
    """The server sent a frame the protocol does not allow, or a reply of another type
    than the one asked for."""

    def __init__(self, message: str, *, frame: str | bytes = "") -> None:
        super().__init__(message)
        self.frame = frame
        """The offending frame as received (empty for a well-formed reply of the wrong type)."""
