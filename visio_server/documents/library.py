"""The documents' bytes over HTTP: uploads in; case files, content and pages out.

Rules this module keeps:

1. Uploads come from the kiosk's agent, for a scan command it was sent and that is not
   finished (even after the call ended), or from the expert of the connected call; a
   repeated key answers the document it produced and stores nothing more.
2. Reading follows ``access``: the participants of the connected call and the kiosk's
   agent, admins, supervisors of the case's partner; the agent also reads a document
   it was asked to print. A document shared into a call's case file through an active
   consent is read by that call's participants.
3. Whoever may not read a document learns nothing of its state: the refusal comes
   before ``purged`` (410) or ``not_received`` (409).
4. The first reading of a document's bytes by the call's expert marks it ``viewed``.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from casefiles.machine import CaseFile
from casefiles.model import AuditRow, Document, DocumentState, new_document_id
from signaling import messages as m

from ..auth import Principal
from ..config import DocumentsConfig
from ..metrics import Metrics
from .access import actor_of, calls_of, expert_call
from .blobs import BlobStore
from .cases import CaseBook, document_info
from .commands import Commands
from .errors import DocumentError
from .formats import render_page
from .telling import Teller
from .uploads import receive_body, title_header

__all__ = ["Library", "Readable"]

log = logging.getLogger(__name__)

_KEY = re.compile(r"^[A-Za-z0-9_-]{8,64}\Z")
_DAY_S = 86400.0
_DEFAULT_TITLE = {"scan": "Document scanné", "upload": "Document"}
_NOT_ARRIVED = frozenset({DocumentState.REQUESTED, DocumentState.SCANNED})


@dataclass(frozen=True)
class Readable:
    """A document someone may read, and where its bytes are."""

    case: CaseFile
    document: Document
    path: Path


@dataclass(frozen=True)
class _Destination:
    """Where an upload goes, as its sender and key decide."""

    case: CaseFile
    origin: str
    key: str
    """The key the case file keeps (an expert's is kept apart from command keys)."""
    title: str


class Library:
    def __init__(
        self,
        settings: DocumentsConfig,
        book: CaseBook,
        blobs: BlobStore,
        commands: Commands,
        teller: Teller,
        metrics: Metrics,
        clock: Callable[[], float],
    ) -> None:
        self.settings = settings
        self.book = book
        self.blobs = blobs
        self.commands = commands
        self.teller = teller
        self.metrics = metrics
        self.clock = clock

    # ------------------------------------------------------------------ in

    async def upload(
        self, principal: Principal, call_id: str, request: web.Request
    ) -> tuple[m.DocumentInfo, bool]:
        """Store the body of ``request`` in the call's case file; the document, and
        whether it is new (False: the same key was seen before)."""
        key = request.headers.get("Idempotency-Key", "").strip()
        if key and not _KEY.match(key):
            raise DocumentError(
                "invalid_key", "Idempotency-Key is 8 to 64 letters, digits, '-' or '_'", 400
            )
        title = title_header(request)
        destination = await self._destination(principal, call_id, key, title)
        if isinstance(destination, Document):
            return document_info(destination), False
        try:
            received = await receive_body(request, self.blobs, self.settings.max_bytes)
        except DocumentError:
            self.metrics.document_counted("refused")
            raise
        actor = actor_of(principal)
        retain_until = self.clock() + self.settings.retention_days * _DAY_S
        doc_id = new_document_id()

        def add(case: CaseFile) -> tuple[tuple[CaseFile, Document, bool], list[AuditRow]]:
            document, created, rows = case.add_document(
                doc_id,
                call_id,
                destination.title,
                destination.origin,
                received.mime,
                received.pages,
                received.size,
                received.blob,
                received.sha256,
                destination.key,
                actor,
                self.clock(),
                retain_until,
            )
            return (case, document, created), rows

        try:
            case, document, created = await self.book.change(destination.case.id, add)
        except BaseException:
            await asyncio.to_thread(self.blobs.delete, received.blob)
            raise
        if not created or document.blob != received.blob:  # a repeat won the race
            await asyncio.to_thread(self.blobs.delete, received.blob)
            return document_info(document), False
        self.metrics.document_counted("received")
        self.metrics.upload_stored(received.size)
        log.info(
            "document %s (%s, %d bytes, %d pages) received in case %s from %s",
            document.id,
            document.mime,
            document.size,
            document.pages,
            case.id,
            actor,
        )
        await self.teller.document(case, document)
        if destination.origin == "scan":
            self.metrics.device_command("scan", "done")
            await self.teller.progress(case, case.commands[key], document.id)
        return document_info(document), True

    async def _destination(
        self, principal: Principal, call_id: str, key: str, title: str
    ) -> _Destination | Document:
        """Where the upload goes, or the document a repeated key already produced."""
        if principal.role == "device":
            if not key:
                raise DocumentError(
                    "key_required", "a device sends its command's key as Idempotency-Key", 400
                )
            case = await self.commands.device_case(principal, call_id, key)
            command = case.commands[key]
            if command.kind != "scan":
                raise DocumentError(
                    "invalid_command", "this key belongs to a print command", command=key
                )
            done = case.documents.get(command.document)
            if done is not None and done.state not in _NOT_ARRIVED:
                return done
            if command.state.finished:
                raise DocumentError(
                    "invalid_command",
                    f"this scan is over ({command.state.value})",
                    command=key,
                    state=command.state.value,
                )
            return _Destination(case, "scan", key, title or command.title or _DEFAULT_TITLE["scan"])
        if principal.answers_calls:  # the call's expert (an interpreter may be one)
            call = expert_call(self.teller.machine(), principal, call_id)
            case = await self.book.open_for(call, self.clock())
            kept = f"upload-{key}" if key else ""
            known = next((d for d in case.documents.values() if kept and d.command == kept), None)
            if known is not None:
                return known
            return _Destination(case, "upload", kept, title or _DEFAULT_TITLE["upload"])
        raise DocumentError(
            "forbidden", "only the call's expert or the kiosk's device may upload", 403
        )

    # ------------------------------------------------------------------ out

    async def case_file(
        self, principal: Principal, call_id: str
    ) -> tuple[str, list[m.DocumentInfo]]:
        """The case file of a call, for whoever may read it."""
        call = self.teller.live(call_id)
        if call is not None and call in calls_of(self.teller.machine(), principal):
            case = await self.book.open_for(call, self.clock())
        elif principal.watches_queues:
            case_id = await self.book.case_id_of_call(call_id, call)
            stored = await self.book.store.load(case_id) if case_id else None
            if stored is None:
                raise DocumentError("unknown_case", "no case file for this call", 404, call=call_id)
            if principal.role != "admin" and stored.partner != principal.partner:
                raise DocumentError("forbidden", "a case file of another partner", 403)
            case = stored
        else:
            raise DocumentError(
                "not_your_call", "only the call's participants read its case file", 403
            )
        return case.id, await self.book.infos(case)

    async def readable(self, principal: Principal, doc: str) -> Readable:
        """The document ``doc`` if ``principal`` may read it now (rules 2 and 3)."""
        case = await self.book.case_of_document(doc)
        document = case.documents[doc]
        if not await self._may_read(principal, case, document):
            raise DocumentError("forbidden", "you may not read this document", 403)
        if document.state is DocumentState.PURGED:
            raise DocumentError(
                "purged", "this document was deleted at the end of its retention period", 410
            )
        if not document.state.has_content or not document.blob:
            raise DocumentError("not_received", "this document has not arrived yet", 409)
        return Readable(case, document, self.blobs.path(document.blob))

    async def _may_read(self, principal: Principal, case: CaseFile, document: Document) -> bool:
        if principal.role == "admin":
            return True
        if principal.role == "supervisor" and case.partner == principal.partner:
            return True
        for call in calls_of(self.teller.machine(), principal):
            own = self.book.case_id_of(call)
            if own == case.id:
                return True
            linking = await self.book.store.load(own)
            if linking is not None and any(
                link.document.id == document.id for link in await self.book.linked(linking)
            ):
                return True
        if principal.role == "device":
            return any(
                c.kind == "print"
                and c.document == document.id
                and not c.state.finished
                and self.teller.command_kiosk(case, c) == principal.id
                for c in case.commands.values()
            )
        return False

    async def opened(self, principal: Principal, readable: Readable) -> None:
        """The bytes were read: the call's expert's first reading marks it viewed."""
        document = readable.document
        if not principal.answers_calls or document.state is not DocumentState.RECEIVED:
            return
        call = self.teller.live(document.call)
        if call is None or call.expert != principal.id:
            return  # an expert reading a shared link, or another call's document
        now = self.clock()
        actor = actor_of(principal)

        def view(case: CaseFile) -> tuple[tuple[CaseFile, bool], list[AuditRow]]:
            rows = case.mark_viewed(document.id, actor, now)
            return (case, bool(rows)), rows

        case, changed = await self.book.change(readable.case.id, view)
        if changed:
            await self.teller.document(case, case.documents[document.id])

    async def page_png(self, readable: Readable, page: int, width: int) -> bytes:
        try:
            return await asyncio.to_thread(
                render_page, readable.path, readable.document.mime, page, width
            )
        except IndexError:
            raise DocumentError(
                "unknown_page",
                f"this document has {readable.document.pages} page(s)",
                404,
                pages=readable.document.pages,
            ) from None
        except FileNotFoundError:
            raise DocumentError("purged", "the file of this document is gone", 410) from None
