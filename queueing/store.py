"""Where the queue keeps what it must not lose: a journal of commands and the event log.

The machine is rebuilt on start from the last snapshot plus the journal entries
written after it. Entries are numbered from 1 without gaps, and ``append`` takes only
the next number: when several nodes share one store, the first to write entry ``n``
wins and the others learn it from ``StoreConflict``, catch up and try again. Every
implementation passes the same contract tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = ["JournalEntry", "QueueStore", "Recovered", "StoreConflict", "StoreLost"]

JournalEntry = tuple[int, dict[str, Any]]
"""An entry number and its command record."""


class StoreConflict(Exception):
    """Entry ``n`` was not the next one: another writer got there first."""

    def __init__(self, last_entry: int, missed: list[JournalEntry] | None = None) -> None:
        super().__init__(f"the store's last entry is {last_entry}")
        self.last_entry = last_entry
        self.missed = missed or []
        """The entries after the writer's last one, when the store could send them along."""


class StoreLost(Exception):
    """The store no longer holds the history this writer built on: it restarted
    without its data, or was started again from another writer's state."""


@dataclass
class Recovered:
    """What a store gives back on start."""

    snapshot: dict[str, Any] | None = None
    journal: list[dict[str, Any]] = field(default_factory=list)
    """Command records written after the snapshot, oldest first."""
    last_entry: int = 0
    """Number of the newest journal entry (0 when there is none)."""


class QueueStore(Protocol):
    shared: bool
    """True when other nodes write to the same store, so new entries must be followed."""

    async def load(self) -> Recovered: ...

    async def append(
        self, entry: int, command: dict[str, Any], events: list[dict[str, Any]]
    ) -> None:
        """Persist journal entry number ``entry`` and the events it produced, atomically.

        Raises ``StoreConflict`` unless ``entry`` is the next number, and ``StoreLost``
        when the history this writer loaded is gone."""

    async def append_many(
        self, entries: list[tuple[int, dict[str, Any], list[dict[str, Any]]]]
    ) -> None:
        """``append`` for consecutive entries ``(number, command, events)``, all or none."""

    async def read_journal(self, after: int) -> list[JournalEntry]:
        """Entries numbered above ``after``, oldest first; ``StoreLost`` if some were
        compacted away (load again)."""

    async def wait_journal(self, after: int, block_s: float) -> list[JournalEntry]:
        """Like ``read_journal``, but waits up to ``block_s`` seconds for one to come."""

    async def compact(self, snapshot: dict[str, Any], entry: int) -> None:
        """Keep ``snapshot`` as the state after entry ``entry``; older entries may go."""

    async def seed(self, snapshot: dict[str, Any], entry: int, *, over: int | None = None) -> bool:
        """Start the store again from ``snapshot``, the state after entry ``entry``.

        With ``over=None``, only an emptied store (restarted without its data); with a
        number, only a store of this writer's history whose last entry is ``over`` (it
        lost the later ones). False otherwise (another writer was first): load it."""

    async def read_events(
        self, since: float | None = None, until: float | None = None
    ) -> list[dict[str, Any]]:
        """Event log rows with ``since <= at < until``, in order."""

    async def close(self) -> None: ...
