"""The desk: the one door of call control for the WebSocket edge and the HTTP API.

Rules this module keeps:

1. Callers ask the desk; they do not reach into the queue machine. Commands go through
   ``execute`` (group commit), questions through small query methods.
2. A request is answered only once its events are stored and told, so a reply never
   gets ahead of what it caused.
3. A refusal is the machine's ``QueueError``, or a ``CallRefused`` event carrying its
   wire code; the edge turns either into an ``error`` message.
4. The parts are assembled here and nowhere else; each owns one job (see the package).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any

from queueing import (
    AcceptOffer,
    CallId,
    CallQueued,
    CallRefused,
    CancelCall,
    Command,
    DeclineOffer,
    Event,
    ExpertId,
    ExpertLost,
    ExpertSignIn,
    ExpertStatus,
    FinishWrapUp,
    HangUp,
    InviteInterpreter,
    JoinCall,
    KioskBack,
    KioskId,
    KioskLost,
    NodeLost,
    QueueError,
    QueueMachine,
    QueueStore,
    RecordText,
    ReportMediaFailure,
    RequestCall,
    Restarted,
    ServiceId,
    SetStatus,
    SupervisorLost,
    TransferCall,
    WaitEstimator,
    event_from_record,
)
from queueing.model import Call
from signaling import MessageBus, address, not_cancelled
from signaling import messages as m

from ..auth import Principal
from ..config import Config
from ..metrics import Metrics
from .commit import Committer
from .estimates import Estimates
from .follower import Follower, Heartbeat, NodeRegistry, PendingPresence
from .ledger import Ledger
from .metrics_tap import count
from .rooms import Rooms, speaks_as
from .router import Router
from .views import Views

__all__ = ["Desk"]

log = logging.getLogger(__name__)

_STATUS_THROTTLE_S = 0.5
_HISTORY_S = 14 * 86400
"""How far back the wait estimate learns from the event log on start."""


class Desk:
    def __init__(
        self,
        config: Config,
        store: QueueStore,
        bus: MessageBus,
        metrics: Metrics,
        clock: Callable[[], float] = time.time,
        *,
        node: str = "local",
        nodes: NodeRegistry | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.bus = bus
        self.metrics = metrics
        self.clock = clock
        self.node = node
        self.nodes = nodes
        self.ledger = Ledger(self._new_machine, store, snapshot_every=config.storage.snapshot_every)
        self.estimator = WaitEstimator()
        self.ready = False
        self._status_changed = asyncio.Event()
        self._rooms = Rooms(config, self._machine, bus, metrics)
        self._views = Views(config, self._machine, bus, self._rooms)
        self._estimates = Estimates(
            self.estimator, self._machine, bus, config.queue.estimate_refresh_s
        )
        self._router = Router(bus, self._views, self._estimates, self._rooms)
        self._committer = Committer(self.ledger, clock, self._published, self._heard)
        self._follower = Follower(self._committer, store, node)
        self._presence = PendingPresence(self._committer)
        self._heartbeat = (
            Heartbeat(self._committer, nodes, node, config.redis, metrics)
            if nodes is not None
            else None
        )

    # ------------------------------------------------------------------ state

    @property
    def machine(self) -> QueueMachine:
        return self.ledger.machine

    def _machine(self) -> QueueMachine:
        return self.ledger.machine

    def _new_machine(self) -> QueueMachine:
        config = self.config
        return QueueMachine(config.service_specs(), config.kiosk_specs(), config.queue_settings())

    @property
    def store_ok(self) -> bool:
        """Whether the store is reachable, as the last write or heartbeat found it."""
        return self._committer.store_ok

    @property
    def on_moved(self) -> Callable[[str, str], None]:
        """Told when another node took a party this node may still hold."""
        return self._follower.on_moved

    @on_moved.setter
    def on_moved(self, callback: Callable[[str, str], None]) -> None:
        self._follower.on_moved = callback

    @property
    def on_call_announced(self) -> Callable[[Call, str | None], None]:
        """Told after each ``call.connected`` went out, with the participant it went to
        (None: all); must not block."""
        return self._router.on_announced

    @on_call_announced.setter
    def on_call_announced(self, callback: Callable[[Call, str | None], None]) -> None:
        self._router.on_announced = callback

    def show_devices(self, devices: Callable[[], list[m.DeviceHealth]]) -> None:
        """Where ``queue.status`` reads the kiosks' devices from."""
        self._views.devices = devices

    def status_changed(self) -> None:
        """Something shown in ``queue.status`` changed outside the queue: tell watchers."""
        self._status_changed.set()

    @property
    def on_node_lost(self) -> Callable[[], None]:
        """Told when the others declared this node dead (it was cut off too long)."""
        return self._follower.on_node_lost

    @on_node_lost.setter
    def on_node_lost(self, callback: Callable[[], None]) -> None:
        self._follower.on_node_lost = callback

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Rebuild the queue from the store; parties of the stopped process get a grace."""
        held_anything = await self.ledger.open()
        for row in await self.store.read_events(since=self.clock() - _HISTORY_S):
            self.estimator.observe(event_from_record(row))
        if not self.store.shared:
            if held_anything:
                await self.execute(Restarted())
        elif self._holds_parties():
            # Restarted under the same name: what the last run of this node held is gone.
            await self.execute(NodeLost(self.node))
        self.ready = True

    async def run(self) -> None:
        """Fire the queue's timers and push queue status; runs until cancelled."""
        async with asyncio.TaskGroup() as group:
            group.create_task(self._committer.run_timers())
            group.create_task(self._run_status())
            group.create_task(self._presence.run())
            if self.store.shared:
                group.create_task(self._follower.run())
            if self._heartbeat is not None:
                group.create_task(self._heartbeat.run())

    async def stop(self) -> None:
        """A node stopping on purpose releases its parties now, not after the cut-off:
        their pages are reconnecting to the other nodes already."""
        if self.store.shared and self._holds_parties():
            try:
                await self.execute(NodeLost(self.node))
            except QueueError as exc:
                log.warning("could not release this node's parties: %s", exc.reason)

    def _holds_parties(self) -> bool:
        prefix = f"{self.node}/"
        return any(link.startswith(prefix) for link in self.machine.links().values())

    async def _run_status(self) -> None:
        refresh = max(self.config.queue.estimate_refresh_s, 1.0) * 3
        while not_cancelled():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._status_changed.wait(), refresh)
            self._status_changed.clear()
            now = self.clock()
            try:
                await self._views.publish_status(now)
                await self._estimates.refresh(now)
            except Exception:
                log.exception("queue status could not be published")
            await asyncio.sleep(_STATUS_THROTTLE_S)

    # ------------------------------------------------------------------ events

    async def _published(self, events: list[Event], now: float, own: bool) -> None:
        for event in events:
            self.estimator.observe(event)
            if own:  # each node counts what it wrote, so that the cluster sums right
                count(self.metrics, event)
        await self._router.route(events, now)
        if events:
            self._status_changed.set()

    def _heard(self, record: dict[str, Any]) -> None:
        self._follower.heard(record)

    # ------------------------------------------------------------------ commands

    async def execute(self, command: Command) -> list[Event]:
        """Apply and store ``command``; its events, or the ``QueueError`` refusing it."""
        return await self._committer.execute(command)

    async def kiosk_connected(self, kiosk: Principal, link: str = "") -> None:
        party = address("kiosk", kiosk.id)
        await self._presence.record(party, KioskBack(KioskId(kiosk.id), link))

    async def expert_connected(self, expert: Principal, link: str = "") -> None:
        expert_id = ExpertId(expert.id)
        services = tuple(ServiceId(s) for s in expert.services)
        await self._presence.record(
            address("expert", expert.id),
            ExpertSignIn(expert_id, expert.name, expert.partner, services, expert.languages, link),
        )
        await self._router.console_back(expert_id, self.clock())

    async def supervisor_connected(self, supervisor: Principal) -> None:
        """A supervisor's page starts afresh: calls it listened to from an older
        connection are left, so that it can join them again."""
        if self.machine.link_of(address("supervisor", supervisor.id)) is not None:
            await self.execute(SupervisorLost(supervisor.id))

    async def party_lost(self, party: Principal, link: str = "") -> None:
        if party.role == "supervisor":
            held = self.machine.link_of(address("supervisor", party.id))
            if held is not None and held == link:  # it had joined calls from this connection
                left: Command = SupervisorLost(party.id, link)
                await self._presence.record(address("supervisor", party.id), left)
        elif party.role == "kiosk":
            lost: Command = KioskLost(KioskId(party.id), link)
            await self._presence.record(address("kiosk", party.id), lost)
        elif party.answers_calls:
            lost = ExpertLost(ExpertId(party.id), link)
            await self._presence.record(address("expert", party.id), lost)

    async def request_call(self, kiosk: Principal, request: m.CallRequest) -> m.CallQueued:
        call_id = CallId(secrets.token_hex(8))
        events = await self.execute(
            RequestCall(
                call_id,
                KioskId(kiosk.id),
                ServiceId(request.service),
                request.beneficiary.strip().upper(),
                request.language,
                request.interpreter,
            )
        )
        for event in events:
            if isinstance(event, CallRefused):
                raise QueueError(event.code, event.reason, next_opening=event.next_opening)
            if isinstance(event, CallQueued):
                low, high = self._estimates.queued(
                    call_id, event.service, event.position, self.clock()
                )
                return m.CallQueued(
                    id=request.id,
                    call=call_id,
                    service=event.service,
                    position=event.position,
                    wait_min_s=low,
                    wait_max_s=high,
                )
        raise QueueError("internal", "the call was neither queued nor refused")

    async def cancel_call(self, kiosk: Principal, call: str) -> None:
        await self.execute(CancelCall(CallId(call), KioskId(kiosk.id)))

    async def hang_up(self, party: Principal, call: str) -> None:
        """The kiosk or the answering expert ends the call; a guest leaves it."""
        await self.execute(HangUp(CallId(call), party.id, speaks_as(party)))

    async def media_failed(self, party: Principal, call: str, detail: str) -> None:
        role = speaks_as(party)
        await self.execute(
            ReportMediaFailure(CallId(call), party.id, role, detail or "media_failed")
        )

    async def invite(self, party: Principal, call: str, language: str) -> None:
        """Ask for an interpreter: how it goes arrives as ``call.interpreter``."""
        role = speaks_as(party)
        await self.execute(InviteInterpreter(CallId(call), party.id, role, language))

    async def join(self, supervisor: Principal, call: str, link: str = "") -> None:
        """A supervisor listens in; ``call.connected`` follows."""
        await self.execute(
            JoinCall(CallId(call), supervisor.id, supervisor.name, supervisor.partner, link)
        )

    async def send_data(self, sender: Principal, message: m.CallData) -> None:
        """Relay a channel's message; a finished line of real-time text is kept where
        the service keeps a transcript."""
        finished = await self._rooms.data(sender, message)
        if finished is None:
            return
        call = self.machine.call(CallId(message.call))
        if call is not None and self.machine.services[call.service].rtt_transcript:
            await self.execute(
                RecordText(CallId(message.call), sender.id, speaks_as(sender), finished.text)
            )

    async def set_status(self, expert: Principal, status: str) -> None:
        await self.execute(SetStatus(ExpertId(expert.id), ExpertStatus(status)))

    async def accept(self, expert: Principal, call: str) -> None:
        await self.execute(AcceptOffer(ExpertId(expert.id), CallId(call)))

    async def reject(self, expert: Principal, call: str) -> None:
        await self.execute(DeclineOffer(ExpertId(expert.id), CallId(call)))

    async def wrap_up(self, expert: Principal, call: str, reason: str) -> None:
        await self.execute(FinishWrapUp(ExpertId(expert.id), CallId(call), reason))

    async def transfer(self, expert: Principal, call: str, service: str) -> None:
        await self.execute(TransferCall(ExpertId(expert.id), CallId(call), ServiceId(service)))

    async def relay(self, sender: Principal, message: m.RtcSdp | m.RtcIce) -> None:
        """Pass SDP or ICE to one participant of the sender's call, and nobody else.

        Relayed messages usually carry no id: the call id in an error's details tells
        the client which of its messages was refused. Relays are not journaled: one
        publish reaches the participant on whichever node holds it."""
        await self._rooms.relay(sender, message)

    # ------------------------------------------------------------------ questions

    def welcome_services(self, principal: Principal, now: float) -> list[m.ServiceInfo]:
        return self._views.welcome_services(principal, now)

    def queue_status(self, principal: Principal | None, now: float) -> m.QueueStatus:
        return self._views.queue_status(principal, now)

    def interpreter_languages(self) -> list[str]:
        """Languages an interpreter can be asked for, from the interpreting services."""
        return self.machine.interpreter_languages()

    def kiosk_info(self, kiosk_id: str) -> m.KioskInfo | None:
        """The configured kiosk by this id (name and place), None for an unknown id."""
        return self._views.kiosk_info(kiosk_id)

    def expert_state(self, expert_id: str) -> tuple[str, str] | None:
        """The expert's status and state as the wire names them; None if never signed in."""
        return self._views.expert_state(expert_id)

    def links(self) -> dict[str, str]:
        """Each connected party (``kiosk:<id>``, ``expert:<id>``) and its ``<node>/<id>`` link."""
        return self.machine.links()
