"""Errors of a command the queue refuses; ``code`` is the wire error code.

A refused command changes nothing: the machine checks before it mutates.
"""

from __future__ import annotations

from typing import Any

__all__ = ["QueueError"]


class QueueError(Exception):
    def __init__(self, code: str, reason: str, **details: Any) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.details = details
