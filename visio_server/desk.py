"""Call control: the thin asyncio glue around the queue machine.

For each command: take the lock, apply it to the machine with ``now``, write the
journal entry and its events to the store, then hand the resulting messages to the
bus, and re-arm the one timer. Messages leave in the order events happened, and a
reply leaves only after its events are stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import secrets
import time
import zlib
from collections.abc import Callable
from typing import Any, Protocol

from media import ice_servers
from queueing import (
    AcceptOffer,
    CallConnected,
    CallEnded,
    CallId,
    CallOffered,
    CallQueued,
    CallRefused,
    CallRequeued,
    CallResumed,
    CallState,
    CallTransferred,
    CancelCall,
    Command,
    DeclineOffer,
    Event,
    ExpertChanged,
    ExpertId,
    ExpertLost,
    ExpertSignIn,
    ExpertState,
    ExpertStatus,
    FinishWrapUp,
    HangUp,
    JournalEntry,
    KioskBack,
    KioskId,
    KioskLost,
    Ledger,
    NodeLost,
    OfferEnded,
    Outcome,
    PartyBack,
    PartyLost,
    PositionChanged,
    QueueError,
    QueueMachine,
    QueueStore,
    ReportMediaFailure,
    RequestCall,
    Restarted,
    ServiceId,
    SetStatus,
    StoreUnavailable,
    TransferCall,
    WaitEstimator,
    WrapUpStarted,
    event_from_record,
)
from queueing.model import Call, PartyRole
from signaling import MessageBus, address, not_cancelled
from signaling import messages as m

from .auth import Principal
from .config import Config
from .metrics import Metrics

__all__ = ["Desk"]

log = logging.getLogger(__name__)

_REFUSALS = {
    Outcome.CLOSED: ("service_closed", "the service is closed now"),
    Outcome.FULL: ("queue_full", "too many people are waiting for this service; try again later"),
    Outcome.NO_EXPERT: ("no_expert", "no expert of this service is signed in now"),
}
_STATUS_THROTTLE_S = 0.5
_FOLLOW_BLOCK_S = 1.0
_ESTIMATE_STEP_S = 30.0
_ESTIMATE_GAP_S = 0.25
_RETRY_S = 1.0


class NodeRegistry(Protocol):
    """Node liveness in a shared store: a heartbeat that expires."""

    async def beat(self, node: str, ttl_s: float) -> None: ...

    async def alive(self, nodes: list[str]) -> set[str]: ...


def _party_role(party: Principal) -> PartyRole:
    return "kiosk" if party.role == "kiosk" else "expert"


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
        self._lock = asyncio.Lock()
        self._waiting: list[tuple[Command, asyncio.Future[list[Event]]]] = []
        """Commands waiting for the lock, written together by whoever takes it."""
        self._inbox: list[JournalEntry] = []
        self._fetched = 0
        """The last entry fetched from the shared journal (applied or in the inbox)."""
        """Entries other nodes wrote, fetched but not applied yet."""
        self._pending: dict[str, Command] = {}
        """Presence commands the store refused while down, replayed when it is back."""
        self.on_moved: Callable[[str, str], None] = lambda party, link: None
        """Told when another node took a party this node may still hold."""
        self.on_node_lost: Callable[[], None] = lambda: None
        """Told when the others declared this node dead (it was cut off too long)."""
        self.store_ok = True
        self._timer_changed = asyncio.Event()
        self._status_changed = asyncio.Event()
        self._estimates: dict[ServiceId, tuple[float, list[tuple[float, float] | None]]] = {}
        self._told: dict[CallId, tuple[int, float | None, float | None]] = {}
        self.ready = False

    # ------------------------------------------------------------------ lifecycle

    async def stop(self) -> None:
        """A node stopping on purpose releases its parties now, not after the cut-off:
        their pages are reconnecting to the other nodes already."""
        prefix = f"{self.node}/"
        if self.store.shared and any(
            link.startswith(prefix) for link in self.machine.links().values()
        ):
            try:
                await self.execute(NodeLost(self.node))
            except QueueError as exc:
                log.warning("could not release this node's parties: %s", exc.reason)

    @property
    def machine(self) -> QueueMachine:
        return self.ledger.machine

    def _new_machine(self) -> QueueMachine:
        config = self.config
        return QueueMachine(config.service_specs(), config.kiosk_specs(), config.queue_settings())

    async def start(self) -> None:
        """Rebuild the queue from the store; parties of the stopped process get a grace."""
        held_anything = await self.ledger.open()
        await self._learn_from_history()
        if not self.store.shared:
            if held_anything:
                await self.execute(Restarted())
        elif any(link.startswith(f"{self.node}/") for link in self.machine.links().values()):
            # Restarted under the same name: what the last run of this node held is gone.
            await self.execute(NodeLost(self.node))
        self.ready = True

    async def _learn_from_history(self) -> None:
        since = self.clock() - 14 * 86400
        for row in await self.store.read_events(since=since):
            self.estimator.observe(event_from_record(row))

    async def run(self) -> None:
        """Fire the queue's timers and push queue status; runs until cancelled."""
        async with asyncio.TaskGroup() as group:
            group.create_task(self._run_timers())
            group.create_task(self._run_status())
            group.create_task(self._run_pending())
            if self.store.shared:
                group.create_task(self._run_follow())
            if self.nodes is not None:
                group.create_task(self._run_heartbeat())

    async def _run_timers(self) -> None:
        while not_cancelled():
            self._timer_changed.clear()
            deadline = self.machine.get_timer()
            delay = None if deadline is None else max(0.0, deadline - self.clock())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._timer_changed.wait(), delay)
                continue
            try:
                async with self._lock:
                    await self._apply_inbox()
                    events, now = await self.ledger.commit(None, self.clock, self._replayed)
                    await self._publish(events, now, own=True)
            except StoreUnavailable:
                # The machine went back to what the store holds: they fire again later.
                await asyncio.sleep(_RETRY_S)
            except Exception:
                log.exception("queue timers could not be handled; retrying")
                await asyncio.sleep(_RETRY_S)

    async def _run_follow(self) -> None:
        """Fetch what other nodes write to the shared journal as soon as they write it,
        and apply it. Fetching does not wait for the lock, so the next entries are on
        their way while this node is busy; commands waiting for the lock apply the
        fetched ones first instead of losing the race for the next entry number."""
        failing = False
        applying: asyncio.Task[None] | None = None
        try:
            while not_cancelled():
                try:
                    after = max(self._fetched, self.ledger.entry)
                    entries = await self.store.wait_journal(after, _FOLLOW_BLOCK_S)
                    if entries:
                        self._fetched = entries[-1][0]
                        self._inbox.extend(entries)
                        if applying is None or applying.done():
                            applying = asyncio.create_task(self._apply_fetched())
                    if failing:
                        log.warning("following the shared journal again")
                    failing = False
                except Exception as exc:
                    if not failing:
                        log.warning("cannot follow the shared journal (%r); retrying", exc)
                    failing = True
                    self._fetched = 0
                    await asyncio.sleep(_RETRY_S)
        finally:
            if applying is not None:
                applying.cancel()

    async def _apply_fetched(self) -> None:
        try:
            async with self._lock:
                await self._apply_inbox()
        except Exception:
            log.exception("entries of other nodes could not be applied; fetching them again")
            self._inbox.clear()
            self._fetched = 0

    async def _apply_inbox(self) -> None:
        entries, self._inbox = self._inbox, []
        if entries:
            await self.ledger.catch_up(self._replayed, entries)

    async def _replayed(self, record: dict[str, Any], events: list[Event], at: float) -> None:
        """An entry another node wrote: tell this node's connections, as that node did."""
        await self._publish(events, at, own=False)
        kind, link = record["kind"], record.get("link", "")
        if kind == "KioskBack" and link:
            self.on_moved(address("kiosk", record["kiosk"]), link)
        elif kind == "ExpertSignIn" and link:
            self.on_moved(address("expert", record["expert"]), link)
        elif kind == "NodeLost" and record["node"] == self.node:
            self.on_node_lost()

    async def _run_heartbeat(self) -> None:
        """Say this node is alive; declare dead the nodes whose heartbeat stopped.

        Only a node that has itself reached the store for a whole cut-off may judge the
        others: after an outage everyone first gets the time to beat again."""
        assert self.nodes is not None
        settings = self.config.redis
        loop = asyncio.get_running_loop()
        reachable_since: float | None = None
        while not_cancelled():
            try:
                await self.nodes.beat(self.node, settings.node_cutoff_s)
                if reachable_since is None:
                    reachable_since = loop.time()
                self.store_ok = True
                if loop.time() - reachable_since >= settings.node_cutoff_s:
                    await self._declare_dead_nodes()
            except Exception as exc:
                if self.store_ok:
                    log.warning("cannot reach the shared store (%s)", exc)
                reachable_since, self.store_ok = None, False
            await asyncio.sleep(settings.heartbeat_s)

    async def _declare_dead_nodes(self) -> None:
        assert self.nodes is not None
        holding = {link.split("/", 1)[0] for link in self.machine.links().values()}
        others = sorted(holding - {self.node})
        if not others:
            return
        alive = await self.nodes.alive(others)
        for node in others:
            if node not in alive:
                log.warning("node %s stopped its heartbeat: its parties count as lost", node)
                self.metrics.node_lost()
                await self.execute(NodeLost(node))

    async def _run_pending(self) -> None:
        while not_cancelled():
            await asyncio.sleep(_RETRY_S)
            for party, command in list(self._pending.items()):
                try:
                    await self.execute(command)
                except StoreUnavailable:
                    break
                except QueueError as exc:
                    log.info("presence of %s no longer applies: %s", party, exc.reason)
                if self._pending.get(party) is command:
                    del self._pending[party]

    async def _run_status(self) -> None:
        refresh = max(self.config.queue.estimate_refresh_s, 1.0) * 3
        while not_cancelled():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._status_changed.wait(), refresh)
            self._status_changed.clear()
            now = self.clock()
            try:
                await self._publish_status(now)
                await self._refresh_estimates(now)
            except Exception:
                log.exception("queue status could not be published")
            await asyncio.sleep(_STATUS_THROTTLE_S)

    # ------------------------------------------------------------------ commands

    async def execute(self, command: Command) -> list[Event]:
        """Apply and store ``command``; its events, or the ``QueueError`` refusing it.

        Group commit: whoever takes the lock writes every command waiting for it, in
        arrival order, with one store round trip; the others find theirs done."""
        done: asyncio.Future[list[Event]] = asyncio.get_running_loop().create_future()
        self._waiting.append((command, done))
        try:
            async with self._lock:
                if not done.done():
                    batch, self._waiting = self._waiting, []
                    try:
                        await self._commit_batch(batch)
                    finally:  # cancelled half way (shutdown): nobody must wait for ever
                        for _, waiting in batch:
                            if not waiting.done():
                                waiting.set_exception(StoreUnavailable())
        except asyncio.CancelledError:
            done.cancel()  # not written yet: the next batch leaves it out
            raise
        return await done

    async def _commit_batch(self, batch: list[tuple[Command, asyncio.Future[list[Event]]]]) -> None:
        batch = [(command, done) for command, done in batch if not done.done()]
        try:
            await self._apply_inbox()
            outcomes = await self.ledger.commit_many(
                [command for command, _ in batch], self.clock, self._replayed
            )
        except Exception as exc:
            self.store_ok = not isinstance(exc, StoreUnavailable)
            for _, done in batch:
                done.set_exception(exc)
            return
        self.store_ok = True
        for (_, done), outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, QueueError):
                done.set_exception(outcome)
                continue
            events, now = outcome
            try:
                await self._publish(events, now, own=True)
            finally:
                done.set_result(events)

    async def _publish(self, events: list[Event], now: float, *, own: bool) -> None:
        for event in events:
            self.estimator.observe(event)
            if own:  # each node counts what it wrote, so that the cluster sums right
                self._count(event)
        await self._route(events, now)
        self.ledger.checkpoint_if_due()
        self._timer_changed.set()
        if events:
            self._status_changed.set()

    async def _presence(self, party: str, command: Command) -> None:
        """Record a connection or its loss; kept and retried while the store is down."""
        try:
            await self.execute(command)
        except StoreUnavailable:
            self._pending[party] = command
            raise
        self._pending.pop(party, None)

    async def kiosk_connected(self, kiosk: Principal, link: str = "") -> None:
        await self._presence(address("kiosk", kiosk.id), KioskBack(KioskId(kiosk.id), link))

    async def expert_connected(self, expert: Principal, link: str = "") -> None:
        expert_id = ExpertId(expert.id)
        await self._presence(
            address("expert", expert.id),
            ExpertSignIn(
                expert_id,
                expert.name,
                expert.partner,
                tuple(ServiceId(s) for s in expert.services),
                expert.languages,
                link,
            ),
        )
        record = self.machine.expert(expert_id)
        call = self.machine.call(record.call) if record and record.call else None
        if call is not None and call.state is CallState.CONNECTED:
            await self._announce_connected(call, self.clock())
        if record is not None and record.state is ExpertState.OFFERED and call is not None:
            # A console reloaded while ringing: ring again for the time that is left.
            await self._route([self._offered_again(call, expert_id)], self.clock())
        wrap_up = self.machine.wrap_up_of(expert_id)
        if wrap_up is not None:
            # A console reloaded during wrap-up needs the reasons again to finish it.
            call_id, service, until = wrap_up
            now = self.clock()
            await self._route([WrapUpStarted(now, expert_id, call_id, service, until)], now)

    async def party_lost(self, party: Principal, link: str = "") -> None:
        if party.role == "kiosk":
            await self._presence(address("kiosk", party.id), KioskLost(KioskId(party.id), link))
        elif party.answers_calls:
            await self._presence(address("expert", party.id), ExpertLost(ExpertId(party.id), link))

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
                code, reason = _REFUSALS[event.outcome]
                raise QueueError(code, reason, next_opening=event.next_opening)
            if isinstance(event, CallQueued):
                low, high = self._wait_range(event.service, event.position, self.clock())
                self._told[call_id] = (event.position, low, high)
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
        await self.execute(HangUp(CallId(call), party.id, _party_role(party)))

    async def media_failed(self, party: Principal, call: str, detail: str) -> None:
        await self.execute(
            ReportMediaFailure(CallId(call), party.id, _party_role(party), detail or "media_failed")
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
        """Pass SDP or ICE to the other party of the sender's connected call, and nobody else."""
        # Relayed messages usually carry no id: the call id in the details tells the
        # client which of its messages was refused.
        call = self.machine.call(CallId(message.call))
        if call is None:
            raise QueueError(
                "unknown_call", "this call does not exist or has ended", call=message.call
            )
        if call.state is not CallState.CONNECTED and sender.id in (call.kiosk, call.expert):
            raise QueueError("not_in_call", "the call is not connected", call=message.call)
        if sender.role == "kiosk" and sender.id == call.kiosk:
            target = address("expert", str(call.expert))
        elif sender.answers_calls and sender.id == call.expert:
            target = address("kiosk", call.kiosk)
        else:
            raise QueueError("not_your_call", "you are not a party of this call", call=message.call)
        if isinstance(message, m.RtcSdp):
            relayed: m.Message = m.RtcSdp(
                call=message.call, description=message.description, sender=sender.id
            )
        else:
            relayed = m.RtcIce(call=message.call, candidate=message.candidate, sender=sender.id)
        await self.bus.publish(target, relayed)

    # ------------------------------------------------------------------ views

    def welcome_services(self, principal: Principal, now: float) -> list[m.ServiceInfo]:
        visible = [
            self.machine.services[ServiceId(s)]
            for s in principal.services
            if ServiceId(s) in self.machine.services
        ]
        if principal.watches_queues:
            visible = self._watched_services(principal)
        return [
            m.ServiceInfo(
                id=spec.id,
                name=spec.name,
                partner=spec.partner,
                open=spec.hours.is_open(now),
                next_opening=spec.hours.next_opening(now),
                closes_at=spec.hours.closes_at(now),
                timezone=spec.hours.timezone,
                beneficiary_label=spec.beneficiary_label,
                beneficiary_pattern=spec.beneficiary_pattern,
                beneficiary_hint=spec.beneficiary_hint,
                languages=list(spec.languages),
                interpreter=spec.interpreter,
                visit_reasons=list(spec.visit_reasons),
            )
            for spec in visible
        ]

    def _watched_services(self, principal: Principal) -> list[Any]:
        specs = list(self.machine.services.values())
        if principal.role == "admin":
            return specs
        return [s for s in specs if s.partner == principal.partner]

    def queue_status(self, principal: Principal | None, now: float) -> m.QueueStatus:
        specs = (
            self._watched_services(principal)
            if principal is not None
            else list(self.machine.services.values())
        )
        rows = []
        for spec in specs:
            status = self.machine.status(spec.id, now)
            experts = dict(status.experts)
            experts["away"] = experts.pop("disconnected", 0)
            rows.append(
                m.ServiceQueue(
                    service=spec.id,
                    name=spec.name,
                    partner=spec.partner,
                    open=status.open,
                    waiting=status.waiting,
                    offered=status.offered,
                    connected=status.connected,
                    oldest_wait_s=round(status.oldest_wait_s, 1),
                    experts=experts,
                )
            )
        return m.QueueStatus(at=now, services=rows)

    async def _publish_status(self, now: float) -> None:
        partners = sorted({s.partner for s in self.machine.services.values()})
        watched = [p for p in partners if self.bus.has_subscribers(address("watch", p))]
        if not watched and not self.bus.has_subscribers("watch:*"):
            return
        everything = self.queue_status(None, now)
        await self.bus.publish_here("watch:*", everything)
        for partner in watched:
            mine = [row for row in everything.services if row.partner == partner]
            await self.bus.publish_here(
                address("watch", partner), m.QueueStatus(at=now, services=mine)
            )

    # ------------------------------------------------------------------ wait estimate

    def _count(self, event: Event) -> None:
        """Metrics count live events only: a restart must not count history again."""
        match event:
            case CallConnected():
                self.metrics.call_answered(event.service, event.waited_s)
            case CallEnded():
                if event.short:
                    self.metrics.short_abandon(event.service)
                self.metrics.call_left(
                    event.service, event.outcome.value, event.waited_s, event.talk_s
                )
                self._told.pop(event.call, None)
            case CallRefused():
                self.metrics.call_left(event.service, event.outcome.value, None, None)
            case CallTransferred():
                self.metrics.call_left(event.from_service, Outcome.TRANSFERRED.value, None, None)
            case OfferEnded():
                self.metrics.offer_ended(event.service, event.result)

    def _ranges(
        self, service: ServiceId, now: float, *, fresh: bool = False
    ) -> list[tuple[float, float] | None]:
        cached = self._estimates.get(service)
        if (
            cached is not None
            and not fresh
            and now - cached[0] < self.config.queue.estimate_refresh_s
        ):
            return cached[1]
        spec = self.machine.services[service]
        ranges = self.estimator.estimate(
            service,
            self.machine.queue_view(service, now),
            prior_handle_s=spec.expected_handle_s,
            seed=zlib.crc32(f"{service}:{int(now)}".encode()),
        )
        self._estimates[service] = (now, ranges)
        return ranges

    def _wait_range(
        self, service: ServiceId, position: int, now: float
    ) -> tuple[float | None, float | None]:
        ranges = self._ranges(service, now)
        if position > len(ranges) and now - self._estimates[service][0] >= _ESTIMATE_GAP_S:
            # A burst of callers would cost a simulation each: within the gap the new
            # ones get their range from the next refresh, a fraction of a second later.
            ranges = self._ranges(service, now, fresh=True)
        if position < 1 or position > len(ranges) or ranges[position - 1] is None:
            return None, None
        low, high = ranges[position - 1]  # type: ignore[misc]
        low = math.floor(low / _ESTIMATE_STEP_S) * _ESTIMATE_STEP_S
        high = max(
            math.ceil(high / _ESTIMATE_STEP_S) * _ESTIMATE_STEP_S, low + 2 * _ESTIMATE_STEP_S
        )
        return low, high

    async def _refresh_estimates(self, now: float) -> None:
        """Waits drift while nothing happens (calls in progress get longer): tell kiosks."""
        for service in self.machine.services:
            queued = [
                call
                for call in self.machine.queued(service)
                if self.bus.has_subscribers(address("kiosk", call.kiosk))
            ]
            if not queued:
                continue
            self._ranges(service, now, fresh=True)
            for call in queued:
                await self._tell_position(call.id, call.kiosk, service, call.position, now)

    async def _tell_position(
        self, call: CallId, kiosk: KioskId, service: ServiceId, position: int, now: float
    ) -> None:
        target = address("kiosk", kiosk)
        if not self.bus.has_subscribers(target):
            return  # another node holds the kiosk and tells it; estimates cost a simulation
        low, high = self._wait_range(service, position, now)
        if self._told.get(call) == (position, low, high):
            return
        self._told[call] = (position, low, high)
        await self.bus.publish_here(
            target, m.CallPosition(call=call, position=position, wait_min_s=low, wait_max_s=high)
        )

    # ------------------------------------------------------------------ routing

    async def _route(self, events: list[Event], now: float) -> None:
        publish = self.bus.publish_here
        here = self.bus.has_subscribers  # messages for parties held elsewhere are not built
        for event in events:
            match event:
                case PositionChanged():
                    await self._tell_position(
                        event.call, event.kiosk, event.service, event.position, now
                    )
                case CallOffered() if here(address("expert", event.expert)):
                    await publish(address("expert", event.expert), self._offer_message(event, now))
                case OfferEnded() if event.result != "accepted":
                    reason: Any = event.result
                    await publish(
                        address("expert", event.expert),
                        m.OfferWithdrawn(call=event.call, reason=reason),
                    )
                case CallConnected():
                    call = self.machine.call(event.call)
                    if call is not None:
                        await self._announce_connected(call, now)
                case CallResumed():
                    await publish(
                        address("kiosk", event.kiosk),
                        m.CallResumed(
                            call=event.call,
                            service=event.service,
                            state=event.state.value,  # type: ignore[arg-type]
                            position=event.position or None,
                        ),
                    )
                    call = self.machine.call(event.call)
                    if call is not None and call.state is CallState.CONNECTED:
                        await self._announce_connected(call, now)
                case PartyLost():
                    await self._to_other_party(
                        event.call,
                        event.role,
                        m.CallPeerState(call=event.call, state="lost", grace_s=event.until - now),
                    )
                case PartyBack():
                    await self._to_other_party(
                        event.call, event.role, m.CallPeerState(call=event.call, state="back")
                    )
                case CallRequeued():
                    self._told[event.call] = (event.position, None, None)
                    await publish(
                        address("kiosk", event.kiosk),
                        m.CallRequeued(
                            call=event.call, position=event.position, reason=event.reason
                        ),
                    )
                case CallTransferred():
                    spec = self.machine.services[event.to_service]
                    await publish(
                        address("kiosk", event.kiosk),
                        m.CallTransferred(
                            call=event.call,
                            service=spec.id,
                            service_name=spec.name,
                            position=event.position,
                        ),
                    )
                    await publish(
                        address("expert", event.expert),
                        m.CallEnded(
                            call=event.call, outcome="transferred", reason=event.to_service
                        ),
                    )
                case CallEnded():
                    ended = m.CallEnded(
                        call=event.call, outcome=event.outcome.value, reason=event.reason
                    )
                    await publish(address("kiosk", event.kiosk), ended)
                    if event.expert is not None and event.talk_s is not None:
                        await publish(address("expert", event.expert), ended)
                case WrapUpStarted():
                    spec = self.machine.services[event.service]
                    await publish(
                        address("expert", event.expert),
                        m.WrapUpStarted(
                            call=event.call,
                            service=event.service,
                            reasons=list(spec.visit_reasons),
                            deadline_in_s=max(event.until - now, 0.0),
                        ),
                    )
                case ExpertChanged():
                    await publish(
                        address("expert", event.expert),
                        m.ExpertState(
                            status=event.status.value,
                            state=event.state.value,
                            call=event.call,
                            reason=event.reason,
                        ),
                    )

    def _offered_again(self, call: Call, expert: ExpertId) -> CallOffered:
        now = self.clock()
        return CallOffered(
            now,
            call.id,
            call.service,
            call.kiosk,
            expert,
            call.beneficiary,
            now - call.queued_at,
            call.offer_expires_at or now,
            call.language,
            call.interpreter,
            call.transferred_from,
        )

    def _offer_message(self, event: CallOffered, now: float) -> m.CallOffered:
        spec = self.machine.services[event.service]
        kiosk = self.machine.kiosks[event.kiosk]
        origin = (
            self.machine.services.get(event.transferred_from) if event.transferred_from else None
        )
        return m.CallOffered(
            call=event.call,
            service=event.service,
            service_name=spec.name,
            beneficiary=event.beneficiary,
            kiosk=m.KioskInfo(id=kiosk.id, name=kiosk.name, place=kiosk.place),
            waited_s=round(event.waited_s, 1),
            expires_in_s=max(event.expires_at - now, 0.0),
            language=event.language,
            interpreter=event.interpreter,
            transferred_from=event.transferred_from,
            transferred_from_name=origin.name if origin else None,
        )

    async def _announce_connected(self, call: Call, now: float) -> None:
        """Tell both parties who the other is; the expert then makes the SDP offer."""
        assert call.expert is not None
        expert = self.machine.expert(call.expert)
        kiosk = self.machine.kiosks[call.kiosk]
        media = self.config.media
        expert_name = expert.name if expert else call.expert
        targets = [
            m.ServiceRef(id=spec.id, name=spec.name, open=spec.hours.is_open(now))
            for spec in (self.machine.services[s] for s in kiosk.services)
            if spec.id != call.service
        ]
        for target, peer, initiator, user in (
            (
                address("kiosk", call.kiosk),
                m.PartyInfo(role="expert", id=call.expert, name=expert_name),
                False,
                call.kiosk,
            ),
            (
                address("expert", call.expert),
                m.PartyInfo(role="kiosk", id=kiosk.id, name=kiosk.name, place=kiosk.place),
                True,
                call.expert,
            ),
        ):
            if not self.bus.has_subscribers(target):
                continue
            servers = ice_servers(
                media.stun_urls, media.turn_urls, media.turn_secret, user, now, media.turn_ttl_s
            )
            await self.bus.publish_here(
                target,
                m.CallConnected(
                    call=call.id,
                    service=call.service,
                    peer=peer,
                    ice_servers=[m.IceServer(**s) for s in servers],  # type: ignore[arg-type]
                    media_mode=media.mode,
                    initiator=initiator,
                    beneficiary=call.beneficiary if initiator else "",
                    transfer_targets=targets if initiator else [],
                ),
            )

    async def _to_other_party(self, call_id: CallId, lost_role: str, message: m.Message) -> None:
        call = self.machine.call(call_id)
        if call is None:
            return
        if lost_role == "kiosk" and call.expert is not None:
            await self.bus.publish_here(address("expert", call.expert), message)
        elif lost_role == "expert":
            await self.bus.publish_here(address("kiosk", call.kiosk), message)
