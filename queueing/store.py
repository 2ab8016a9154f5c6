"""Where the queue keeps what it must not lose: a journal of commands and the event log.

The machine is rebuilt on start from the last snapshot plus the journal entries
written after it. Every implementation passes the same contract tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = ["QueueStore", "Recovered"]


@dataclass
class Recovered:
    """What a store gives back on start."""

    snapshot: dict[str, Any] | None = None
    journal: list[dict[str, Any]] = field(default_factory=list)
    """Command records written after the snapshot, oldest first."""
    last_entry: int = 0
    """Number of the newest journal entry (0 when there is none)."""


class QueueStore(Protocol):
    async def load(self) -> Recovered: ...

    async def append(
        self, entry: int, command: dict[str, Any], events: list[dict[str, Any]]
    ) -> None:
        """Persist journal entry number ``entry`` and the events it produced, atomically."""

    async def compact(self, snapshot: dict[str, Any], entry: int) -> None:
        """Keep ``snapshot`` as the state after entry ``entry``; older entries may go."""

    async def read_events(
        self, since: float | None = None, until: float | None = None
    ) -> list[dict[str, Any]]:
        """Event log rows with ``since <= at < until``, in order."""

    async def close(self) -> None: ...
