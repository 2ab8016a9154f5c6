"""The documents façade: the one door of the edge and the HTTP routes to case files,
device commands and the kiosks' devices.

Rules this module keeps:

1. Every request is checked against the call as the queue machine has it (``access``)
   before anything is read or written; refusals are ``DocumentError``.
2. A command is recorded in the case file before it is sent, and sent once: a key the
   case file already knows answers ``ack`` and sends nothing. A command for a kiosk
   whose agent is not connected, or has no scanner (printer), is refused before
   anything is recorded; one the bus could hand to nobody is ``undeliverable``.
3. What changes is told by whoever changed it, over the bus to every node: progress
   (``device.progress``, with ``kind``) to the call's expert and kiosk, documents
   (``case.document``) to them and the call's interpreters, device health
   (``device.status``) to the expert and kiosk of the kiosk's connected call. A
   command outlives its call: after the call, its news go to the expert who issued it
   and to the kiosk.
4. ``call.connected`` is followed by ``case.file`` and ``device.status``: each node
   tells the participants it holds, from a queue the router's hook only fills, so the
   router never waits for a case store.
5. Deadlines, exports and purges run on this node's schedules, which learn from every
   case this node saves and from a periodic read of the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import msgspec
from aiohttp import web

from casefiles.machine import CaseFile
from casefiles.model import (
    AuditRow,
    CommandState,
    DeviceCommand,
    Document,
    DocumentState,
    Share,
    new_document_id,
    new_share_code,
)
from casefiles.store import CaseStore
from queueing import CallState, QueueMachine
from queueing.model import Call
from signaling import MessageBus, ProtocolError, address, not_cancelled
from signaling import messages as m

from ..auth import Principal
from ..calls.rooms import bus_address
from ..config import Config
from ..metrics import Metrics
from .access import actor_of, calls_of, expert_call, kiosk_call, live_call
from .blobs import BlobStore
from .cases import CaseBook, document_info
from .devices import DeviceRecord, DeviceRegistry, absent, same_health
from .errors import DocumentError
from .exporter import Exporter, ExportWork
from .formats import render_page
from .purge import PurgeWork
from .schedule import Schedule
from .uploads import check_title, receive_body, title_header

__all__ = ["Documents", "Readable"]

log = logging.getLogger(__name__)

_KEY = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
_DAY_S = 86400.0
_DEVICE_REFRESH_S = 2.0
_DEADLINE_RETRY_S = 5.0
_ANNOUNCED_BACKLOG = 10_000
_ABANDONED_S = 3600.0
"""A temporary upload file untouched this long was left by a process that died (one
being received is written to as its bytes arrive)."""
_SERVER_STATES = ("timed_out", "undeliverable")
_DEFAULT_TITLE = {"scan": "Document scanné", "upload": "Document"}
_NOT_ARRIVED = frozenset({DocumentState.REQUESTED, DocumentState.SCANNED})


@dataclass(frozen=True)
class Readable:
    """A document someone may read, where its bytes are, and whether it is a link."""

    case: CaseFile
    document: Document
    path: Path


class Documents:
    def __init__(
        self,
        config: Config,
        machine: Callable[[], QueueMachine],
        store: CaseStore,
        blobs: BlobStore,
        devices: DeviceRegistry,
        bus: MessageBus,
        metrics: Metrics,
        exporter: Exporter | None,
        clock: Callable[[], float] = time.time,
        *,
        status_changed: Callable[[], None] = lambda: None,
    ) -> None:
        self.config = config
        self.settings = config.documents
        self.machine = machine
        """The queue machine, read anew each time (a rollback replaces it)."""
        self.book = CaseBook(config, store)
        self.book.on_saved = self._saved
        self.blobs = blobs
        self.devices = devices
        self.bus = bus
        self.metrics = metrics
        self.exporter = exporter
        self.clock = clock
        self.status_changed = status_changed
        """Asks for a fresh ``queue.status`` (device health is part of it)."""
        self.on_device_replaced: Callable[[str, str], None] = lambda kiosk, link: None
        """Told when another connection (on another node) took a kiosk's device."""
        self._held: dict[str, DeviceRecord] = {}
        self._announced: asyncio.Queue[tuple[str, str | None]] = asyncio.Queue(_ANNOUNCED_BACKLOG)
        self.deadlines = Schedule(
            "expiry", CaseFile.next_deadline, self._expire, clock, _DEADLINE_RETRY_S
        )
        self.export_work = (
            ExportWork(
                self.book, blobs, exporter, self.settings, metrics, clock, self._tell_document
            )
            if exporter is not None
            else None
        )
        self.exports = (
            Schedule(
                "export",
                ExportWork.when,
                self.export_work.export_case,
                clock,
                self.settings.export_backoff_s,
            )
            if self.export_work is not None
            else None
        )
        self.purge_work = PurgeWork(
            self.book,
            blobs,
            metrics,
            clock,
            self._tell_document,
            keep_unexported=exporter is not None,
        )
        self.purges = Schedule(
            "purge",
            self.purge_work.when,
            self.purge_work.purge_case,
            clock,
            self.settings.scan_interval_s,
        )

    # ------------------------------------------------------------------ lifecycle

    async def run(self) -> None:
        """The schedules, the announcement worker and the device heartbeat; runs until
        cancelled."""
        try:
            await self._scan_store()
        except Exception:  # the store is away: the periodic read will catch up
            log.exception("could not read the case files with work left")
        async with asyncio.TaskGroup() as group:
            group.create_task(self.deadlines.run())
            group.create_task(self.purges.run())
            if self.exports is not None:
                group.create_task(self.exports.run())
            group.create_task(self._run_announcements())
            group.create_task(self._run_device_refresh())
            group.create_task(self._run_store_scan())

    async def close(self) -> None:
        if self.exporter is not None:
            await self.exporter.close()
        await self.devices.close()
        await self.book.store.close()

    def _saved(self, case: CaseFile) -> None:
        self.deadlines.note(case)
        self.purges.note(case)
        if self.exports is not None:
            self.exports.note(case)

    async def _scan_store(self) -> None:
        for case_id in await self.book.store.cases_with_work():
            case = await self.book.store.load(case_id)
            if case is not None:
                self._saved(case)

    async def _run_store_scan(self) -> None:
        while not_cancelled():
            await asyncio.sleep(self.settings.scan_interval_s)
            try:
                await self._scan_store()
                await asyncio.to_thread(self.blobs.sweep_temporary, _ABANDONED_S, self.clock())
            except Exception:
                log.exception("could not read the case files with work left")

    # ------------------------------------------------------------------ helpers

    def _live(self, call_id: str) -> Call | None:
        return live_call(self.machine(), call_id)

    def _parties(self, call: Call, *, guests: bool) -> list[str]:
        """Bus addresses of the call's kiosk and expert (and interpreters)."""
        targets = [address("kiosk", call.kiosk)]
        if call.expert is not None:
            targets.append(address("expert", call.expert))
        if guests:
            targets += [address("expert", g.id) for g in call.guests if g.role == "interpreter"]
        return targets

    def _command_parties(self, case: CaseFile, command: DeviceCommand) -> list[str]:
        """Who hears of a command: the call's kiosk and expert while it runs; after it,
        the expert who issued it and the kiosk."""
        call = self._live(command.call)
        if call is not None and call.state is CallState.CONNECTED:
            return self._parties(call, guests=False)
        issuer = command.issued_by if command.issued_by.startswith("expert:") else ""
        return [t for t in (address("kiosk", self._command_kiosk(case, command)), issuer) if t]

    def _command_kiosk(self, case: CaseFile, command: DeviceCommand) -> str:
        call = self._live(command.call)
        return call.kiosk if call is not None else case.kiosk

    async def _tell(self, targets: list[str], message: m.Message) -> None:
        for target in dict.fromkeys(targets):
            try:
                await self.bus.publish(target, message)
            except ProtocolError as exc:  # the shared bus is down: the state is saved
                log.warning("could not tell %s of %s: %s", target, type(message).__name__, exc)

    async def _tell_document(self, case: CaseFile, document: Document) -> None:
        call = self._live(document.call)
        if call is not None and call.state is CallState.CONNECTED:
            targets = self._parties(call, guests=True)
        else:
            command = case.commands.get(document.command)
            if command is None:
                return  # nobody of that call is left to tell
            targets = self._command_parties(case, command)
        await self._tell(
            targets, m.CaseDocument(call=document.call, document=document_info(document))
        )

    async def _tell_progress(
        self, case: CaseFile, command: DeviceCommand, document: str = ""
    ) -> None:
        message = m.DeviceProgress(
            call=command.call,
            key=command.key,
            state=command.state.value,  # type: ignore[arg-type]
            page=command.page,
            pages=command.pages,
            reason=command.reason,
            document=document or (command.result if command.kind == "scan" else command.document),
            kind=command.kind,
        )
        await self._tell(self._command_parties(case, command), message)

    # ------------------------------------------------------------------ devices

    async def _device_ready(self, kiosk: str, part: str) -> None:
        record = await self.devices.get(kiosk, self.clock())
        if record is None:
            raise DocumentError(
                "device_unavailable",
                "the kiosk's device agent is not connected",
                kiosk=kiosk,
                part=part,
            )
        health = record.health.scanner if part == "scanner" else record.health.printer
        if not health.present:
            raise DocumentError(
                "device_unavailable", f"this kiosk has no {part}", kiosk=kiosk, part=part
            )

    async def health_of(self, kiosk: str) -> m.DeviceHealth:
        record = await self.devices.get(kiosk, self.clock())
        return record.health if record is not None else absent(kiosk, self.clock())

    def known_devices(self) -> list[m.DeviceHealth]:
        return [record.health for record in self.devices.known()]

    async def device_connected(self, device: Principal, link: str) -> None:
        """A device agent said hello: it holds its kiosk's device from now on."""
        now = self.clock()
        unknown = m.DevicePart(present=False, state="unknown")
        health = m.DeviceHealth(
            kiosk=device.id, online=True, scanner=unknown, printer=unknown, at=now
        )
        record = DeviceRecord(health, link, now)
        await self.devices.claim(record)
        self._held[device.id] = record
        await self._device_changed(device.id, health)

    async def device_lost(self, device: Principal, link: str) -> None:
        held = self._held.get(device.id)
        if held is not None and held.link == link:
            del self._held[device.id]
        if await self.devices.forget(device.id, link):
            await self._device_changed(device.id, absent(device.id, self.clock()))

    async def health(self, device: Principal, report: m.DeviceHealthReport, link: str) -> None:
        now = self.clock()
        health = m.DeviceHealth(
            kiosk=device.id,
            online=True,
            scanner=report.scanner,
            printer=report.printer,
            last_error=report.last_error,
            at=now,
        )
        previous = self._held.get(device.id)
        if not await self.devices.update(DeviceRecord(health, link, now)):
            raise DocumentError(
                "forbidden", "another connection holds this kiosk's device now", 403
            )
        self._held[device.id] = DeviceRecord(health, link, now)
        if not same_health(previous.health if previous else None, health):
            await self._device_changed(device.id, health)

    async def _device_changed(self, kiosk: str, health: m.DeviceHealth) -> None:
        self.status_changed()
        for call in self.machine().calls():
            if call.kiosk == kiosk and call.joins is None and call.state is CallState.CONNECTED:
                await self._tell(self._parties(call, guests=False), m.DeviceStatus(health=health))

    async def _run_device_refresh(self) -> None:
        while not_cancelled():
            await asyncio.sleep(_DEVICE_REFRESH_S)
            now = self.clock()
            held = [DeviceRecord(r.health, r.link, now) for r in self._held.values()]
            try:
                taken = await self.devices.refresh(held, now)
            except Exception as exc:  # Redis away: try again at the next beat
                log.warning("device registry not refreshed: %s", exc)
                continue
            for kiosk in taken:
                record = self._held.pop(kiosk, None)
                if record is not None:
                    self.on_device_replaced(kiosk, record.link)

    # ------------------------------------------------------------------ commands

    async def issue_scan(self, expert: Principal, request: m.DeviceScan) -> None:
        call = expert_call(self.machine(), expert, request.call)
        title = check_title(request.title)
        settings = msgspec.to_builtins(request.settings)
        await self._issue(expert, call, request.key, "scan", settings, "", 0, title)

    async def issue_print(self, expert: Principal, request: m.DevicePrint) -> None:
        call = expert_call(self.machine(), expert, request.call)
        await self._issue(
            expert, call, request.key, "print", {}, request.document, request.copies, ""
        )

    async def _issue(
        self,
        expert: Principal,
        call: Call,
        key: str,
        kind: str,
        settings: dict[str, object],
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
            await self._device_ready(call.kiosk, "scanner" if kind == "scan" else "printer")
        except DocumentError:
            self.metrics.device_command(kind, "refused")
            raise
        timeout = self.settings.command_timeout_s
        actor = actor_of(expert)

        def issue(case: CaseFile) -> tuple[tuple[DeviceCommand, bool], list[AuditRow]]:
            command, created, rows = case.issue(
                key, call.id, kind, settings, document, copies, title, actor, now, timeout
            )
            return (command, created), rows

        command, created = await self.book.change(case.id, issue)
        if not created:
            self.metrics.device_command(kind, "duplicate")
            return
        case = await self.book.load(case.id)
        if kind == "scan" and command.document in case.documents:
            await self._tell_document(case, case.documents[command.document])
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
        try:
            reached = await self.bus.publish(address("device", call.kiosk), message)
        except ProtocolError:
            reached = 0
        if reached:
            self.metrics.device_command(command.kind, "sent")
            return
        self.metrics.device_command(command.kind, "undeliverable")
        await self._server_state(case.id, command.key, "undeliverable", "no device agent took it")

    async def _server_state(self, case_id: str, key: str, state: str, reason: str) -> None:
        now = self.clock()
        timeout = self.settings.command_timeout_s

        def mark(case: CaseFile) -> tuple[tuple[CaseFile, DeviceCommand], list[AuditRow]]:
            rows = case.progress(key, state, 0, 0, reason, "system", now, timeout)
            return (case, case.commands[key]), rows

        case, command = await self.book.change(case_id, mark)
        await self._tell_progress(case, command)

    async def cancel(self, expert: Principal, request: m.DeviceCancel) -> None:
        call = expert_call(self.machine(), expert, request.call)
        case = await self.book.open_for(call, self.clock())
        command = case.commands.get(request.key)
        if command is None:
            raise DocumentError(
                "unknown_command", "no command with this key in this call", 404, command=request.key
            )
        if command.state.finished:
            self.metrics.device_command("cancel", "duplicate")
            return  # cancelled, done or failed already: nothing left to stop
        relayed = m.DeviceCancel(call=call.id, key=request.key)
        try:
            reached = await self.bus.publish(address("device", call.kiosk), relayed)
        except ProtocolError:
            reached = 0
        if reached:
            self.metrics.device_command("cancel", "sent")
            return
        # Nobody to stop it: it is over as far as anyone can tell.
        self.metrics.device_command("cancel", "undeliverable")
        await self._server_state(case.id, request.key, "cancelled", "no device agent to stop")

    async def page(self, kiosk: Principal, request: m.DevicePage) -> None:
        call = kiosk_call(self.machine(), kiosk, request.call)
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

    async def progress(self, device: Principal, report: m.DeviceProgress) -> None:
        if report.state in _SERVER_STATES:
            raise DocumentError("invalid_command", f"only the server says {report.state!r}")
        case = await self._device_case(device, report.call, report.key)
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

        case, command, document, moved = await self.book.change(case.id, apply)
        if command.state.finished and command.state is not CommandState.DONE:
            self.metrics.device_command(command.kind, command.state.value)
        elif command.state is CommandState.DONE:
            self.metrics.device_command(command.kind, "done")
        await self._tell_progress(case, command)
        if moved and document is not None:
            await self._tell_document(case, document)

    async def _device_case(self, device: Principal, call_id: str, key: str) -> CaseFile:
        """The case of the command ``key`` that ``device``'s kiosk was sent."""
        case_id = await self.book.case_id_of_call(call_id, self._live(call_id))
        case = await self.book.store.load(case_id) if case_id else None
        command = case.commands.get(key) if case is not None else None
        if case is None or command is None or command.call != call_id:
            raise DocumentError(
                "unknown_command", "no command with this key for this call", 404, command=key
            )
        if self._command_kiosk(case, command) != device.id:
            raise DocumentError(
                "not_your_call", "this command is for another kiosk's device", 403, call=call_id
            )
        return case

    # ------------------------------------------------------------------ review and consent

    async def review(self, expert: Principal, request: m.CaseReview) -> None:
        call = expert_call(self.machine(), expert, request.call)
        now = self.clock()
        actor = actor_of(expert)
        case_id = self.book.case_id_of(call)

        def review(case: CaseFile) -> tuple[tuple[CaseFile, bool], list[AuditRow]]:
            rows = case.review(request.document, request.verdict, request.reason, actor, now)
            return (case, bool(rows)), rows

        case, changed = await self.book.change(case_id, review)
        if not changed:
            return
        self.metrics.document_counted(request.verdict)
        await self._tell_document(case, case.documents[request.document])
        if request.verdict == "accepted" and call.id in case.consents:
            await self._give_consent(case.id, call, actor, case.consents[call.id])

    async def _give_consent(self, case_id: str, call: Call, actor: str, code: str) -> str:
        """Record the consent of ``call`` (with ``code`` the first time) and save its
        share, covering the documents accepted so far; the share's code."""
        now = self.clock()

        def give(case: CaseFile) -> tuple[Share, list[AuditRow]]:
            return case.give_consent(call.id, code, actor, now)

        share = await self.book.change(case_id, give)
        await self.book.save_share(share, [])  # its row is saved with the case
        return share.code

    async def consent(self, kiosk: Principal, request: m.CaseConsent) -> m.CaseConsented:
        call = kiosk_call(self.machine(), kiosk, request.call)
        case = await self.book.open_for(call, self.clock())
        actor = actor_of(kiosk)
        if request.share:
            code = await self._give_consent(case.id, call, actor, new_share_code())
            return m.CaseConsented(id=request.id, call=call.id, share=True, code=code)
        given = case.consents.get(call.id)
        if given:
            await self._withdraw(given, actor)
        return m.CaseConsented(id=request.id, call=call.id, share=False, code="")

    async def share(self, kiosk: Principal, request: m.CaseShare) -> None:
        call = kiosk_call(self.machine(), kiosk, request.call)
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
        await self._tell(self._parties(call, guests=True), message)

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

    # ------------------------------------------------------------------ call.connected

    def call_announced(self, call: Call, only: str | None) -> None:
        """The router told participants ``call.connected``: follow it with the case file
        and the kiosk's devices (rule 4). Never blocks."""
        try:
            self._announced.put_nowait((call.id, only))
        except asyncio.QueueFull:
            log.warning("case files of connected calls are behind; call %s not told", call.id)

    async def _run_announcements(self) -> None:
        while not_cancelled():
            call_id, only = await self._announced.get()
            try:
                await self._announce(call_id, only)
            except Exception:
                log.exception("case file of call %s not told", call_id)

    async def _announce(self, call_id: str, only: str | None) -> None:
        call = self._live(call_id)
        if call is None or call.state is not CallState.CONNECTED:
            return
        keys = [f"kiosk:{call.kiosk}", f"expert:{call.expert}"]
        keys += [g.key for g in call.guests if g.role == "interpreter"]
        here = [
            key
            for key in keys
            if (only is None or key == only) and self.bus.has_subscribers(bus_address(key))
        ]
        if not here:
            return
        case = await self.book.open_for(call, self.clock())
        file = await self.book.file_message(call.id, case)
        status = m.DeviceStatus(health=await self.health_of(call.kiosk))
        for key in here:
            await self.bus.publish_here(bus_address(key), file)
            if not key.startswith("interpreter:"):
                await self.bus.publish_here(bus_address(key), status)

    # ------------------------------------------------------------------ timers

    async def _expire(self, case_id: str, now: float) -> None:
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
            await self._tell_progress(case, command)

    # ------------------------------------------------------------------ HTTP

    async def upload(
        self, principal: Principal, call_id: str, request: web.Request
    ) -> tuple[m.DocumentInfo, bool]:
        """Store the body of ``request`` as a document of the call's case file; the
        document, and whether it is new (False: the same key was seen before)."""
        key = request.headers.get("Idempotency-Key", "").strip()
        if key and not _KEY.match(key):
            raise DocumentError(
                "invalid_key", "Idempotency-Key is 8 to 64 letters, digits, '-' or '_'", 400
            )
        title = title_header(request)
        now = self.clock()
        if principal.role == "device":
            if not key:
                raise DocumentError(
                    "key_required", "a device sends its command's key as Idempotency-Key", 400
                )
            case = await self._device_case(principal, call_id, key)
            command = case.commands[key]
            if command.kind != "scan":
                raise DocumentError(
                    "invalid_command", "this key belongs to a print command", command=key
                )
            done = case.documents.get(command.document)
            if done is not None and done.state not in _NOT_ARRIVED:
                return document_info(done), False  # the upload was repeated
            if command.state.finished:
                raise DocumentError(
                    "invalid_command",
                    f"this scan is over ({command.state.value})",
                    command=key,
                    state=command.state.value,
                )
            origin, stored_key = "scan", key
            title = title or command.title or _DEFAULT_TITLE["scan"]
        elif principal.role == "expert":
            call = expert_call(self.machine(), principal, call_id)
            case = await self.book.open_for(call, now)
            stored_key = f"upload-{key}" if key else ""
            known = next(
                (d for d in case.documents.values() if stored_key and d.command == stored_key),
                None,
            )
            if known is not None:
                return document_info(known), False
            origin = "upload"
            title = title or _DEFAULT_TITLE["upload"]
        else:
            raise DocumentError(
                "forbidden", "only the call's expert or the kiosk's device may upload", 403
            )
        try:
            received = await receive_body(request, self.blobs, self.settings.max_bytes)
        except DocumentError:
            self.metrics.document_counted("refused")
            raise
        actor = actor_of(principal)
        retain_until = now + self.settings.retention_days * _DAY_S
        doc_id = new_document_id()

        def add(case: CaseFile) -> tuple[tuple[CaseFile, Document, bool], list[AuditRow]]:
            document, created, rows = case.add_document(
                doc_id,
                call_id,
                title,
                origin,
                received.mime,
                received.pages,
                received.size,
                received.blob,
                received.sha256,
                stored_key,
                actor,
                self.clock(),
                retain_until,
            )
            return (case, document, created), rows

        try:
            case, document, created = await self.book.change(case.id, add)
        except BaseException:
            await asyncio.to_thread(self.blobs.delete, received.blob)
            raise
        if not created or document.blob != received.blob:
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
        await self._tell_document(case, document)
        if origin == "scan":
            command = case.commands[key]
            self.metrics.device_command("scan", "done")
            await self._tell_progress(case, command, document.id)
        return document_info(document), True

    async def case_file(
        self, principal: Principal, call_id: str
    ) -> tuple[str, list[m.DocumentInfo]]:
        """The case file of a call, for whoever may read it."""
        call = self._live(call_id)
        member = call is not None and call in calls_of(self.machine(), principal)
        if member and call is not None:
            case = await self.book.open_for(call, self.clock())
        elif principal.watches_queues:
            case_id = await self.book.case_id_of_call(call_id, call)
            stored = await self.book.store.load(case_id) if case_id else None
            if stored is None:
                raise DocumentError("unknown_case", "no case file for this call", 404, call=call_id)
            case = stored
            if principal.role != "admin" and case.partner != principal.partner:
                raise DocumentError("forbidden", "a case file of another partner", 403)
        else:
            raise DocumentError(
                "not_your_call", "only the call's participants read its case file", 403
            )
        return case.id, await self.book.infos(case)

    async def readable(self, principal: Principal, doc: str) -> Readable:
        """The document ``doc`` if ``principal`` may read it now; purged is 410."""
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
        for call in calls_of(self.machine(), principal):
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
                and self._command_kiosk(case, c) == principal.id
                for c in case.commands.values()
            )
        return False

    async def opened(self, principal: Principal, readable: Readable) -> None:
        """The bytes were read: an expert's first reading marks the document viewed."""
        document = readable.document
        if principal.role != "expert" or document.state is not DocumentState.RECEIVED:
            return
        call = self._live(document.call)
        if call is None or call.expert != principal.id:
            return  # an expert reading a shared link, or another call's document
        now = self.clock()
        actor = actor_of(principal)

        def view(case: CaseFile) -> tuple[tuple[CaseFile, bool], list[AuditRow]]:
            rows = case.mark_viewed(document.id, actor, now)
            return (case, bool(rows)), rows

        case, changed = await self.book.change(readable.case.id, view)
        if changed:
            await self._tell_document(case, case.documents[document.id])

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
