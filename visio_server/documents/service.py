"""The documents façade: the one door of the edge and the HTTP routes to case files,
device commands and the kiosks' devices, assembled from parts that own one job.

- ``agents``: the kiosks' device agents and their health (``device.status``).
- ``commands``: scans, prints, cancels, pages, progress, deadlines.
- ``decisions``: the expert's verdict, the citizen's consent and shares.
- ``library``: uploads in; case files, content and pages out (HTTP).
- ``telling``: who hears of what.
- ``cases``: case files through the store's compare-and-set.
- ``exporter``, ``purge``: accepted documents to the partner; files past retention.

Rules this module keeps:

1. Refusals are ``DocumentError``; the edge and the HTTP middleware turn them into
   typed errors.
2. ``call.connected`` is followed by ``case.file`` and ``device.status``: each node
   tells the participants it holds, from a queue the router's hook only fills, so the
   router never waits for a case store.
3. Deadlines, exports and purges run on this node's schedules, which learn from every
   case this node saves, and from a read of every case with work left at start and
   every ``documents.scan_interval_s``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from casefiles.machine import CaseFile
from casefiles.store import CaseStore
from queueing import CallState, QueueMachine
from queueing.model import Call
from signaling import MessageBus, not_cancelled
from signaling import messages as m

from ..calls.rooms import bus_address
from ..config import Config
from ..metrics import Metrics
from .agents import Agents
from .blobs import BlobStore
from .cases import CaseBook
from .commands import Commands
from .decisions import Decisions
from .devices import DeviceRegistry
from .exporter import Exporter, ExportWork
from .library import Library
from .purge import PurgeWork
from .schedule import Schedule
from .telling import Teller

__all__ = ["Documents"]

log = logging.getLogger(__name__)

_DEADLINE_RETRY_S = 5.0
_ANNOUNCED_BACKLOG = 10_000
_ABANDONED_S = 3600.0
"""A temporary upload file untouched this long was left by a process that died (one
being received is written to as its bytes arrive)."""


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
        settings = config.documents
        self.settings = settings
        self.clock = clock
        self.bus = bus
        self.blobs = blobs
        self.exporter = exporter
        self.book = CaseBook(config, store)
        self.book.on_saved = self._saved
        self.teller = Teller(machine, bus)
        names = {kiosk.id: kiosk.name for kiosk in config.kiosks}
        self.agents = Agents(devices, self.teller, clock, status_changed, names)
        self.commands = Commands(settings, self.book, self.agents, self.teller, bus, metrics, clock)
        self.decisions = Decisions(self.book, self.teller, metrics, clock)
        self.library = Library(
            settings, self.book, blobs, self.commands, self.teller, metrics, clock
        )
        self._announced: asyncio.Queue[tuple[str, str | None]] = asyncio.Queue(_ANNOUNCED_BACKLOG)
        self.deadlines = Schedule(
            "expiry", Commands.when, self.commands.expire, clock, _DEADLINE_RETRY_S
        )
        purge = PurgeWork(
            self.book, blobs, metrics, clock, self.teller.document, keep_unexported=bool(exporter)
        )
        self.purges = Schedule(
            "purge", purge.when, purge.purge_case, clock, settings.scan_interval_s
        )
        self.exports: Schedule | None = None
        if exporter is not None:
            export = ExportWork(
                self.book, blobs, exporter, settings, metrics, clock, self.teller.document
            )
            self.exports = Schedule(
                "export", ExportWork.when, export.export_case, clock, settings.export_backoff_s
            )

    # ------------------------------------------------------------------ lifecycle

    async def run(self) -> None:
        """The schedules, the announcements and the device agents' heartbeat; until
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
            group.create_task(self.agents.run())
            group.create_task(self._run_store_scan())

    async def close(self) -> None:
        if self.exporter is not None:
            await self.exporter.close()
        await self.agents.registry.close()
        await self.book.store.close()

    def known_devices(self) -> list[m.DeviceHealth]:
        """Every kiosk's device agent, without I/O (for ``queue.status`` and metrics)."""
        return self.agents.known()

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

    # ------------------------------------------------------------------ call.connected

    def call_announced(self, call: Call, only: str | None) -> None:
        """The router told participants ``call.connected``: follow it with the case file
        and the kiosk's devices (rule 2). Never blocks."""
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
        call = self.teller.live(call_id)
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
            return  # another node holds them, and tells them
        case = await self.book.open_for(call, self.clock())
        file = await self.book.file_message(call.id, case)
        status = m.DeviceStatus(health=await self.agents.health_of(call.kiosk))
        for key in here:
            await self.bus.publish_here(bus_address(key), file)
            if not key.startswith("interpreter:"):
                await self.bus.publish_here(bus_address(key), status)
