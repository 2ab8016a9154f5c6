"""The embedded default store: JSON lines in a local folder.

Files in ``folder``:

- ``journal.jsonl``: one line per applied command, ``{"n": entry, "command": {...}}``;
- ``events.jsonl``: the event log, one line per event, ``{"n": entry, ...event}``;
- ``snapshot.json``: the machine state after entry ``n``, replaced atomically.

Both logs are written with one ``write`` per applied command and flushed before the
command's reply leaves, so a restart of the process loses nothing accepted; with
``fsync`` a power cut does not either, at a cost of a disk sync per command. A line
torn by a crash (the last one, without its newline) is dropped on load.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from pathlib import Path
from typing import IO, Any

from ..store import JournalEntry, Recovered, StoreConflict, StoreLost
from .memory import append_in_turn, in_window

__all__ = ["FileQueueStore"]


class FileQueueStore:
    shared = False

    def __init__(self, folder: str | os.PathLike[str], *, fsync: bool = False) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._fsync = fsync
        self._journal_path = self.folder / "journal.jsonl"
        self._events_path = self.folder / "events.jsonl"
        self._snapshot_path = self.folder / "snapshot.json"
        self._journal: IO[str] | None = None
        self._events: IO[str] | None = None
        self._last = 0
        self._snapshot_entry = 0
        self._appended = asyncio.Event()

    async def load(self) -> Recovered:
        await self.close()  # loading again (after a failed write) starts from the files
        snapshot_entry = 0
        snapshot = None
        if self._snapshot_path.exists():
            stored = json.loads(self._snapshot_path.read_text("utf-8"))
            snapshot, snapshot_entry = stored["state"], stored["n"]
        rows = _read_lines(self._journal_path)
        journal = [row["command"] for row in rows if row["n"] > snapshot_entry]
        last = max([snapshot_entry, *(row["n"] for row in rows)])
        self._drop_unjournaled_events(last)
        self._last, self._snapshot_entry = last, snapshot_entry
        self._journal = self._journal_path.open("a", encoding="utf-8")
        self._events = self._events_path.open("a", encoding="utf-8")
        return Recovered(snapshot, journal, last)

    def _drop_unjournaled_events(self, last: int) -> None:
        """Events are written before their journal entry: a crash between the two left
        events of a command that was never acknowledged. They go, with any torn line."""
        rows = _read_lines(self._events_path)
        kept = [row for row in rows if row["n"] <= last]
        if len(kept) != len(rows):
            rewritten = self._events_path.with_suffix(".tmp")
            rewritten.write_text("".join(_line(row) for row in kept), "utf-8")
            os.replace(rewritten, self._events_path)

    async def append(
        self, entry: int, command: dict[str, Any], events: list[dict[str, Any]]
    ) -> None:
        assert self._journal is not None and self._events is not None, "load() first"
        if entry != self._last + 1:
            raise StoreConflict(self._last)
        if events:
            lines = "".join(_line({"n": entry, **event}) for event in events)
            self._write(self._events, lines)
        self._write(self._journal, _line({"n": entry, "command": command}))
        self._last = entry
        self._appended.set()

    async def append_many(
        self, entries: list[tuple[int, dict[str, Any], list[dict[str, Any]]]]
    ) -> None:
        await append_in_turn(self, entries)

    async def read_journal(self, after: int) -> list[JournalEntry]:
        if after < self._snapshot_entry:
            raise StoreLost(f"entries after {after} were compacted away")
        rows = _read_lines(self._journal_path, repair=False)
        return [(row["n"], row["command"]) for row in rows if row["n"] > after]

    async def wait_journal(self, after: int, block_s: float) -> list[JournalEntry]:
        # One writer per folder: only this object's own appends can arrive.
        if self._last <= after:
            self._appended.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._appended.wait(), block_s)
        return await self.read_journal(after)

    async def seed(self, snapshot: dict[str, Any], entry: int, *, over: int | None = None) -> bool:
        empty = not self._last and not self._snapshot_path.exists()
        if (over is None and not empty) or (over is not None and self._last != over):
            return False
        await self.compact(snapshot, entry)
        self._last = entry
        return True

    def _write(self, stream: IO[str], text: str) -> None:
        stream.write(text)
        stream.flush()
        if self._fsync:
            os.fsync(stream.fileno())

    async def compact(self, snapshot: dict[str, Any], entry: int) -> None:
        assert self._journal is not None, "load() first"
        temporary = self._snapshot_path.with_suffix(".tmp")
        with temporary.open("w", encoding="utf-8") as stream:
            self._write(stream, json.dumps({"n": entry, "state": snapshot}))
        os.replace(temporary, self._snapshot_path)
        # The snapshot is in place: entries up to ``entry`` are now redundant.
        kept = [row for row in _read_lines(self._journal_path) if row["n"] > entry]
        self._journal.close()
        rewritten = self._journal_path.with_suffix(".tmp")
        with rewritten.open("w", encoding="utf-8") as stream:
            self._write(stream, "".join(_line(row) for row in kept))
        os.replace(rewritten, self._journal_path)
        self._journal = self._journal_path.open("a", encoding="utf-8")
        self._snapshot_entry = max(self._snapshot_entry, entry)

    async def read_events(
        self, since: float | None = None, until: float | None = None
    ) -> list[dict[str, Any]]:
        rows = _read_lines(self._events_path, repair=False)
        return [
            {k: v for k, v in row.items() if k != "n"}
            for row in rows
            if in_window(row, since, until)
        ]

    async def close(self) -> None:
        for stream in (self._journal, self._events):
            if stream is not None:
                stream.close()
        self._journal = self._events = None


def _line(row: dict[str, Any]) -> str:
    return json.dumps(row, separators=(",", ":"), ensure_ascii=False) + "\n"


def _read_lines(path: Path, *, repair: bool = True) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    text = path.read_text("utf-8")
    complete, _, torn = text.rpartition("\n")
    if torn and repair:
        with path.open("r+", encoding="utf-8") as stream:
            stream.truncate(len(complete.encode("utf-8")) + (1 if complete else 0))
    return [json.loads(line) for line in complete.splitlines() if line]
