"""The bytes of documents: one file per document in one folder, under a name the
server draws.

Rules this module keeps:

1. A file appears whole or not at all: it is written to a temporary file in the same
   folder, synced when asked, then renamed to its final name.
2. Names are drawn here (``secrets.token_hex(16)`` and the extension of the checked
   type); a name coming back from a case file is checked before it touches the disk,
   so no stored value can point outside the folder.
3. The folder may be shared by several nodes (``documents.shared_dir``): nothing here
   keeps state in memory.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import tempfile
from pathlib import Path
from typing import BinaryIO

__all__ = ["BlobStore", "PendingBlob"]

_NAME = re.compile(r"^[0-9a-f]{32}\.(pdf|jpg|png|tiff)\Z")
_TEMP_PREFIX = ".upload-"


class PendingBlob:
    """A temporary file being filled; ``commit`` names it, ``discard`` removes it."""

    def __init__(self, store: BlobStore, file: BinaryIO, path: Path) -> None:
        self._store = store
        self.file = file
        self.path = path
        self.size = 0

    def write(self, chunk: bytes) -> None:
        self.file.write(chunk)
        self.size += len(chunk)

    def finish_writing(self) -> None:
        """Flush (and sync, if the store syncs): the file can be read and checked."""
        self.file.flush()
        if self._store.fsync:
            os.fsync(self.file.fileno())
        self.file.close()

    def commit(self, extension: str) -> str:
        """Give the file its final name; the name to keep in the case file."""
        name = f"{secrets.token_hex(16)}.{extension}"
        if not _NAME.match(name):
            raise ValueError(f"not an extension of a stored document: {extension!r}")
        if not self.file.closed:
            self.finish_writing()
        os.replace(self.path, self._store.folder / name)
        if self._store.fsync:
            self._store.sync_folder()
        return name

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            self.file.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


class BlobStore:
    def __init__(self, folder: Path, *, fsync: bool = False) -> None:
        self.folder = folder
        self.fsync = fsync
        folder.mkdir(parents=True, exist_ok=True)

    def begin(self) -> PendingBlob:
        """A new temporary file in the folder (so that the rename stays on one disk)."""
        handle, name = tempfile.mkstemp(prefix=_TEMP_PREFIX, dir=self.folder)
        return PendingBlob(self, os.fdopen(handle, "wb"), Path(name))

    def path(self, name: str) -> Path:
        if not _NAME.match(name):
            raise ValueError(f"not the name of a stored document: {name!r}")
        return self.folder / name

    def exists(self, name: str) -> bool:
        return self.path(name).exists()

    def read(self, name: str) -> bytes:
        return self.path(name).read_bytes()

    def delete(self, name: str) -> bool:
        """Remove a stored file; False when it was already gone."""
        try:
            self.path(name).unlink()
        except FileNotFoundError:
            return False
        if self.fsync:
            self.sync_folder()
        return True

    def sync_folder(self) -> None:
        folder = os.open(self.folder, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)

    def sweep_temporary(self, older_than_s: float, now: float) -> int:
        """Remove temporary files left by a process that died while receiving."""
        removed = 0
        for path in self.folder.glob(f"{_TEMP_PREFIX}*"):
            with contextlib.suppress(FileNotFoundError):
                if now - path.stat().st_mtime > older_than_s:
                    path.unlink()
                    removed += 1
        return removed
