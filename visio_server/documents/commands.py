"""Device commands: the expert's scans, prints and cancels, the kiosk's pages, the
agent's progress, and the deadlines that end the commands nobody finishes.

Rules this module keeps:

1. Only the expert who answered a connected call commands its kiosk's devices; only
   that call's kiosk turns pages; only the agent of the kiosk a command went to
   reports on it (``access``).
2. A command is recorded in the case file before it is sent, and sent once: a key the
   case file already knows answers ``ack`` and sends nothing. A command for a kiosk
   whose agent is not connected, or has no scanner (printer), is refused before
   anything is recorded; one the bus hands to nobody is ``undeliverable``.
3. ``timed_out`` and ``undeliverable`` are said by the server only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import msgspec

from casefiles.machine import CaseFile
from casefiles.model import AuditRow, CommandState, DeviceCommand, Document
from queueing.model import Call
from signaling import MessageBus, ProtocolError, address
from signaling import messages as m

from ..auth import Principal
from ..config import DocumentsConfig
from ..metrics import Metrics
from .access import actor_of, expert_call, kiosk_call
from .agents import Agents
from .cases import CaseBook
from .errors import DocumentError
from .telling import Teller
from .uploads import check_title

__all__ = ["Commands"]

log = logging.getLogger(__name__)

_SERVER_STATES = ("timed_out", "undeliverable")
_AGENT_FINAL = ("done", "failed", "cancelled")


class Commands:
    def __init__(
        self,
        settings: DocumentsConfig,
        book: CaseBook,
        agents: Agents,
        teller: Teller,
        bus: MessageBus,
        metrics: Metrics,
        clock: Callable[[], float],
    ) -> None:
        self.settings = settings
        self.book = book
        self.agents = agents
        self.teller = teller
        self.bus = bus
        self.metrics = metrics
        self.clock = clock

    # ------------------------------------------------------------------ the expert

    async def scan(self, expert: Principal, request: m.DeviceScan) -> None:
        call = expert_call(self.teller.machine(), expert, request.call)
        title = check_title(request.title)
        settings = msgspec.to_builtins(request.settings)
        await self._issue(expert, call, request.key, "scan", settings, "", 0, title)

    async def print(self, expert: Principal, request: m.DevicePrint) -> None:
        call = expert_call(self.teller.machine(), expert, request.call)
        await self._issue(
            expert, call, request.key, "print", {}, request.document, request.copies, ""
        )

    async def _issue(
        self,
        expert: Principal,
        call: Call,
        key: str,
        kind: str,
        settings: dict[str, Any],
        document: str,
        copies: int,
        title: str,
    ) -> None:
        now = self.clock()
        case = await self.book.open_for(call, now)
        if key in case.commands:
            self.metrics.device_command(kind, "duplicate")
            return
        try:
            await self.agents.ready(call.kiosk, "scanner" if kind == "scan" else "printer")
        except DocumentError:
            self.metrics.device_command(kind, "refused")
            raise
        timeout = self.settings.command_timeout_s
        actor = actor_of(expert)

        def issue(
            case: CaseFile,
        ) -> tuple[tuple[CaseFile, DeviceCommand, bool], list[AuditRow]]:
            command, created, rows = case.issue(
                key,
                call.id,
                kind,
                settings,
                document,
                copies,
                title,
                actor,
                now,
                timeout,
                kiosk=call.kiosk,
            )
            return (case, command, created), rows

        case, command, created = await self.book.change(case.id, issue)
        if not created:
            self.metrics.device_command(kind, "duplicate")
            return
        if kind == "scan" and command.document in case.documents:
            await self.teller.document(case, case.documents[command.document])
        await self._send(case, call, command)

    async def _send(self, case: CaseFile, call: Call, command: DeviceCommand) -> None:
        scan = command.kind == "scan"
        message = m.DeviceCommand(
            call=call.id,
            key=command.key,
            kind=command.kind,
            upload_url=f"/api/calls/{call.id}/documents",
            upload_kbps=self.settings.upload_kbps,
            settings=msgspec.convert(command.settings, m.ScanSettings) if scan else None,
            document="" if scan else command.document,
            copies=1 if scan else command.copies,
            title=command.title,
        )
        if await self._to_device(call.kiosk, message):
            self.metrics.device_command(command.kind, "sent")
            return
        self.metrics.device_command(command.kind, "undeliverable")
        await self._server_state(case.id, command.key, "undeliverable", "no device agent took it")

    async def _to_device(self, kiosk: str, message: m.Message) -> bool:
        """Whether the bus handed ``message`` to the kiosk's agent (a node of it)."""
        try:
            return bool(await self.bus.publish(address("device", kiosk), message))
        except ProtocolError:
            return False

    async def _server_state(self, case_id: str, key: str, state: str, reason: str) -> None:
        now = self.clock()
        timeout = self.settings.command_timeout_s

        def mark(case: CaseFile) -> tuple[tuple[CaseFile, DeviceCommand], list[AuditRow]]:
            rows = case.progress(key, state, 0, 0, reason, "system", now, timeout)
            return (case, case.commands[key]), rows

        case, command = await self.book.change(case_id, mark)
        await self.teller.progress(case, command)

    async def cancel(self, expert: Principal, request: m.DeviceCancel) -> None:
        call = expert_call(self.teller.machine(), expert, request.call)
        case = await self.book.open_for(call, self.clock())
        command = case.commands.get(request.key)
        if command is None:
            raise DocumentError(
                "unknown_command", "no command with this key in this call", 404, command=request.key
            )
        if command.state.finished:
            self.metrics.device_command("cancel", "duplicate")
            return  # cancelled, done or failed already: nothing left to stop
        if await self._to_device(call.kiosk, m.DeviceCancel(call=call.id, key=request.key)):
            self.metrics.device_command("cancel", "sent")
            return
        # Nobody to stop it: it is over as far as anyone can tell.
        self.metrics.device_command("cancel", "undeliverable")
        await self._server_state(case.id, request.key, "cancelled", "no device agent to stop")

    # ------------------------------------------------------------------ the kiosk

    async def page(self, kiosk: Principal, request: m.DevicePage) -> None:
        call = kiosk_call(self.teller.machine(), kiosk, request.call)
        case = await self.book.open_for(call, self.clock())
        command = case.commands.get(request.key)
        if command is None or command.kind != "scan":
            raise DocumentError(
                "unknown_command", "no scan with this key in this call", 404, command=request.key
            )
        if command.state.finished:
            raise DocumentError(
                "invalid_command",
                "this scan is over",
                command=request.key,
                state=command.state.value,
            )
        relayed = m.DevicePage(
            call=call.id, key=request.key, more=request.more, sender=f"kiosk:{kiosk.id}"
        )
        await self.bus.publish(address("device", call.kiosk), relayed)

    # ------------------------------------------------------------------ the device

    async def progress(self, device: Principal, report: m.DeviceProgress) -> None:
        if report.state in _SERVER_STATES:
            raise DocumentError("invalid_command", f"only the server says {report.state!r}")
        case = await self.device_case(device, report.call, report.key)
        now = self.clock()
        timeout = self.settings.command_timeout_s
        actor = actor_of(device)
        key = report.key

        def apply(
            case: CaseFile,
        ) -> tuple[tuple[CaseFile, DeviceCommand, Document | None, bool], list[AuditRow]]:
            command = case.commands[key]
            before = case.documents.get(command.document)
            before_row = before.to_dict() if before is not None else None
            rows = case.progress(
                key, report.state, report.page, report.pages, report.reason, actor, now, timeout
            )
            after = case.documents.get(command.document)
            moved = after is not None and after.to_dict() != before_row
            return (case, command, after, moved), rows

        finished_before = case.commands[key].state.finished
        case, command, document, moved = await self.book.change(case.id, apply)
        if finished_before and report.state not in _AGENT_FINAL:
            # Over on the server (timed out, cancelled while the agent was away): the
            # agent still runs it, and must stop rather than hold the scanner.
            await self._to_device(device.id, m.DeviceCancel(call=command.call, key=key))
            return
        if command.state.finished:
            self.metrics.device_command(command.kind, command.state.value)
        uploading = command.state is CommandState.UPLOADING
        await self.teller.progress(case, command, upload_kbps=report.upload_kbps * uploading)
        if moved and document is not None:
            await self.teller.document(case, document)

    async def device_case(self, device: Principal, call_id: str, key: str) -> CaseFile:
        """The case of the command ``key`` that ``device``'s kiosk was sent."""
        case_id = await self.book.case_id_of_call(call_id, self.teller.live(call_id))
        case = await self.book.store.load(case_id) if case_id else None
        command = case.commands.get(key) if case is not None else None
        if case is None or command is None or command.call != call_id:
            raise DocumentError(
                "unknown_command", "no command with this key for this call", 404, command=key
            )
        if self.teller.command_kiosk(case, command) != device.id:
            raise DocumentError(
                "not_your_call", "this command is for another kiosk's device", 403, call=call_id
            )
        return case

    # ------------------------------------------------------------------ deadlines

    @staticmethod
    def when(case: CaseFile) -> float | None:
        return case.next_deadline()

    async def expire(self, case_id: str, now: float) -> None:
        """Every command of the case past its deadline is ``timed_out``, and told."""
        if await self.book.store.load(case_id) is None:
            return

        def expire(case: CaseFile) -> tuple[tuple[CaseFile, list[str]], list[AuditRow]]:
            pending = [k for k, c in case.commands.items() if not c.state.finished]
            rows = case.expire(now)
            expired = [k for k in pending if case.commands[k].state is CommandState.TIMED_OUT]
            return (case, expired), rows

        case, expired = await self.book.change(case_id, expire)
        for key in expired:
            command = case.commands[key]
            self.metrics.device_command(command.kind, "timed_out")
            log.info("%s command %s of case %s timed out", command.kind, key, case_id)
            # An agent that is slow rather than gone stops instead of finishing late.
            kiosk = self.teller.command_kiosk(case, command)
            await self._to_device(kiosk, m.DeviceCancel(call=command.call, key=key))
            await self.teller.progress(case, command)
