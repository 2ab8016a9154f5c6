"""Handing accepted documents to the partner: a folder, or the partner's HTTP endpoint.

Rules this module keeps:

1. A document is exported once it is accepted, by whichever node claims it first: the
   claim is a compare-and-set on the case file that moves its next attempt time past
   the attempt's end, so two nodes never send it at the same time.
2. Every attempt carries the document id as its idempotency key (the file name of the
   directory exporter, ``Idempotency-Key`` of the HTTP one): a receiver that got an
   attempt whose answer was lost recognises the next one.
3. A failure is recorded in the case file with the time of the next attempt
   (exponential backoff with jitter, ``documents.export_backoff_s`` doubling up to
   ``export_backoff_max_s``), so a restarted node resumes where the last one stopped.
   Nothing gives up: after ``export_max_attempts`` each failure is logged as an error
   for the operator, and the purge keeps an accepted document until it is exported.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import aiohttp

from casefiles.machine import CaseFile
from casefiles.model import AuditRow, Document, DocumentState

from ..config import DocumentsConfig
from ..metrics import Metrics
from .blobs import BlobStore
from .cases import CaseBook

__all__ = [
    "DirectoryExporter",
    "ExportFailed",
    "ExportItem",
    "ExportWork",
    "Exporter",
    "HttpExporter",
]

log = logging.getLogger(__name__)

_EXTENSIONS = {
    "application/pdf": "pdf",
    "image/jpeg": "jpg",
    "image/png": "png",
    "image/tiff": "tiff",
}


class ExportFailed(Exception):
    """This attempt did not hand the document over; another will."""


@dataclass(frozen=True)
class ExportItem:
    """One accepted document and what the partner needs to file it."""

    document: Document
    service: str
    partner: str
    beneficiary: str
    path: Path

    @property
    def file_name(self) -> str:
        return f"{self.document.id}.{_EXTENSIONS.get(self.document.mime, 'bin')}"

    def metadata(self) -> dict[str, Any]:
        document = self.document
        return {
            "document": document.id,
            "case": document.case,
            "call": document.call,
            "service": self.service,
            "partner": self.partner,
            "beneficiary": self.beneficiary,
            "title": document.title,
            "origin": document.origin,
            "type": document.mime,
            "pages": document.pages,
            "bytes": document.size,
            "sha256": document.sha256,
            "received_at": document.created_at,
            "accepted_at": document.updated_at,
            "file": self.file_name,
        }


class Exporter(Protocol):
    target: str
    """Where documents go, as the audit row of an export says it."""

    async def export(self, item: ExportItem) -> None:
        """Hand the document over, or raise ``ExportFailed``."""

    async def close(self) -> None: ...


class DirectoryExporter:
    """Each document as ``<folder>/<service>/<id>.<ext>`` with a ``<id>.json`` sidecar;
    written whole (temporary file, rename), the sidecar last, so a reader that waits
    for the sidecar always finds the file complete."""

    def __init__(self, folder: Path, *, fsync: bool = False) -> None:
        self.folder = folder
        self.fsync = fsync
        self.target = f"directory:{folder}"

    async def export(self, item: ExportItem) -> None:
        try:
            await asyncio.to_thread(self._write, item)
        except OSError as exc:
            raise ExportFailed(f"cannot write to {self.folder}: {exc.strerror or exc}") from None

    def _write(self, item: ExportItem) -> None:
        folder = self.folder / item.service
        folder.mkdir(parents=True, exist_ok=True)
        self._write_whole(folder / item.file_name, item.path.read_bytes())
        sidecar = json.dumps(item.metadata(), ensure_ascii=False, indent=2).encode()
        self._write_whole(folder / f"{item.document.id}.json", sidecar)

    def _write_whole(self, path: Path, data: bytes) -> None:
        handle, temporary = tempfile.mkstemp(prefix=".export-", dir=path.parent)
        try:
            with os.fdopen(handle, "wb") as file:
                file.write(data)
                file.flush()
                if self.fsync:
                    os.fsync(file.fileno())
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    async def close(self) -> None:
        return None


class HttpExporter:
    """A ``multipart/form-data`` POST per document: part ``metadata`` (JSON, the same
    as the directory exporter's sidecar) and part ``file``; any 2xx answer means the
    partner has it."""

    def __init__(self, url: str, *, secret: str = "", timeout_s: float = 30.0) -> None:
        self.url = url
        self.target = url
        self._secret = secret
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def export(self, item: ExportItem) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        try:
            data = await asyncio.to_thread(item.path.read_bytes)
        except OSError as exc:
            raise ExportFailed(f"cannot read {item.path.name}: {exc.strerror or exc}") from None
        form = aiohttp.FormData()
        form.add_field(
            "metadata",
            json.dumps(item.metadata(), ensure_ascii=False),
            content_type="application/json",
        )
        form.add_field("file", data, filename=item.file_name, content_type=item.document.mime)
        headers = {"Idempotency-Key": item.document.id}
        if self._secret:
            headers["Authorization"] = f"Bearer {self._secret}"
        try:
            async with self._session.post(self.url, data=form, headers=headers) as response:
                if not 200 <= response.status < 300:
                    raise ExportFailed(f"{self.url} answered HTTP {response.status}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ExportFailed(f"{self.url}: {exc or type(exc).__name__}") from None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


def make_exporter(settings: DocumentsConfig, default_dir: Path, fsync: bool) -> Exporter | None:
    if settings.export == "none":
        return None
    if settings.export == "http":
        return HttpExporter(
            settings.export_url, secret=settings.export_secret, timeout_s=settings.export_timeout_s
        )
    return DirectoryExporter(
        Path(settings.export_dir) if settings.export_dir else default_dir, fsync=fsync
    )


class ExportWork:
    """The export of one case's accepted documents, run by the export schedule."""

    def __init__(
        self,
        book: CaseBook,
        blobs: BlobStore,
        exporter: Exporter,
        settings: DocumentsConfig,
        metrics: Metrics,
        clock: Callable[[], float],
        changed: Callable[[CaseFile, Document], Awaitable[None]],
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.book = book
        self.blobs = blobs
        self.exporter = exporter
        self.settings = settings
        self.metrics = metrics
        self.clock = clock
        self.changed = changed
        self.jitter = jitter

    @staticmethod
    def when(case: CaseFile) -> float | None:
        times = [
            d.export_next_at or d.updated_at
            for d in case.documents.values()
            if d.state is DocumentState.ACCEPTED
        ]
        return min(times, default=None)

    def backoff_s(self, failures: int) -> float:
        """Wait after the ``failures``-th failure in a row: doubling, with jitter."""
        settings = self.settings
        base = settings.export_backoff_s * 2.0 ** min(failures - 1, 30)
        return min(settings.export_backoff_max_s, base) * (0.5 + self.jitter())

    async def export_case(self, case_id: str, now: float) -> None:
        case = await self.book.store.load(case_id)
        if case is None:
            return
        self.book.on_saved(case)
        for document in case.export_due(now):
            await self._export_one(case, document.id)

    async def _export_one(self, case: CaseFile, doc: str) -> None:
        lease_until = self.clock() + self.settings.export_timeout_s * 2 + 5

        def claim(current: CaseFile) -> tuple[Document | None, list[AuditRow]]:
            document = current.documents.get(doc)
            due = document is not None and document.state is DocumentState.ACCEPTED
            if not due or (document.export_next_at or 0.0) > self.clock():  # type: ignore[union-attr]
                return None, []  # exported meanwhile, or another node holds the lease
            document.export_next_at = lease_until  # type: ignore[union-attr]
            return document, []

        claimed = await self.book.change(case.id, claim)
        if claimed is None:
            return
        item = ExportItem(
            claimed, case.service, case.partner, case.beneficiary, self.blobs.path(claimed.blob)
        )
        try:
            await self.exporter.export(item)
        except ExportFailed as exc:
            await self._failed(case, claimed, str(exc))
            return
        now = self.clock()
        target = self.exporter.target

        def exported(current: CaseFile) -> tuple[Document, list[AuditRow]]:
            rows = current.mark_exported(doc, target, now)
            return current.documents[doc], rows

        document = await self.book.change(case.id, exported)
        self.metrics.document_exported("delivered")
        log.info("document %s of case %s exported to %s", doc, case.id, target)
        await self.changed(case, document)

    async def _failed(self, case: CaseFile, document: Document, error: str) -> None:
        failures = document.export_attempts + 1
        now = self.clock()
        next_at = now + self.backoff_s(failures)

        def failed(current: CaseFile) -> tuple[None, list[AuditRow]]:
            return None, current.export_failed(document.id, error, next_at, now)

        await self.book.change(case.id, failed)
        self.metrics.document_exported("failed")
        level = logging.ERROR if failures >= self.settings.export_max_attempts else logging.WARNING
        log.log(
            level,
            "export of document %s failed (attempt %d): %s; next attempt in %.1f s",
            document.id,
            failures,
            error,
            next_at - now,
        )
