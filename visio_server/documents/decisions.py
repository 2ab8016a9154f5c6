"""What people decide about documents: the expert's verdict, and the citizen's consent
to show accepted documents in later calls ("tell us once").

Rules this module keeps:

1. Only the expert who answered a connected call reviews its documents; rejecting
   needs a reason the citizen can act on (the case file refuses it otherwise).
2. Only the call's kiosk gives consent and types a code; any kiosk may withdraw a
   consent with its code, in a call or not.
3. A consent is one share per call, with one code, covering the documents accepted in
   that call; accepting another one later in the call adds it to the share.
4. Shared documents are links: withdrawing the consent hides them at once from every
   case file that linked them, because each reading checks the share.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from casefiles.machine import CaseFile
from casefiles.model import AuditRow, Share, new_share_code
from queueing.model import Call
from signaling import messages as m

from ..auth import Principal
from ..metrics import Metrics
from .access import actor_of, expert_call, kiosk_call
from .cases import CaseBook
from .errors import DocumentError
from .telling import Teller

__all__ = ["Decisions"]


class Decisions:
    def __init__(
        self, book: CaseBook, teller: Teller, metrics: Metrics, clock: Callable[[], float]
    ) -> None:
        self.book = book
        self.teller = teller
        self.metrics = metrics
        self.clock = clock

    async def review(self, expert: Principal, request: m.CaseReview) -> None:
        call = expert_call(self.teller.machine(), expert, request.call)
        now = self.clock()
        actor = actor_of(expert)

        def review(case: CaseFile) -> tuple[tuple[CaseFile, bool], list[AuditRow]]:
            rows = case.review(request.document, request.verdict, request.reason, actor, now)
            return (case, bool(rows)), rows

        case, changed = await self.book.change(self.book.case_id_of(call), review)
        if not changed:
            return
        self.metrics.document_counted(request.verdict)
        await self.teller.document(case, case.documents[request.document])
        if request.verdict == "accepted" and call.id in case.consents:
            await self._give(case.id, call, actor, case.consents[call.id])

    async def consent(self, kiosk: Principal, request: m.CaseConsent) -> m.CaseConsented:
        call = kiosk_call(self.teller.machine(), kiosk, request.call)
        case = await self.book.open_for(call, self.clock())
        actor = actor_of(kiosk)
        if request.share:
            code = await self._give(case.id, call, actor, new_share_code())
            return m.CaseConsented(id=request.id, call=call.id, share=True, code=code)
        given = case.consents.get(call.id)
        if given:
            await self._withdraw(given, actor)
        return m.CaseConsented(id=request.id, call=call.id, share=False, code="")

    async def _give(self, case_id: str, call: Call, actor: str, code: str) -> str:
        """Record the consent of ``call`` (with ``code`` the first time) and save its
        share, covering the documents accepted so far; the share's code."""
        now = self.clock()

        def give(case: CaseFile) -> tuple[Share, list[AuditRow]]:
            return case.give_consent(call.id, code, actor, now)

        share = await self.book.change(case_id, give)
        await self.book.save_share(share, [])  # its row is saved with the case
        return share.code

    async def share(self, kiosk: Principal, request: m.CaseShare) -> None:
        call = kiosk_call(self.teller.machine(), kiosk, request.call)
        share = await self.book.share(request.code)
        if share is None or not share.active:
            raise DocumentError("unknown_share_code", "no consent has this code", 404)
        now = self.clock()
        actor = actor_of(kiosk)
        case = await self.book.open_for(call, now)

        def link(current: CaseFile) -> tuple[CaseFile, list[AuditRow]]:
            return current, current.link_share(share, now, actor)

        case = await self.book.change(case.id, link)
        message = await self.book.file_message(call.id, case)
        await self.teller.tell(self.teller.parties(call, guests=True), message)

    async def withdraw(self, kiosk: Principal, request: m.CaseWithdraw) -> None:
        if not await self._withdraw(request.code, actor_of(kiosk)):
            raise DocumentError("unknown_share_code", "no consent has this code", 404)

    async def _withdraw(self, code: str, actor: str) -> bool:
        share = await self.book.share(code)
        if share is None:
            return False
        now = self.clock()
        rows = share.withdraw(actor, now)
        if rows:
            await self.book.save_share(share, rows)

        def forget(case: CaseFile) -> tuple[None, list[AuditRow]]:
            return None, case.withdraw_consent(share.code, actor, now)

        with contextlib.suppress(DocumentError):  # the case may be purged away
            await self.book.change(share.case, forget)
        return True
