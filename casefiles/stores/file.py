"""The embedded default case store: one JSON file per case in a local folder.

Files in ``folder``:

- ``<case id>.json``: the case, replaced atomically (written to a temporary file in the
  same folder, then renamed over the old one); the id is percent-encoded, dots too, so
  no id can name a path outside the folder;
- ``shares/<code>.json``: a share record, replaced the same way;
- ``index.jsonl``: what the indexes learned, one line per change, replayed on start:
  ``{"call": c, "case": id}``, ``{"document": d, "case": id}`` (``null`` once the
  document left the case), ``{"work": id, "on": true|false}``;
- ``events.jsonl``: the audit log, one row per line.

One writer per folder (one process): the compare-and-set reads the version from the
case file, and nothing awaits between that check and the writes. A save writes the
index lines, then the audit rows, then the case: a crash in between leaves index
entries or audit rows of a change that did not happen, which a retry repeats, never a
change without its rows. A line torn by a crash (the last one, without its newline) is
dropped before anything is appended after it. With ``fsync`` every write is synced,
and so is the folder after each rename.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ..machine import CaseFile
from ..model import AuditRow, Share
from ..store import CaseConflict
from .memory import dump, in_window

__all__ = ["FileCaseStore"]

_LONGEST_CODE = 64


class FileCaseStore:
    def __init__(self, folder: str | os.PathLike[str], fsync: bool = False) -> None:
        self.folder = Path(folder)
        self._shares = self.folder / "shares"
        self._shares.mkdir(parents=True, exist_ok=True)
        self._fsync = fsync
        self._index_path = self.folder / "index.jsonl"
        self._events_path = self.folder / "events.jsonl"
        self._calls: dict[str, str] = {}
        self._documents: dict[str, str] = {}
        self._work: set[str] = set()
        self._started = False

    def _start(self) -> None:
        """Repair torn lines and replay the index, once."""
        if self._started:
            return
        _drop_torn_line(self._events_path)
        for row in _read_lines(self._index_path, repair=True):
            self._learn(row)
        self._started = True

    def _learn(self, row: dict[str, Any]) -> None:
        if "call" in row:
            self._calls[row["call"]] = row["case"]
        elif "document" in row:
            if row["case"] is None:
                self._documents.pop(row["document"], None)
            else:
                self._documents[row["document"]] = row["case"]
        elif row["on"]:
            self._work.add(row["work"])
        else:
            self._work.discard(row["work"])

    # ------------------------------------------------------------------ cases

    async def load(self, case_id: str) -> CaseFile | None:
        stored = _read_json(self._case_path(case_id))
        return None if stored is None else CaseFile.from_dict(stored)

    async def save(self, case: CaseFile, rows: list[AuditRow]) -> None:
        self._start()
        path = self._case_path(case.id)
        before = _read_json(path)
        stored = 0 if before is None else int(before["version"])
        if stored != case.version:
            raise CaseConflict(case.id, case.version, stored)
        version = stored + 1
        index: list[dict[str, Any]] = [
            {"call": call, "case": case.id}
            for call in case.calls
            if self._calls.get(call) != case.id
        ]
        index += [
            {"document": doc, "case": case.id}
            for doc in case.documents
            if self._documents.get(doc) != case.id
        ]
        if before is not None:
            index += [
                {"document": doc["id"], "case": None}
                for doc in before["documents"]
                if doc["id"] not in case.documents
            ]
        if case.has_work() != (case.id in self._work):
            index.append({"work": case.id, "on": case.has_work()})
        self._append(self._index_path, index)
        for row in index:
            self._learn(row)
        self._append(self._events_path, [row.to_dict() for row in rows])
        self._replace(path, {**case.to_dict(), "version": version})
        case.version = version

    async def case_of_call(self, call: str) -> str | None:
        self._start()
        return self._calls.get(call)

    async def case_of_document(self, doc: str) -> str | None:
        self._start()
        return self._documents.get(doc)

    async def cases_with_work(self) -> list[str]:
        self._start()
        return sorted(self._work)

    # ------------------------------------------------------------------ shares

    async def load_share(self, code: str) -> Share | None:
        if not 0 < len(code) <= _LONGEST_CODE:
            return None  # typed by a citizen: never a file name the system refuses
        stored = _read_json(self._shares / _file_name(code))
        return None if stored is None else Share.from_dict(stored)

    async def save_share(self, share: Share, rows: list[AuditRow]) -> None:
        self._start()
        self._append(self._events_path, [row.to_dict() for row in rows])
        self._replace(self._shares / _file_name(share.code), share.to_dict())

    # ------------------------------------------------------------------ audit

    async def read_audit(
        self, since: float | None = None, until: float | None = None
    ) -> list[dict[str, Any]]:
        rows = _read_lines(self._events_path, repair=False)
        return [row for row in rows if in_window(row, since, until)]

    async def close(self) -> None:
        return None  # nothing stays open between calls

    # ------------------------------------------------------------------ writing

    def _case_path(self, case_id: str) -> Path:
        return self.folder / _file_name(case_id)

    def _append(self, path: Path, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        with path.open("a", encoding="utf-8") as stream:
            stream.write("".join(dump(row) + "\n" for row in rows))
            stream.flush()
            if self._fsync:
                os.fsync(stream.fileno())

    def _replace(self, path: Path, value: dict[str, Any]) -> None:
        temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            with temporary.open("w", encoding="utf-8") as stream:
                stream.write(dump(value))
                stream.flush()
                if self._fsync:
                    os.fsync(stream.fileno())
            os.replace(temporary, path)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        if self._fsync:
            folder = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(folder)
            finally:
                os.close(folder)


def _file_name(identifier: str) -> str:
    if not identifier:
        raise ValueError("an empty id names no file")
    return quote(identifier, safe="").replace(".", "%2E") + ".json"


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        return None
    value: dict[str, Any] = json.loads(text)
    return value


def _drop_torn_line(path: Path) -> None:
    """Only the tail is looked at: the audit log may be long."""
    try:
        with path.open("rb") as stream:
            size = stream.seek(0, os.SEEK_END)
            if size == 0:
                return
            stream.seek(size - 1)
            if stream.read(1) == b"\n":
                return
    except FileNotFoundError:
        return
    _read_lines(path, repair=True)


def _read_lines(path: Path, *, repair: bool) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    text = path.read_text("utf-8")
    complete, _, torn = text.rpartition("\n")
    if torn and repair:
        with path.open("r+", encoding="utf-8") as stream:
            stream.truncate(len(complete.encode("utf-8")) + (1 if complete else 0))
    return [json.loads(line) for line in complete.splitlines() if line]
