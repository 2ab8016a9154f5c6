"""The case files as the server uses them: found from a call, changed through the
store's compare-and-set, and shown on the wire.

Rules this module keeps:

1. Every change goes through ``change``: load, apply a pure function of the case, save,
   again while another node wins. A ``CaseError`` becomes a ``DocumentError`` here,
   with the HTTP status its code calls for.
2. A call's case file is opened the first time something needs it (the call's
   announcement, a command, an upload); a service that keeps one case per beneficiary
   finds the existing one and attaches the call to it.
3. Shared documents are links: they are read from the case that holds them, through a
   share that is still active, each time the case file is shown.
4. Whoever saves a case tells ``on_saved``, so that this node's timers learn when the
   case next needs them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from casefiles.errors import CaseError
from casefiles.machine import CaseFile
from casefiles.model import AuditRow, Document, DocumentState, Share, case_id_for
from casefiles.store import CaseStore, update
from queueing.model import Call
from signaling import messages as m

from ..config import Config
from .errors import DocumentError

__all__ = ["CaseBook", "Linked", "document_info"]

T = TypeVar("T")

_STATUS_OF_CODE = {
    "unknown_document": 404,
    "unknown_command": 404,
    "unknown_case": 404,
    "unknown_share_code": 404,
}

_SHOWN_WHEN_SHARED = frozenset({DocumentState.ACCEPTED, DocumentState.EXPORTED})
"""A share offers the documents an expert accepted, and only while they stay so."""


def document_info(document: Document, shared_by: str = "") -> m.DocumentInfo:
    """A document as the wire shows it; ``shared_by``: the partner of the share it
    is seen through, for a linked document."""
    return m.DocumentInfo(
        id=document.id,
        case=document.case,
        title=document.title,
        origin="shared" if shared_by else document.origin,
        mime=document.mime,
        pages=document.pages,
        bytes=document.size,
        state=document.state.value,
        created_at=document.created_at,
        updated_at=document.updated_at,
        reason=document.reason,
        command=document.command if document.origin == "scan" else "",
        from_partner=shared_by,
        exported=document.exported,
        printed_copies=document.printed_copies,
    )


@dataclass(frozen=True)
class Linked:
    """A document of another case, seen through an active share."""

    document: Document
    share: Share


class CaseBook:
    def __init__(self, config: Config, store: CaseStore) -> None:
        self.config = config
        self.store = store
        self.on_saved: Callable[[CaseFile], None] = lambda case: None

    # ------------------------------------------------------------------ finding

    def case_id_of(self, call: Call) -> str:
        service = self.config.service(call.service)
        per_beneficiary = service.case_per_beneficiary if service else False
        return case_id_for(call.id, call.service, call.beneficiary, per_beneficiary)

    async def case_id_of_call(self, call_id: str, live: Call | None) -> str | None:
        """The case file of a call: derived from the call while it runs, from the
        store's index once it has ended."""
        if live is not None:
            return self.case_id_of(live)
        return await self.store.case_of_call(call_id)

    async def open_for(self, call: Call, now: float) -> CaseFile:
        """The case file of a running call, opened or attached to on first need."""
        case_id = self.case_id_of(call)
        service = self.config.service(call.service)
        partner = service.partner if service else ""

        def missing() -> tuple[CaseFile, list[AuditRow]]:
            return CaseFile.open(
                case_id, call.service, partner, call.beneficiary, call.kiosk, call.id, now
            )

        def attach(case: CaseFile) -> tuple[CaseFile, list[AuditRow]]:
            return case, case.attach_call(call.id, now, call.kiosk)

        return await self.change(case_id, attach, missing=missing)

    async def load(self, case_id: str) -> CaseFile:
        case = await self.store.load(case_id)
        if case is None:
            raise DocumentError("unknown_case", "no case file for this call", 404, case=case_id)
        return case

    async def case_of_document(self, doc: str) -> CaseFile:
        case_id = await self.store.case_of_document(doc)
        case = await self.store.load(case_id) if case_id else None
        if case is None or doc not in case.documents:
            raise DocumentError("unknown_document", "no such document", 404, document=doc)
        return case

    # ------------------------------------------------------------------ changing

    async def change(
        self,
        case_id: str,
        change: Callable[[CaseFile], tuple[T, list[AuditRow]]],
        *,
        missing: Callable[[], tuple[CaseFile, list[AuditRow]]] | None = None,
    ) -> T:
        """Apply ``change`` (a pure function of the case, maybe run several times)."""
        last: list[CaseFile] = []

        def apply(case: CaseFile) -> tuple[T, list[AuditRow]]:
            last[:] = [case]
            return change(case)

        try:
            result = await update(self.store, case_id, apply, missing=missing)
        except CaseError as exc:
            raise _refusal(exc) from None
        if last:
            self.on_saved(last[0])
        return result

    async def save_share(self, share: Share, rows: list[AuditRow]) -> None:
        await self.store.save_share(share, rows)

    async def share(self, code: str) -> Share | None:
        return await self.store.load_share(code.strip().upper())

    # ------------------------------------------------------------------ showing

    async def linked(self, case: CaseFile) -> list[Linked]:
        """The documents of the active shares linked into ``case``."""
        found: list[Linked] = []
        for code in case.shared:
            share = await self.store.load_share(code)
            if share is None or not share.active:
                continue
            origin = await self.store.load(share.case)
            if origin is None:
                continue
            for doc in share.documents:
                document = origin.documents.get(doc)
                if document is not None and document.state in _SHOWN_WHEN_SHARED:
                    found.append(Linked(document, share))
        return found

    async def infos(self, case: CaseFile) -> list[m.DocumentInfo]:
        """The case file as the wire shows it: its own documents, then linked ones."""
        own = [document_info(d) for d in case.info_documents()]
        linked = [
            document_info(link.document, link.share.partner) for link in await self.linked(case)
        ]
        return own + linked

    async def file_message(self, call: str, case: CaseFile) -> m.CaseFileMessage:
        code = case.consents.get(call, "")
        share = await self.store.load_share(code) if code else None
        active = share is not None and share.active
        return m.CaseFileMessage(
            call=call,
            case=case.id,
            documents=await self.infos(case),
            consent=active,
            share_code=code if active else "",
        )


def _refusal(exc: CaseError) -> DocumentError:
    return DocumentError(exc.code, exc.reason, _STATUS_OF_CODE.get(exc.code, 409), **exc.details)
