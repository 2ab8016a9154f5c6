"""A queue store that keeps everything in the process: for tests and throwaway runs."""

from __future__ import annotations

from typing import Any

from ..store import Recovered

__all__ = ["MemoryQueueStore"]


def in_window(row: dict[str, Any], since: float | None, until: float | None) -> bool:
    at = float(row["at"])
    return (since is None or at >= since) and (until is None or at < until)


class MemoryQueueStore:
    def __init__(self) -> None:
        self._snapshot: dict[str, Any] | None = None
        self._snapshot_entry = 0
        self._journal: list[tuple[int, dict[str, Any]]] = []
        self._events: list[dict[str, Any]] = []

    async def load(self) -> Recovered:
        journal = [c for n, c in self._journal if n > self._snapshot_entry]
        last = self._journal[-1][0] if self._journal else self._snapshot_entry
        return Recovered(self._snapshot, journal, last)

    async def append(
        self, entry: int, command: dict[str, Any], events: list[dict[str, Any]]
    ) -> None:
        self._journal.append((entry, command))
        self._events.extend(events)

    async def compact(self, snapshot: dict[str, Any], entry: int) -> None:
        self._snapshot, self._snapshot_entry = snapshot, entry
        self._journal = [(n, c) for n, c in self._journal if n > entry]

    async def read_events(
        self, since: float | None = None, until: float | None = None
    ) -> list[dict[str, Any]]:
        return [row for row in self._events if in_window(row, since, until)]

    async def close(self) -> None:
        return None
