"""What the agent must not forget across a lost connection or a restart, kept in its
spool directory.

Rules this module keeps:

1. Every command key the agent was given is recorded with how far it got, so a command
   delivered twice runs once, and a restart knows which commands were cut short.
2. A finished scan waits as a PDF in the spool (``scans/<key>.pdf``) until the server
   has it; only then is the file removed and the command ``done``.
3. A command's last state (``done``, ``failed``, ``cancelled``) stays ``reported=False``
   until the server acknowledged it, and is told again after a reconnect.
4. The journal file is replaced whole (write, fsync, rename): a crash leaves the old
   or the new journal, never half of one. Keys are checked before they name files.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Final, Literal

import msgspec

from signaling.messages import DeviceProgressState

__all__ = ["FINISHED", "Entry", "Journal", "valid_key"]

log = logging.getLogger(__name__)

FINISHED: Final = frozenset({"done", "failed", "cancelled"})
"""The states a command ends in, on the agent's side."""

_KEY: Final = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_JOURNAL: Final = "commands.json"


def valid_key(key: str) -> bool:
    """Whether ``key`` may name a command (and its files)."""
    return bool(_KEY.match(key))


class Entry(msgspec.Struct, kw_only=True):
    """One command as far as the agent took it."""

    key: str
    call: str
    kind: Literal["scan", "print"]
    state: DeviceProgressState
    """The last ``device.progress`` state reached."""
    updated_at: float
    upload_url: str = ""
    upload_kbps: int = 0
    title: str = ""
    document: str = ""
    """For a print, the document printed; for a scan, the document it became."""
    copies: int = 1
    page: int = 0
    pages: int = 0
    reason: str = ""
    spooled: bool = False
    """A finished scan waits in the spool for its upload."""
    job: int = 0
    """The CUPS job of a print, once submitted."""
    reported: bool = False
    """The server acknowledged the final state."""

    @property
    def finished(self) -> bool:
        return self.state in FINISHED


class Journal:
    """The spool directory: ``commands.json``, ``scans/<key>.pdf``, ``pages/<key>/``,
    ``prints/<key>.bin``."""

    def __init__(self, spool: Path) -> None:
        self.spool = spool
        self._entries: dict[str, Entry] = {}
        for folder in ("scans", "pages", "prints"):
            (spool / folder).mkdir(parents=True, exist_ok=True)
        self._load()

    def _load(self) -> None:
        path = self.spool / _JOURNAL
        if not path.exists():
            return
        try:
            entries = msgspec.json.decode(path.read_bytes(), type=list[Entry])
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            # Keep the unreadable file for a person to look at; start afresh.
            broken = path.with_name(f"{_JOURNAL}.unreadable")
            path.replace(broken)
            log.error("journal unreadable (%s), kept as %s", exc, broken)
            return
        self._entries = {entry.key: entry for entry in entries if valid_key(entry.key)}

    def get(self, key: str) -> Entry | None:
        return self._entries.get(key)

    def __iter__(self) -> Iterator[Entry]:
        return iter(list(self._entries.values()))

    def __len__(self) -> int:
        return len(self._entries)

    def put(self, entry: Entry) -> None:
        """Record ``entry`` (new or changed) and write the journal through."""
        if not valid_key(entry.key):
            raise ValueError(f"invalid command key {entry.key!r}")
        self._entries[entry.key] = entry
        self._write()

    def prune(self, now: float, keep_s: float) -> int:
        """Forget finished, reported commands older than ``keep_s``; how many."""
        old = [
            key
            for key, entry in self._entries.items()
            if entry.finished and entry.reported and now - entry.updated_at > keep_s
        ]
        for key in old:
            del self._entries[key]
        if old:
            self._write()
        return len(old)

    def scan_path(self, key: str) -> Path:
        return self.spool / "scans" / f"{key}.pdf"

    def page_path(self, key: str, number: int) -> Path:
        """Pages of a scan in the making, in a folder of the key's own (keys may hold
        ``-``: a shared prefix must not mix two scans)."""
        folder = self.spool / "pages" / key
        folder.mkdir(exist_ok=True)
        return folder / f"{number}.png"

    def print_path(self, key: str) -> Path:
        return self.spool / "prints" / f"{key}.bin"

    def drop_pages(self, key: str) -> None:
        shutil.rmtree(self.spool / "pages" / key, ignore_errors=True)

    def _write(self) -> None:
        path = self.spool / _JOURNAL
        partial = path.with_name(_JOURNAL + ".part")
        data = msgspec.json.encode(sorted(self._entries.values(), key=lambda e: e.updated_at))
        with partial.open("wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        partial.replace(path)
