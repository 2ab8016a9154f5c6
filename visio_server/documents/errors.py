"""The one error of the documents glue, carrying its wire code and its HTTP status.

The WebSocket edge turns it into an ``error`` message, the HTTP middleware into a JSON
``{"code", "reason"}`` with ``status``; nothing else catches it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["DocumentError"]


class DocumentError(Exception):
    """A refusal of a document request: ``code`` is for programs, ``reason`` for people."""

    def __init__(self, code: str, reason: str, status: int = 409, **details: Any) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason
        self.status = status
        self.details = details
