"""A queue store that keeps everything in the process: for tests and throwaway runs.

Several writers in one process may share it, which is how the contract tests check
the conflict rules without a server.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from ..store import JournalEntry, QueueStore, Recovered, StoreConflict, StoreLost

__all__ = ["MemoryQueueStore"]


def in_window(row: dict[str, Any], since: float | None, until: float | None) -> bool:
    at = float(row["at"])
    return (since is None or at >= since) and (until is None or at < until)


async def append_in_turn(
    store: QueueStore, entries: list[tuple[int, dict[str, Any], list[dict[str, Any]]]]
) -> None:
    """``append_many`` of a store with one writer: nothing can come between the entries,
    so writing them in turn is all or none too (the first one checks the number)."""
    for entry, command, events in entries:
        await store.append(entry, command, events)


class MemoryQueueStore:
    shared = False

    def __init__(self) -> None:
        self._snapshot: dict[str, Any] | None = None
        self._snapshot_entry = 0
        self._last = 0
        self._journal: list[JournalEntry] = []
        self._events: list[dict[str, Any]] = []
        self._appended = asyncio.Condition()

    async def load(self) -> Recovered:
        journal = [c for n, c in self._journal if n > self._snapshot_entry]
        return Recovered(self._snapshot, journal, self._last)

    async def append(
        self, entry: int, command: dict[str, Any], events: list[dict[str, Any]]
    ) -> None:
        if entry != self._last + 1:
            raise StoreConflict(self._last)
        self._last = entry
        self._journal.append((entry, command))
        self._events.extend(events)
        async with self._appended:
            self._appended.notify_all()

    async def append_many(
        self, entries: list[tuple[int, dict[str, Any], list[dict[str, Any]]]]
    ) -> None:
        await append_in_turn(self, entries)

    async def read_journal(self, after: int) -> list[JournalEntry]:
        if after < self._snapshot_entry:
            raise StoreLost(f"entries after {after} were compacted away")
        return [(n, c) for n, c in self._journal if n > after]

    async def wait_journal(self, after: int, block_s: float) -> list[JournalEntry]:
        if self._last <= after:
            async with self._appended:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        self._appended.wait_for(lambda: self._last > after), block_s
                    )
        return await self.read_journal(after)

    async def compact(self, snapshot: dict[str, Any], entry: int) -> None:
        if entry <= self._snapshot_entry:
            return
        self._snapshot, self._snapshot_entry = snapshot, entry
        self._journal = [(n, c) for n, c in self._journal if n > entry]

    async def seed(self, snapshot: dict[str, Any], entry: int, *, over: int | None = None) -> bool:
        empty = not self._last and self._snapshot is None
        if (over is None and not empty) or (over is not None and self._last != over):
            return False
        self._snapshot, self._snapshot_entry, self._last = snapshot, entry, entry
        self._journal = [(n, c) for n, c in self._journal if n > entry]
        return True

    async def read_events(
        self, since: float | None = None, until: float | None = None
    ) -> list[dict[str, Any]]:
        return [row for row in self._events if in_window(row, since, until)]

    async def close(self) -> None:
        return None
