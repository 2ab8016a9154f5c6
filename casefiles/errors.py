"""The one error a case file raises when it refuses a change; ``code`` is the wire code.

A refused change changes nothing: every method checks before it mutates.

Codes: ``unknown_document``, ``unknown_command``, ``unknown_case``, ``invalid_command``
(a request that can never be right: printing a rejected document, rejecting without a
reason, an unknown verdict) and ``invalid_state`` (a request that is not right *now*:
reviewing a document that has not arrived yet, accepting a rejected one).
"""

from __future__ import annotations

from typing import Any

__all__ = ["CaseError"]


class CaseError(Exception):
    def __init__(self, code: str, reason: str, **details: Any) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        """Said so that the person who asked understands what to do instead."""
        self.details = details
