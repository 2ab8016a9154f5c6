"""Deleting documents at the end of their retention (``documents.retention_days``).

Rules this module keeps:

1. The bytes go first, then the case file records the purge (state ``purged``, an
   audit row): a crash in between leaves a record purged again later, never a file that
   nothing points at.
2. Each purge is logged (document, case, when it was received), and counted.
3. An accepted document waiting for its export is kept until it is exported: the
   partner must not lose it because its system was down.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from casefiles.machine import CaseFile
from casefiles.model import AuditRow, Document, DocumentState

from ..metrics import Metrics
from .blobs import BlobStore
from .cases import CaseBook

__all__ = ["PurgeWork"]

log = logging.getLogger(__name__)


class PurgeWork:
    def __init__(
        self,
        book: CaseBook,
        blobs: BlobStore,
        metrics: Metrics,
        clock: Callable[[], float],
        changed: Callable[[CaseFile, Document], Awaitable[None]],
        *,
        keep_unexported: bool,
    ) -> None:
        self.book = book
        self.blobs = blobs
        self.metrics = metrics
        self.clock = clock
        self.changed = changed
        self.keep_unexported = keep_unexported

    def _waits_for_export(self, document: Document) -> bool:
        return self.keep_unexported and document.state is DocumentState.ACCEPTED

    def when(self, case: CaseFile) -> float | None:
        times = [
            d.retain_until
            for d in case.documents.values()
            if d.state.has_content and not self._waits_for_export(d)
        ]
        return min(times, default=None)

    async def purge_case(self, case_id: str, now: float) -> None:
        case = await self.book.store.load(case_id)
        if case is None:
            return
        self.book.on_saved(case)
        for document in case.purge_due(now):
            if self._waits_for_export(document):
                continue
            await self._purge_one(case, document)

    async def _purge_one(self, case: CaseFile, document: Document) -> None:
        if document.blob:
            await asyncio.to_thread(self.blobs.delete, document.blob)
        now = self.clock()

        def purged(current: CaseFile) -> tuple[Document | None, list[AuditRow]]:
            if document.id not in current.documents:
                return None, []
            return current.documents[document.id], current.purge(document.id, now)

        gone = await self.book.change(case.id, purged)
        if gone is None:
            return
        self.metrics.document_counted("purged")
        log.info(
            "document %s of case %s purged (received %.0f, retained until %.0f)",
            document.id,
            case.id,
            document.created_at,
            document.retain_until,
        )
        await self.changed(case, gone)
