"""The call queue as a pure state machine (sans-I/O).

Rules this module keeps:

1. ``apply(command, now)`` either raises ``QueueError`` having changed nothing, or
   changes the state and returns the events that say what changed, in order.
2. Time is never read: every method that depends on it takes ``now`` (Unix seconds).
   ``get_timer()`` tells when ``handle_timer(now)`` must next be called.
3. A waiting call keeps its place whatever happens to its offers: a decline, a
   timeout or a lost expert puts it back where it was (or at the head of the
   queue, if it had been answered and lost its expert).
4. Offers go to the best waiting call across the services an expert answers,
   ordered by: back-at-head first, then priority, then first arrival.
6. A connected call is a room: the kiosk and the answering expert anchor it, guests
   (an interpreter, supervisors) join and leave while it runs. Only an anchor's
   hang-up ends it; whatever ends, requeues or transfers it first lets every guest
   leave and cancels its waiting request for an interpreter.
7. A request for an interpreter is a call in an interpreting service's queue (same
   strategies, offers, timeouts, hours and outcomes) that ``joins`` the requesting
   call; it is offered only to interpreters of its language. A lost interpreter has
   the expert's grace to come back, then is asked for again at the head of the queue.
5. Deterministic: the same commands at the same ``now`` give the same events, so
   a journal of commands replays to the same state.
"""

from __future__ import annotations

import bisect
import heapq
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .commands import (
    AcceptOffer,
    CancelCall,
    Command,
    DeclineOffer,
    ExpertLost,
    ExpertSignIn,
    FinishWrapUp,
    HangUp,
    InviteInterpreter,
    JoinCall,
    KioskBack,
    KioskLost,
    LeaveCall,
    NodeLost,
    RecordText,
    ReportMediaFailure,
    RequestCall,
    Restarted,
    SetStatus,
    SupervisorLost,
    TransferCall,
)
from .errors import QueueError
from .estimate import QueueView
from .events import (
    CallConnected,
    CallEnded,
    CallOffered,
    CallQueued,
    CallRefused,
    CallRequeued,
    CallResumed,
    CallTransferred,
    Event,
    ExpertChanged,
    OfferEnded,
    ParticipantJoined,
    ParticipantLeft,
    PartyBack,
    PartyLost,
    PositionChanged,
    TextSaid,
    WrapUpFinished,
    WrapUpStarted,
)
from .ids import CallId, ExpertId, KioskId, ServiceId
from .model import (
    Call,
    CallState,
    Expert,
    ExpertState,
    ExpertStatus,
    KioskSpec,
    Outcome,
    Participant,
    ServiceSpec,
    Strategy,
)

__all__ = ["ON_BREAK", "QueueMachine", "QueueSettings", "ServiceStatus"]

_QUEUED = (CallState.WAITING, CallState.OFFERED)
# Timers due at the same instant fire in this order, then by key: an order that
# follows from the state alone, so a restored machine fires them as the live one
# did. When both parties of a call are lost, the kiosk's loss ends the call.
_TIMER_RANK = {
    "offer": 0,
    "declined": 1,
    "max_wait": 2,
    "kiosk_lost": 3,
    "expert_lost": 4,
    "guest_lost": 5,
    "wrap_up": 6,
}
ON_BREAK = "break"
"""Key of ``ServiceStatus.experts`` for idle experts whose status is not available."""


@dataclass(frozen=True)
class QueueSettings:
    kiosk_grace_s: float = 60.0
    """How long a call waits for its kiosk to come back after the connection dropped."""
    expert_grace_s: float = 5.0
    """How long a connected call waits for a lost expert before going back to the queue."""
    restart_grace_s: float = 60.0
    """After a server restart, how long every party has to reconnect."""
    decline_cooldown_s: float = 60.0
    """An expert who declined a call is not offered that same call again for this long."""


@dataclass(frozen=True)
class ServiceStatus:
    service: ServiceId
    open: bool
    waiting: int
    offered: int
    connected: int
    oldest_wait_s: float
    experts: dict[str, int]


class QueueMachine:
    def __init__(
        self,
        services: Iterable[ServiceSpec],
        kiosks: Iterable[KioskSpec],
        settings: QueueSettings | None = None,
    ) -> None:
        self.services: dict[ServiceId, ServiceSpec] = {s.id: s for s in services}
        self.kiosks: dict[KioskId, KioskSpec] = {k.id: k for k in kiosks}
        self.settings = settings or QueueSettings()
        self._reset()

    def _reset(self) -> None:
        self._calls: dict[CallId, Call] = {}
        self._queues: dict[ServiceId, list[CallId]] = {s: [] for s in self.services}
        self._keys: dict[ServiceId, list[tuple[int, int, float, int]]] = {
            s: [] for s in self.services
        }
        self._experts: dict[ExpertId, Expert] = {}
        self._online: set[ExpertId] = set()
        self._wrap_up_service: dict[ExpertId, ServiceId] = {}
        self._kiosk_calls: dict[KioskId, CallId] = {}
        self._links: dict[str, str] = {}
        self._round_robin: dict[ServiceId, ExpertId] = {}
        self._seq = 0
        self._timers: list[tuple[float, int, str, str]] = []
        self._out: list[Event] = []
        self._touched: set[ServiceId] = set()
        # Renumbering is proportional to what changed: positions before the first index
        # where a call joined or left a service's queue (``_moved``) are still right.
        # ``_stale`` keeps, from a restore, the first index whose saved position differs
        # from the call's place; the next command that touches the service corrects it.
        self._moved: dict[ServiceId, int] = {}
        self._stale: dict[ServiceId, int] = {}

    # ------------------------------------------------------------------ queries

    def call(self, call_id: CallId) -> Call | None:
        return self._calls.get(call_id)

    def calls(self) -> list[Call]:
        return list(self._calls.values())

    def expert(self, expert_id: ExpertId) -> Expert | None:
        return self._experts.get(expert_id)

    def experts(self) -> list[Expert]:
        return list(self._experts.values())

    def link_of(self, party: str) -> str | None:
        """The connection (``<node>/<connection>``) that holds ``kiosk:<id>`` or ``expert:<id>``."""
        return self._links.get(party)

    def links(self) -> dict[str, str]:
        return dict(self._links)

    def is_online(self, expert_id: ExpertId) -> bool:
        return expert_id in self._online

    def kiosk_call(self, kiosk_id: KioskId) -> Call | None:
        call_id = self._kiosk_calls.get(kiosk_id)
        return self._calls[call_id] if call_id else None

    def interpreting_services(self) -> list[ServiceSpec]:
        return [spec for spec in self.services.values() if spec.interpreting]

    def interpreter_languages(self) -> list[str]:
        """Languages an interpreter can be asked for, in configuration order."""
        seen: dict[str, None] = {}
        for spec in self.interpreting_services():
            seen.update(dict.fromkeys(spec.languages))
        return list(seen)

    def participants(self, call_id: CallId) -> list[tuple[str, str, str, str | None]]:
        """``(key, role, name, language)`` of everyone in a connected call."""
        call = self._calls.get(call_id)
        if call is None or call.expert is None or call.state is not CallState.CONNECTED:
            return []
        kiosk = self.kiosks[call.kiosk]
        expert = self._experts.get(call.expert)
        found: list[tuple[str, str, str, str | None]] = [
            (f"kiosk:{call.kiosk}", "kiosk", kiosk.name, None),
            (f"expert:{call.expert}", "expert", expert.name if expert else call.expert, None),
        ]
        found.extend((g.key, g.role, g.name, g.language) for g in call.guests)
        return found

    def calls_with_guest(self, role: str, identity: str) -> list[Call]:
        return [c for c in self._calls.values() if c.guest(role, identity) is not None]

    def queued(self, service: ServiceId) -> list[Call]:
        """Calls waiting or being offered in ``service``, in queue order."""
        return [self._calls[c] for c in self._queues[service]]

    def in_service(self, service: ServiceId) -> list[Call]:
        """Calls connected to an expert of ``service``."""
        return [
            c
            for c in self._calls.values()
            if c.service == service and c.state is CallState.CONNECTED
        ]

    def status(self, service: ServiceId, now: float) -> ServiceStatus:
        spec = self.services[service]
        queued = self.queued(service)
        experts = {state.value: 0 for state in ExpertState} | {ON_BREAK: 0}
        for expert in self._experts.values():
            if service in expert.services:
                shown = self._shown_state(expert)
                # Connected but not taking calls: worth seeing apart from the free ones.
                on_break = shown is ExpertState.IDLE and not expert.is_free()
                experts[ON_BREAK if on_break else shown.value] += 1
        return ServiceStatus(
            service=service,
            open=spec.hours.is_open(now),
            waiting=sum(1 for c in queued if c.state is CallState.WAITING),
            offered=sum(1 for c in queued if c.state is CallState.OFFERED),
            connected=len(self.in_service(service)),
            oldest_wait_s=max((now - c.queued_at for c in queued), default=0.0),
            experts=experts,
        )

    def wrap_up_of(self, expert_id: ExpertId) -> tuple[CallId, ServiceId, float] | None:
        """The call, service and deadline of the expert's wrap-up, if one is running."""
        expert = self._experts.get(expert_id)
        if expert is None or expert.state is not ExpertState.WRAP_UP:
            return None
        assert expert.call is not None and expert.wrap_up_until is not None
        return expert.call, self._wrap_up_service[expert_id], expert.wrap_up_until

    def queue_view(self, service: ServiceId, now: float) -> QueueView:
        """What the wait estimate needs: waits so far, busy and free experts."""
        busy: list[float] = []
        free = 0
        for expert in self._experts.values():
            if service not in expert.services or expert.status is not ExpertStatus.AVAILABLE:
                continue
            if expert.state is ExpertState.IN_CALL and expert.call in self._calls:
                call = self._calls[expert.call]
                guest = call.guest("interpreter", expert.id)
                started = guest.joined_at if guest is not None else call.connected_at
                busy.append(now - started if started is not None else 0.0)
            elif expert.state is ExpertState.WRAP_UP:
                busy.append(0.0)
            elif expert.id in self._online and expert.state in (
                ExpertState.IDLE,
                ExpertState.OFFERED,
            ):
                free += 1
        waited = [now - c.queued_at for c in self.queued(service)]
        return QueueView(waited, busy, free)

    def _shown_state(self, expert: Expert) -> ExpertState:
        if expert.id not in self._online and expert.state is ExpertState.IDLE:
            return ExpertState.DISCONNECTED
        return expert.state

    # ------------------------------------------------------------------ driving

    def apply(self, command: Command, now: float) -> list[Event]:
        match command:
            case RequestCall():
                self._request(command, now)
            case CancelCall():
                self._cancel(command, now)
            case KioskLost():
                if self._unlink(f"kiosk:{command.kiosk}", command.link):
                    self._kiosk_lost(command.kiosk, now, self.settings.kiosk_grace_s)
            case KioskBack():
                self._link(f"kiosk:{command.kiosk}", command.link)
                self._kiosk_back(command.kiosk, now)
            case ExpertSignIn():
                self._sign_in(command, now)
                self._link(f"expert:{command.expert}", command.link)
            case ExpertLost():
                if self._unlink(f"expert:{command.expert}", command.link):
                    self._expert_lost(command.expert, now, self.settings.expert_grace_s)
            case NodeLost():
                self._node_lost(command.node, now)
            case SetStatus():
                self._set_status(command, now)
            case AcceptOffer():
                self._accept(command, now)
            case DeclineOffer():
                self._decline(command, now)
            case HangUp():
                self._hang_up(command, now)
            case LeaveCall():
                self._leave(command.call, command.by, command.role, now)
            case InviteInterpreter():
                self._invite_interpreter(command, now)
            case JoinCall():
                self._join(command, now)
            case SupervisorLost():
                if self._unlink(f"supervisor:{command.supervisor}", command.link):
                    self._supervisor_gone(command.supervisor, now)
            case RecordText():
                self._record_text(command, now)
            case FinishWrapUp():
                self._finish_wrap_up(command, now)
            case TransferCall():
                self._transfer(command, now)
            case ReportMediaFailure():
                self._media_failed(command, now)
            case Restarted():
                self._restarted(now)
            case _:
                raise QueueError("unknown_command", f"unknown command {type(command).__name__}")
        return self._settle(now)

    def get_timer(self) -> float | None:
        """When ``handle_timer`` must next run, or ``None`` when nothing is pending."""
        while self._timers and not self._timer_valid(*self._timers[0]):
            heapq.heappop(self._timers)
        return self._timers[0][0] if self._timers else None

    def handle_timer(self, now: float) -> list[Event]:
        while self._timers and self._timers[0][0] <= now:
            deadline, rank, kind, key = heapq.heappop(self._timers)
            if self._timer_valid(deadline, rank, kind, key):
                self._fire(kind, key, deadline, now)
        return self._settle(now)

    def _settle(self, now: float) -> list[Event]:
        self._dispatch(now)
        self._renumber(now)
        out, self._out = self._out, []
        self._touched = set()
        self._moved = {}
        return out

    # ------------------------------------------------------------------ timers

    def _arm(self, deadline: float, kind: str, key: str) -> None:
        heapq.heappush(self._timers, (deadline, _TIMER_RANK[kind], kind, key))

    def _timer_valid(self, deadline: float, _rank: int, kind: str, key: str) -> bool:
        if kind == "wrap_up":
            expert = self._experts.get(ExpertId(key))
            return (
                expert is not None
                and expert.state is ExpertState.WRAP_UP
                and expert.wrap_up_until == deadline
            )
        if kind == "guest_lost":
            call_id, _, guest_key = key.partition("|")
            call = self._calls.get(CallId(call_id))
            role, _, identity = guest_key.partition(":")
            guest = call.guest(role, identity) if call is not None else None
            return guest is not None and guest.lost_until == deadline
        call = self._calls.get(CallId(key))
        if call is None:
            return False
        match kind:
            case "offer":
                return call.state is CallState.OFFERED and call.offer_expires_at == deadline
            case "max_wait":
                limit = call.queued_at + self.services[call.service].max_wait_s
                return call.state in _QUEUED and limit == deadline
            case "kiosk_lost":
                return call.kiosk_lost_until == deadline
            case "expert_lost":
                return call.expert_lost_until == deadline
            case "declined":
                return call.state in _QUEUED and deadline in call.declined_until.values()
        return False

    def _fire(self, kind: str, key: str, deadline: float, now: float) -> None:
        if kind == "wrap_up":
            expert = self._experts[ExpertId(key)]
            self._end_wrap_up(expert, "", now, automatic=True)
            return
        if kind == "guest_lost":
            call_id, _, guest_key = key.partition("|")
            role, _, identity = guest_key.partition(":")
            self._guest_not_back(self._calls[CallId(call_id)], role, identity, now)
            return
        call = self._calls[CallId(key)]
        match kind:
            case "offer":
                for expert_id in sorted(call.offered_to):
                    expert = self._experts[expert_id]
                    self._emit(OfferEnded(now, call.id, call.service, expert_id, "timeout"))
                    # As telephony ACDs do, an unanswered ring pauses the station:
                    # the person is probably away and would hold every next caller.
                    expert.status = ExpertStatus.BREAK
                    self._set_state(expert, ExpertState.IDLE, None, now, reason="offer_timeout")
                self._back_to_waiting(call)
            case "max_wait":
                self._withdraw_offers(call, "cancelled", now)
                self._end(call, Outcome.TIMED_OUT, "max_wait", now)
            case "kiosk_lost":
                if call.state is CallState.CONNECTED:
                    self._end(call, Outcome.ANSWERED, "kiosk_lost", now)
                else:
                    self._end(call, Outcome.ABANDONED, "kiosk_lost", now)
            case "expert_lost":
                self._requeue(call, "expert_lost", now)
            case "declined":
                # Forget expired cooldowns, so that a restore does not re-arm them.
                call.declined_until = {e: u for e, u in call.declined_until.items() if u > now}
                self._touched.add(call.service)

    # ------------------------------------------------------------------ commands

    def _request(self, cmd: RequestCall, now: float) -> None:
        kiosk = self.kiosks.get(cmd.kiosk)
        if kiosk is None:
            raise QueueError("unknown_kiosk", f"kiosk {cmd.kiosk!r} is not configured")
        spec = self.services.get(cmd.service)
        if spec is None:
            raise QueueError("unknown_service", f"service {cmd.service!r} does not exist")
        if cmd.service not in kiosk.services:
            raise QueueError(
                "service_not_offered", f"service {cmd.service!r} is not offered at this kiosk"
            )
        if cmd.kiosk in self._kiosk_calls:
            raise QueueError(
                "call_in_progress",
                "this kiosk already has a call in progress",
                call=self._kiosk_calls[cmd.kiosk],
            )
        if cmd.call in self._calls:
            raise QueueError("duplicate_call", f"call id {cmd.call!r} is already in use")
        if not spec.accepts_beneficiary(cmd.beneficiary):
            raise QueueError(
                "invalid_beneficiary",
                f"the number does not have the expected form: {spec.beneficiary_hint}".rstrip(": "),
                hint=spec.beneficiary_hint,
            )
        refused = self._refusal(spec, cmd.call, kiosk.id, now)
        if refused is not None:
            self._emit(refused)
            return
        self._seq += 1
        call = Call(
            id=cmd.call,
            service=spec.id,
            kiosk=kiosk.id,
            beneficiary=cmd.beneficiary,
            priority=kiosk.priority,
            arrived_at=now,
            queued_at=now,
            seq=self._seq,
            language=cmd.language,
            interpreter=cmd.interpreter and spec.interpreter,
        )
        self._calls[call.id] = call
        self._kiosk_calls[kiosk.id] = call.id
        position = self._enqueue(call)
        call.position = position
        self._arm(now + spec.max_wait_s, "max_wait", call.id)
        self._emit(
            CallQueued(now, call.id, spec.id, kiosk.id, call.beneficiary, call.priority, position)
        )

    def _refusal(
        self,
        spec: ServiceSpec,
        call_id: CallId,
        kiosk: KioskId,
        now: float,
        language: str | None = None,
        joins: CallId | None = None,
        notify: tuple[str, ...] = (),
    ) -> CallRefused | None:
        """Why a call (or a request for an interpreter in ``language``) cannot enter
        the queue of ``spec`` now, with the wire code the caller is told; None if it can."""
        if not spec.hours.is_open(now):
            outcome, opening = Outcome.CLOSED, spec.hours.next_opening(now)
            code, reason = "service_closed", "the service is closed now"
        elif len(self._queues[spec.id]) >= spec.max_waiting:
            outcome, opening = Outcome.FULL, None
            code = "queue_full"
            reason = "too many people are waiting for this service; try again later"
        elif not self._anyone_signed_in(spec.id, language):
            outcome, opening = Outcome.NO_EXPERT, None
            code, reason = "no_expert", "no expert of this service is signed in now"
        else:
            return None
        return CallRefused(
            now, call_id, spec.id, kiosk, outcome, opening, joins, notify, code, reason
        )

    def _anyone_signed_in(self, service: ServiceId, language: str | None = None) -> bool:
        return any(
            service in e.services
            and e.status is not ExpertStatus.LOGGED_OUT
            and (e.id in self._online or e.state is ExpertState.IN_CALL)
            and (language is None or language in e.languages)
            for e in self._experts.values()
        )

    def _cancel(self, cmd: CancelCall, now: float) -> None:
        call = self._kiosk_owned(cmd.call, cmd.kiosk)
        if call.state not in _QUEUED:
            raise QueueError("not_waiting", "the call is connected: hang up instead")
        self._withdraw_offers(call, "cancelled", now)
        self._end(call, Outcome.ABANDONED, "cancelled", now)

    def _kiosk_lost(self, kiosk: KioskId, now: float, grace_s: float) -> None:
        call = self.kiosk_call(kiosk)
        if call is None or call.kiosk_lost_until is not None:
            return
        # An expert must not be rung for a caller who is not there to answer.
        self._withdraw_offers(call, "cancelled", now)
        call.kiosk_lost_until = now + grace_s
        self._arm(call.kiosk_lost_until, "kiosk_lost", call.id)
        self._emit(
            PartyLost(
                now,
                call.id,
                call.service,
                "kiosk",
                kiosk,
                call.kiosk_lost_until,
                self._keys_of(call),
            )
        )

    def _kiosk_back(self, kiosk: KioskId, now: float) -> None:
        call = self.kiosk_call(kiosk)
        if call is None:
            return
        was_lost = call.kiosk_lost_until is not None
        call.kiosk_lost_until = None
        self._touched.add(call.service)
        if was_lost and call.state is CallState.CONNECTED:
            self._emit(PartyBack(now, call.id, call.service, "kiosk", kiosk, self._keys_of(call)))
        self._emit(
            CallResumed(now, call.id, call.service, kiosk, call.state, call.position, call.expert)
        )

    def _sign_in(self, cmd: ExpertSignIn, now: float) -> None:
        expert = self._experts.get(cmd.expert)
        services = frozenset(s for s in cmd.services if s in self.services)
        if expert is None:
            expert = Expert(
                id=cmd.expert,
                name=cmd.name,
                partner=cmd.partner,
                services=services,
                languages=frozenset(cmd.languages),
                idle_since=now,
                state=ExpertState.IDLE,
            )
            self._experts[expert.id] = expert
        else:
            expert.name, expert.partner = cmd.name, cmd.partner
            expert.services, expert.languages = services, frozenset(cmd.languages)
        self._online.add(expert.id)
        if expert.state is ExpertState.DISCONNECTED:
            expert.state = ExpertState.IDLE
            expert.idle_since = now
        if expert.status is ExpertStatus.LOGGED_OUT:
            expert.status = ExpertStatus.BREAK
        call = self._calls.get(expert.call) if expert.call else None
        guest = call.guest("interpreter", expert.id) if call is not None else None
        if call is not None and guest is not None:
            if guest.lost_until is not None:
                guest.lost_until = None
                self._emit(
                    PartyBack(
                        now, call.id, call.service, "interpreter", expert.id, self._keys_of(call)
                    )
                )
        elif call is not None and call.expert_lost_until is not None:
            call.expert_lost_until = None
            self._emit(
                PartyBack(now, call.id, call.service, "expert", expert.id, self._keys_of(call))
            )
        self._touched.update(expert.services)
        self._emit_expert(expert, now)

    def _expert_lost(self, expert_id: ExpertId, now: float, grace_s: float) -> None:
        expert = self._experts.get(expert_id)
        if expert is None or expert_id not in self._online:
            return
        self._online.discard(expert_id)
        if expert.state is ExpertState.OFFERED and expert.call:
            call = self._calls[expert.call]
            self._close_offer(call, expert, "expert_lost", now)
        elif (
            expert.state is ExpertState.IN_CALL
            and expert.call
            and (guest := self._calls[expert.call].guest("interpreter", expert_id)) is not None
        ):
            self._guest_lost(self._calls[expert.call], guest, now, grace_s)
        elif expert.state is ExpertState.IN_CALL and expert.call:
            call = self._calls[expert.call]
            if grace_s <= 0:
                self._requeue(call, "expert_lost", now)
            else:
                call.expert_lost_until = now + grace_s
                self._arm(call.expert_lost_until, "expert_lost", call.id)
                self._emit(
                    PartyLost(
                        now,
                        call.id,
                        call.service,
                        "expert",
                        expert_id,
                        now + grace_s,
                        self._keys_of(call),
                    )
                )
        if expert.state is ExpertState.IDLE:
            expert.state = ExpertState.DISCONNECTED
        self._emit_expert(expert, now)

    def _set_status(self, cmd: SetStatus, now: float) -> None:
        expert = self._known_expert(cmd.expert)
        expert.status = cmd.status
        if cmd.status is not ExpertStatus.AVAILABLE and expert.state is ExpertState.OFFERED:
            assert expert.call is not None
            self._close_offer(self._calls[expert.call], expert, "status", now)
        self._touched.update(expert.services)
        self._emit_expert(expert, now)

    def _accept(self, cmd: AcceptOffer, now: float) -> None:
        call, expert = self._offered(cmd.call, cmd.expert)
        if call.joins is not None:
            self._interpreter_joins(call, expert, now)
            return
        for other_id in sorted(call.offered_to - {expert.id}):
            other = self._experts[other_id]
            self._emit(OfferEnded(now, call.id, call.service, other_id, "taken"))
            self._set_state(other, ExpertState.IDLE, None, now)
        self._emit(OfferEnded(now, call.id, call.service, expert.id, "accepted"))
        self._dequeue(call)
        call.state = CallState.CONNECTED
        call.declined_until = {}
        call.offered_to = set()
        call.offer_expires_at = None
        call.expert = expert.id
        call.at_head = False
        call.connected_at = now
        if call.answered_after_s is None:
            call.answered_after_s = now - call.queued_at
        expert.answered += 1
        self._set_state(expert, ExpertState.IN_CALL, call.id, now)
        self._emit(
            CallConnected(now, call.id, call.service, call.kiosk, expert.id, now - call.queued_at)
        )
        if call.interpreter and call.language and self._interpreting_for(call.language):
            # The citizen asked for an interpreter when calling: ask as soon as the
            # call is answered, as the expert would.
            self._queue_interpreter_request(call, call.language, now, at_head=False)

    def _decline(self, cmd: DeclineOffer, now: float) -> None:
        call, expert = self._offered(cmd.call, cmd.expert)
        until = now + self.settings.decline_cooldown_s
        call.declined_until[expert.id] = until
        self._arm(until, "declined", call.id)
        self._close_offer(call, expert, "declined", now)

    def _hang_up(self, cmd: HangUp, now: float) -> None:
        call = self._calls.get(cmd.call)
        if call is not None and self._guest_of(call, cmd.by, cmd.role) is not None:
            self._leave(cmd.call, cmd.by, cmd.role, now)
            return
        call = self._party_of_connected(cmd.call, cmd.by, cmd.role)
        self._end(call, Outcome.ANSWERED, f"hangup_{cmd.role}", now)

    def _media_failed(self, cmd: ReportMediaFailure, now: float) -> None:
        call = self._calls.get(cmd.call)
        if call is not None and self._guest_of(call, cmd.by, cmd.role) is not None:
            # A guest's media failing is the guest's problem: it leaves, the call goes on.
            self._leave(cmd.call, cmd.by, cmd.role, now, reason="media_failed")
            return
        call = self._party_of_connected(cmd.call, cmd.by, cmd.role)
        self._end(call, Outcome.FAILED, cmd.detail or "media", now)

    def _finish_wrap_up(self, cmd: FinishWrapUp, now: float) -> None:
        expert = self._known_expert(cmd.expert)
        if expert.state is not ExpertState.WRAP_UP or expert.call != cmd.call:
            raise QueueError("not_in_wrap_up", "there is no wrap-up in progress for this call")
        spec = self.services[self._wrap_up_service[expert.id]]
        if cmd.reason not in spec.visit_reasons:
            raise QueueError(
                "invalid_visit_reason",
                f"{cmd.reason!r} is not a visit reason of {spec.name}",
                reasons=list(spec.visit_reasons),
            )
        self._end_wrap_up(expert, cmd.reason, now, automatic=False)

    def _transfer(self, cmd: TransferCall, now: float) -> None:
        call = self._party_of_connected(cmd.call, cmd.expert, "expert")
        target = self.services.get(cmd.service)
        if target is None:
            raise QueueError("unknown_service", f"service {cmd.service!r} does not exist")
        if target.id not in self.kiosks[call.kiosk].services:
            raise QueueError(
                "service_not_offered", f"{target.name} is not offered at the caller's kiosk"
            )
        if target.id == call.service:
            raise QueueError("same_service", "the call is already in this service")
        if not target.hours.is_open(now):
            raise QueueError(
                "service_closed",
                f"{target.name} is closed now",
                next_opening=target.hours.next_opening(now),
            )
        if len(self._queues[target.id]) >= target.max_waiting:
            raise QueueError("queue_full", f"too many people are waiting for {target.name}")
        if not self._anyone_signed_in(target.id):
            raise QueueError("no_expert", f"no expert of {target.name} is signed in now")
        expert = self._experts[cmd.expert]
        self._empty_room(call, "transferred", now)
        origin = call.service
        call.service = target.id
        call.queued_at = now
        call.state = CallState.WAITING
        call.expert = None
        call.connected_at = None
        call.answered_after_s = None
        call.declined_until = {}
        call.transferred_from = origin
        call.expert_lost_until = None
        position = self._enqueue(call)
        call.position = position
        self._arm(now + target.max_wait_s, "max_wait", call.id)
        self._touched.update((origin, target.id))
        self._emit(
            CallTransferred(now, call.id, origin, target.id, call.kiosk, expert.id, position)
        )
        self._start_wrap_up(expert, call, now, origin)

    def _link(self, party: str, link: str) -> None:
        if link:
            self._links[party] = link
        else:
            self._links.pop(party, None)

    def _unlink(self, party: str, link: str) -> bool:
        """Forget the party's connection; False when ``link`` is no longer its connection."""
        if link and self._links.get(party, link) != link:
            return False
        self._links.pop(party, None)
        return True

    def _node_lost(self, node: str, now: float) -> None:
        prefix = f"{node}/"
        for party, link in sorted(self._links.items()):
            if not link.startswith(prefix):
                continue
            del self._links[party]
            kind, _, identity = party.partition(":")
            if kind == "kiosk":
                self._kiosk_lost(KioskId(identity), now, self.settings.kiosk_grace_s)
            elif kind == "supervisor":
                self._supervisor_gone(identity, now)
            else:
                self._expert_lost(ExpertId(identity), now, self.settings.expert_grace_s)

    def _restarted(self, now: float) -> None:
        grace = self.settings.restart_grace_s
        self._links.clear()
        for call in sorted(self._calls.values(), key=lambda c: c.id):
            for guest in [g for g in call.guests if g.role == "supervisor"]:
                self._leave(call.id, guest.id, "supervisor", now, reason="lost")
        for expert_id in sorted(self._online):
            self._expert_lost(expert_id, now, grace)
        for kiosk_id in sorted(self._kiosk_calls):
            self._kiosk_lost(kiosk_id, now, grace)
        # Parties lost before the restart could not come back while the server was
        # down: they get the restart grace too, not a deadline that passed meanwhile.
        until = now + grace
        for call in sorted(self._calls.values(), key=lambda c: c.id):
            if call.expert_lost_until is not None and call.expert_lost_until < until:
                assert call.expert is not None
                call.expert_lost_until = until
                self._arm(until, "expert_lost", call.id)
                self._emit(PartyLost(now, call.id, call.service, "expert", call.expert, until))
            if call.kiosk_lost_until is not None and call.kiosk_lost_until < until:
                call.kiosk_lost_until = until
                self._arm(until, "kiosk_lost", call.id)
                self._emit(PartyLost(now, call.id, call.service, "kiosk", call.kiosk, until))

    # ------------------------------------------------------------------ rooms

    def _keys_of(self, call: Call) -> tuple[str, ...]:
        return tuple(call.members())

    def _notify_for(self, call: Call) -> tuple[str, ...]:
        """For a request for an interpreter: who in the requesting call hears how it goes."""
        if call.joins is None:
            return ()
        parent = self._calls.get(call.joins)
        return self._keys_of(parent) if parent is not None else ()

    def _guest_of(self, call: Call, by: str, role: str) -> Participant | None:
        """The guest a command comes from; interpreters speak as experts."""
        if role == "supervisor":
            return call.guest("supervisor", by)
        if role in ("expert", "interpreter") and by != call.expert:
            return call.guest("interpreter", by)
        return None

    def _interpreting_for(self, language: str, now: float | None = None) -> ServiceSpec | None:
        """The interpreting service for ``language``: the first one open at ``now``, else
        the first configured (whose refusal then says when it opens)."""
        able = [spec for spec in self.interpreting_services() if language in spec.languages]
        if now is not None:
            able.sort(key=lambda spec: not spec.hours.is_open(now))
        return able[0] if able else None

    def _invite_interpreter(self, cmd: InviteInterpreter, now: float) -> None:
        call = self._party_of_connected(cmd.call, cmd.by, cmd.role)
        if cmd.role == "kiosk" and not self.services[call.service].interpreter:
            raise QueueError(
                "interpreter_not_offered",
                "an interpreter can be asked for this service by the adviser only",
            )
        if call.interpreter_request is not None or any(
            g.role == "interpreter" for g in call.guests
        ):
            raise QueueError(
                "interpreter_already", "an interpreter is already in this call or on the way"
            )
        if self._interpreting_for(cmd.language) is None:
            raise QueueError(
                "no_interpreter_language",
                f"no interpreting service offers the language {cmd.language!r}",
                languages=self.interpreter_languages(),
            )
        self._queue_interpreter_request(call, cmd.language, now, at_head=False)

    def _queue_interpreter_request(
        self, call: Call, language: str, now: float, *, at_head: bool
    ) -> None:
        """A request for an interpreter enters the interpreting service's queue; a
        refusal (closed, full, nobody signed in) is told and the call goes on."""
        spec = self._interpreting_for(language, now)
        assert spec is not None
        call.requests_made += 1
        request_id = CallId(f"{call.id}.i{call.requests_made}")
        notify = self._keys_of(call)
        refused = self._refusal(spec, request_id, call.kiosk, now, language, call.id, notify)
        if refused is not None:
            self._emit(refused)
            return
        self._seq += 1
        request = Call(
            id=request_id,
            service=spec.id,
            kiosk=call.kiosk,
            beneficiary="",
            priority=call.priority,
            arrived_at=now,
            queued_at=now,
            seq=self._seq,
            language=language,
            at_head=at_head,
            joins=call.id,
        )
        self._calls[request.id] = request
        call.interpreter_request = request.id
        request.position = self._enqueue(request)
        self._arm(now + spec.max_wait_s, "max_wait", request.id)
        self._emit(
            CallQueued(
                now,
                request.id,
                spec.id,
                call.kiosk,
                "",
                request.priority,
                request.position,
                call.id,
                notify,
                language,
            )
        )

    def _interpreter_joins(self, request: Call, interpreter: Expert, now: float) -> None:
        """The interpreter who accepts a request joins the call it is for; the request
        leaves its queue answered."""
        assert request.joins is not None
        call = self._calls[request.joins]
        for other_id in sorted(request.offered_to - {interpreter.id}):
            self._emit(OfferEnded(now, request.id, request.service, other_id, "taken"))
            self._set_state(self._experts[other_id], ExpertState.IDLE, None, now)
        self._emit(OfferEnded(now, request.id, request.service, interpreter.id, "accepted"))
        waited = now - request.queued_at
        self._emit(
            CallConnected(
                now, request.id, request.service, request.kiosk, interpreter.id, waited, call.id
            )
        )
        request.offered_to = set()
        request.offer_expires_at = None
        request.answered_after_s = waited
        self._end(request, Outcome.ANSWERED, "joined", now)
        interpreter.answered += 1
        guest = Participant(
            role="interpreter",
            id=interpreter.id,
            name=interpreter.name,
            joined_at=now,
            language=request.language,
        )
        call.guests.append(guest)
        self._set_state(interpreter, ExpertState.IN_CALL, call.id, now)
        self._emit(
            ParticipantJoined(
                now,
                call.id,
                call.service,
                "interpreter",
                interpreter.id,
                interpreter.name,
                self._keys_of(call),
                request.language,
                request.id,
            )
        )

    def _join(self, cmd: JoinCall, now: float) -> None:
        call = self._calls.get(cmd.call)
        if call is None:
            raise QueueError("unknown_call", f"call {cmd.call!r} does not exist or has ended")
        if self.services[call.service].partner != cmd.partner:
            raise QueueError("forbidden", "this call belongs to another partner's service")
        if call.state is not CallState.CONNECTED or call.joins is not None:
            raise QueueError("not_in_call", "the call is not connected")
        if call.guest("supervisor", cmd.supervisor) is not None:
            raise QueueError("already_in_call", "you are already in this call")
        self._link(f"supervisor:{cmd.supervisor}", cmd.link)
        call.guests.append(
            Participant(role="supervisor", id=cmd.supervisor, name=cmd.name, joined_at=now)
        )
        self._emit(
            ParticipantJoined(
                now,
                call.id,
                call.service,
                "supervisor",
                cmd.supervisor,
                cmd.name,
                self._keys_of(call),
            )
        )

    def _leave(self, call_id: CallId, by: str, role: str, now: float, reason: str = "left") -> None:
        call = self._calls.get(call_id)
        if call is None:
            raise QueueError("unknown_call", f"call {call_id!r} does not exist or has ended")
        guest = self._guest_of(call, by, role)
        if guest is None:
            raise QueueError(
                "not_a_guest",
                "only an interpreter or a supervisor leaves a call; the kiosk and the "
                "adviser hang up",
            )
        self._remove_guest(call, guest, reason, now)

    def _remove_guest(self, call: Call, guest: Participant, reason: str, now: float) -> None:
        call.guests.remove(guest)
        self._emit(
            ParticipantLeft(
                now,
                call.id,
                call.service,
                guest.role,
                guest.id,
                reason,
                now - guest.joined_at,
                self._keys_of(call),
                guest.name,
                guest.language,
            )
        )
        if guest.role == "supervisor":
            if not self.calls_with_guest("supervisor", guest.id):
                self._links.pop(f"supervisor:{guest.id}", None)
            return
        interpreter = self._experts.get(ExpertId(guest.id))
        if interpreter is None or interpreter.call != call.id:
            return
        if interpreter.state is ExpertState.IN_CALL and interpreter.id in self._online:
            # Its wrap-up belongs to the interpreting service it answered for.
            service = next(
                (s for s in sorted(interpreter.services) if self.services[s].interpreting), None
            )
            self._start_wrap_up(interpreter, call, now, service)
        else:
            self._set_state(interpreter, ExpertState.IDLE, None, now, reason=reason)

    def _guest_lost(self, call: Call, guest: Participant, now: float, grace_s: float) -> None:
        if grace_s <= 0:
            self._guest_not_back(call, guest.role, guest.id, now)
            return
        guest.lost_until = now + grace_s
        self._arm(guest.lost_until, "guest_lost", f"{call.id}|{guest.key}")
        self._emit(
            PartyLost(
                now,
                call.id,
                call.service,
                guest.role,
                guest.id,
                guest.lost_until,
                self._keys_of(call),
            )
        )

    def _guest_not_back(self, call: Call, role: str, identity: str, now: float) -> None:
        guest = call.guest(role, identity)
        assert guest is not None
        language = guest.language
        self._remove_guest(call, guest, "lost", now)
        if role == "interpreter" and language and self._interpreting_for(language):
            # As a lost expert's caller goes back to the head of the queue, the call
            # asks again for an interpreter, ahead of the others.
            self._queue_interpreter_request(call, language, now, at_head=True)

    def _empty_room(self, call: Call, reason: str, now: float) -> None:
        """Before a call ends, goes back to the queue or moves on: its guests leave and
        its waiting request for an interpreter is withdrawn."""
        for guest in list(call.guests):
            self._remove_guest(call, guest, reason, now)
        request = self._calls.get(call.interpreter_request) if call.interpreter_request else None
        if request is not None:
            self._withdraw_offers(request, "cancelled", now)
            self._end(request, Outcome.ABANDONED, reason, now)
        call.interpreter_request = None

    def _supervisor_gone(self, supervisor: str, now: float) -> None:
        for call in sorted(self.calls_with_guest("supervisor", supervisor), key=lambda c: c.id):
            self._leave(call.id, supervisor, "supervisor", now, reason="lost")

    def _record_text(self, cmd: RecordText, now: float) -> None:
        call = self._calls.get(cmd.call)
        if call is None or call.state is not CallState.CONNECTED:
            raise QueueError("not_in_call", "the call is not connected")
        role = "interpreter" if cmd.role == "expert" and cmd.by != call.expert else cmd.role
        if f"{role}:{cmd.by}" not in call.members():
            raise QueueError("not_your_call", "you are not a participant of this call")
        if not self.services[call.service].rtt_transcript:
            raise QueueError("transcript_off", "this service keeps no transcript")
        self._emit(TextSaid(now, call.id, call.service, role, cmd.by, cmd.text))

    # ------------------------------------------------------------------ helpers

    def _known_expert(self, expert_id: ExpertId) -> Expert:
        expert = self._experts.get(expert_id)
        if expert is None:
            raise QueueError("unknown_expert", f"expert {expert_id!r} is not signed in")
        return expert

    def _kiosk_owned(self, call_id: CallId, kiosk: KioskId) -> Call:
        call = self._calls.get(call_id)
        if call is None:
            raise QueueError("unknown_call", f"call {call_id!r} does not exist or has ended")
        if call.kiosk != kiosk:
            raise QueueError("not_your_call", "this call belongs to another kiosk")
        return call

    def _offered(self, call_id: CallId, expert_id: ExpertId) -> tuple[Call, Expert]:
        call = self._calls.get(call_id)
        expert = self._known_expert(expert_id)
        if call is None or call.state is not CallState.OFFERED or expert_id not in call.offered_to:
            raise QueueError("not_offered", "this call is not offered to you (any more)")
        return call, expert

    def _party_of_connected(self, call_id: CallId, party: str, role: str) -> Call:
        call = self._calls.get(call_id)
        if call is None:
            raise QueueError("unknown_call", f"call {call_id!r} does not exist or has ended")
        if party != (call.kiosk if role == "kiosk" else call.expert):
            raise QueueError("not_your_call", "you are not a party of this call")
        if call.state is not CallState.CONNECTED:
            raise QueueError("not_in_call", "the call is not connected")
        return call

    def _emit(self, event: Event) -> None:
        self._out.append(event)

    def _emit_expert(self, expert: Expert, now: float, reason: str = "") -> None:
        self._emit(
            ExpertChanged(
                now, expert.id, expert.status, self._shown_state(expert), expert.call, reason
            )
        )

    def _set_state(
        self, expert: Expert, state: ExpertState, call: CallId | None, now: float, reason: str = ""
    ) -> None:
        if state is ExpertState.IDLE:
            if expert.state is not ExpertState.OFFERED:
                expert.idle_since = now
            if expert.id not in self._online:
                state = ExpertState.DISCONNECTED
        expert.state = state
        expert.call = call
        self._touched.update(expert.services)
        self._emit_expert(expert, now, reason)

    def _enqueue(self, call: Call) -> int:
        key = call.queue_key()
        index = bisect.bisect_left(self._keys[call.service], key)
        self._keys[call.service].insert(index, key)
        self._queues[call.service].insert(index, call.id)
        self._touched.add(call.service)
        self._moved_from(call.service, index)
        return index + 1

    def _dequeue(self, call: Call) -> None:
        keys = self._keys[call.service]
        index = bisect.bisect_left(keys, call.queue_key())
        if index < len(keys) and self._queues[call.service][index] == call.id:
            del keys[index]
            del self._queues[call.service][index]
            self._touched.add(call.service)
            self._moved_from(call.service, index)
        call.position = 0

    def _moved_from(self, service: ServiceId, index: int) -> None:
        """A call joined or left ``service``'s queue at ``index``: places behind may shift."""
        self._moved[service] = min(index, self._moved.get(service, index))

    def _back_to_waiting(self, call: Call) -> None:
        call.state = CallState.WAITING
        call.offered_to = set()
        call.offer_expires_at = None
        self._touched.add(call.service)

    def _close_offer(self, call: Call, expert: Expert, result: str, now: float) -> None:
        """One expert's offer ends without an answer; the call keeps its place."""
        call.offered_to.discard(expert.id)
        self._emit(OfferEnded(now, call.id, call.service, expert.id, result))
        self._set_state(expert, ExpertState.IDLE, None, now)
        if not call.offered_to:
            self._back_to_waiting(call)

    def _withdraw_offers(self, call: Call, result: str, now: float) -> None:
        for expert_id in sorted(call.offered_to):
            self._close_offer(call, self._experts[expert_id], result, now)

    def _start_wrap_up(
        self, expert: Expert, call: Call, now: float, service: ServiceId | None = None
    ) -> None:
        spec = self.services[service or call.service]
        expert.wrap_up_until = now + spec.wrap_up_s
        self._wrap_up_service[expert.id] = spec.id
        self._arm(expert.wrap_up_until, "wrap_up", expert.id)
        self._set_state(expert, ExpertState.WRAP_UP, call.id, now)
        self._emit(WrapUpStarted(now, expert.id, call.id, spec.id, expert.wrap_up_until))

    def _end_wrap_up(self, expert: Expert, reason: str, now: float, *, automatic: bool) -> None:
        call_id = expert.call
        assert call_id is not None
        service = self._wrap_up_service.pop(expert.id)
        expert.wrap_up_until = None
        self._emit(WrapUpFinished(now, expert.id, call_id, service, reason, automatic))
        self._set_state(expert, ExpertState.IDLE, None, now)

    def _end(self, call: Call, outcome: Outcome, reason: str, now: float) -> None:
        """The call leaves the system for good."""
        spec = self.services[call.service]
        self._empty_room(call, "call_ended", now)
        if call.state in _QUEUED:
            self._dequeue(call)
        waited = (
            call.answered_after_s if call.answered_after_s is not None else now - call.queued_at
        )
        talk = now - call.connected_at if call.connected_at is not None else None
        short = outcome is Outcome.ABANDONED and waited < spec.short_abandon_s
        expert_id = call.expert
        notify = self._notify_for(call)
        call.state = CallState.ENDED
        del self._calls[call.id]
        if call.joins is None:
            self._kiosk_calls.pop(call.kiosk, None)
        else:
            parent = self._calls.get(call.joins)
            if parent is not None and parent.interpreter_request == call.id:
                parent.interpreter_request = None
        self._touched.add(call.service)
        self._emit(
            CallEnded(
                now,
                call.id,
                call.service,
                call.kiosk,
                expert_id,
                outcome,
                reason,
                waited,
                talk,
                short,
                call.joins,
                notify,
            )
        )
        if expert_id is not None and talk is not None:
            expert = self._experts[expert_id]
            if expert.call == call.id and expert.state is ExpertState.IN_CALL:
                self._start_wrap_up(expert, call, now)

    def _requeue(self, call: Call, reason: str, now: float) -> None:
        expert = self._experts[call.expert] if call.expert else None
        self._empty_room(call, "requeued", now)
        call.state = CallState.WAITING
        call.at_head = True
        # The maximum wait counts afresh from the requeue (the talk was not waiting),
        # with its own timer: the first one may already be gone.
        call.queued_at = now
        self._arm(now + self.services[call.service].max_wait_s, "max_wait", call.id)
        call.connected_at = None
        call.expert_lost_until = None
        call.expert = None
        position = self._enqueue(call)
        call.position = position
        if expert is not None:
            expert.call = None
            self._set_state(expert, ExpertState.IDLE, None, now, reason=reason)
        self._emit(
            CallRequeued(
                now,
                call.id,
                call.service,
                call.kiosk,
                expert.id if expert else ExpertId(""),
                position,
                reason,
            )
        )

    # ------------------------------------------------------------------ dispatch

    def _dispatch(self, now: float) -> None:
        """Offer waiting calls to free experts until no pair matches."""
        while True:
            best: tuple[tuple[int, int, float, int], Call, list[Expert]] | None = None
            waiting = [(service, queue) for service, queue in self._queues.items() if queue]
            if not waiting:
                return
            free_by_service = self._free_experts()
            for service, queue in waiting:
                free = free_by_service.get(service)
                if not free:
                    continue
                for call_id in queue:
                    call = self._calls[call_id]
                    if call.state is not CallState.WAITING or call.kiosk_lost_until is not None:
                        continue
                    eligible = [
                        e
                        for e in free
                        if call.declined_until.get(e.id, -math.inf) <= now
                        and (call.joins is None or call.language in e.languages)
                    ]
                    if eligible:
                        if best is None or call.queue_key() < best[0]:
                            best = (call.queue_key(), call, eligible)
                        break
            if best is None:
                return
            self._offer(best[1], best[2], now)

    def _free_experts(self) -> dict[ServiceId, list[Expert]]:
        """Free experts by service, in one pass (insertion order, as routing expects)."""
        free: dict[ServiceId, list[Expert]] = {}
        for expert in self._experts.values():
            if expert.is_free() and expert.id in self._online:
                for service in expert.services:
                    free.setdefault(service, []).append(expert)
        return free

    def _offer(self, call: Call, eligible: list[Expert], now: float) -> None:
        spec = self.services[call.service]
        if spec.strategy is Strategy.RING_ALL:
            chosen = sorted(eligible, key=lambda e: e.id)
        else:
            chosen = [self._choose(spec, call, eligible)]
        call.state = CallState.OFFERED
        call.offered_to = {e.id for e in chosen}
        call.offer_expires_at = now + spec.offer_timeout_s
        self._arm(call.offer_expires_at, "offer", call.id)
        for expert in chosen:
            self._set_state(expert, ExpertState.OFFERED, call.id, now)
            self._emit(
                CallOffered(
                    now,
                    call.id,
                    call.service,
                    call.kiosk,
                    expert.id,
                    call.beneficiary,
                    now - call.queued_at,
                    call.offer_expires_at,
                    call.language,
                    call.interpreter,
                    call.transferred_from,
                    call.joins,
                    self._notify_for(call),
                )
            )

    def _choose(self, spec: ServiceSpec, call: Call, eligible: list[Expert]) -> Expert:
        if call.language:
            speakers = [e for e in eligible if call.language in e.languages]
            eligible = speakers or eligible
        match spec.strategy:
            case Strategy.FEWEST_CALLS:
                return min(eligible, key=lambda e: (e.answered, e.idle_since, e.id))
            case Strategy.ROUND_ROBIN:
                ordered = sorted(eligible, key=lambda e: e.id)
                last = self._round_robin.get(spec.id)
                chosen = next((e for e in ordered if last is None or e.id > last), ordered[0])
                self._round_robin[spec.id] = chosen.id
                return chosen
            case _:
                return min(eligible, key=lambda e: (e.idle_since, e.id))

    def _renumber(self, now: float) -> None:
        """Tell the calls of the touched services whose place changed, in queue order.

        Only the calls behind the first place where a call joined or left can have
        moved: a command that changes no queue's membership renumbers nothing."""
        for service in sorted(self._touched):
            queue = self._queues[service]
            start = min(self._moved.get(service, len(queue)), self._stale.pop(service, len(queue)))
            for index in range(start, len(queue)):
                call = self._calls[queue[index]]
                if call.position != index + 1:
                    call.position = index + 1
                    self._emit(
                        PositionChanged(
                            now,
                            call.id,
                            service,
                            call.kiosk,
                            index + 1,
                            call.joins,
                            self._notify_for(call),
                        )
                    )

    # ------------------------------------------------------------------ persistence

    def snapshot(self) -> dict[str, Any]:
        """The whole state as plain JSON-able data; ``restore`` takes it back."""
        return {
            "seq": self._seq,
            "round_robin": dict(self._round_robin),
            "calls": [_call_to_dict(c) for c in self._calls.values()],
            "experts": [_expert_to_dict(e) for e in self._experts.values()],
            "online": sorted(self._online),
            "links": dict(sorted(self._links.items())),
            "wrap_up_service": dict(self._wrap_up_service),
        }

    def restore(self, data: dict[str, Any]) -> list[CallId]:
        """Take back a snapshot; returns the calls left out because the configuration no
        longer has their service or kiosk (so that a changed configuration still starts)."""
        self._reset()
        self._seq = data["seq"]
        self._round_robin = {
            ServiceId(k): ExpertId(v)
            for k, v in data["round_robin"].items()
            if ServiceId(k) in self.services
        }
        dropped = [
            CallId(raw["id"])
            for raw in data["calls"]
            if raw["service"] not in self.services or raw["kiosk"] not in self.kiosks
        ]
        # A request for an interpreter goes with the call it is for.
        dropped += [CallId(raw["id"]) for raw in data["calls"] if raw.get("joins") in set(dropped)]
        for raw in data["experts"]:
            expert = _expert_from_dict(raw)
            expert.services = frozenset(s for s in expert.services if s in self.services)
            self._experts[expert.id] = expert
        self._online = {ExpertId(e) for e in data["online"]}
        self._links = dict(data.get("links", {}))
        self._wrap_up_service = {
            ExpertId(k): ServiceId(v)
            for k, v in data["wrap_up_service"].items()
            if ServiceId(v) in self.services
        }
        for expert in self._experts.values():
            left_behind = expert.call in dropped or (
                expert.state is ExpertState.WRAP_UP and expert.id not in self._wrap_up_service
            )
            if left_behind:
                expert.state, expert.call, expert.wrap_up_until = ExpertState.IDLE, None, None
        for raw in data["calls"]:
            if raw["id"] in dropped:
                continue
            call = _call_from_dict(raw)
            if call.interpreter_request in dropped:
                call.interpreter_request = None
            self._calls[call.id] = call
            if call.joins is None:
                self._kiosk_calls[call.kiosk] = call.id
            if call.state in _QUEUED:
                position = call.position
                self._enqueue(call)
                call.position = position
        self._touched = set()
        self._moved = {}
        for service, queue in self._queues.items():
            stale = next((i for i, c in enumerate(queue) if self._calls[c].position != i + 1), None)
            if stale is not None:
                self._stale[service] = stale
        self._rearm_all()
        return dropped

    def _rearm_all(self) -> None:
        for call in self._calls.values():
            if call.state in _QUEUED:
                self._arm(
                    call.queued_at + self.services[call.service].max_wait_s, "max_wait", call.id
                )
            if call.offer_expires_at is not None:
                self._arm(call.offer_expires_at, "offer", call.id)
            if call.kiosk_lost_until is not None:
                self._arm(call.kiosk_lost_until, "kiosk_lost", call.id)
            if call.expert_lost_until is not None:
                self._arm(call.expert_lost_until, "expert_lost", call.id)
            for guest in call.guests:
                if guest.lost_until is not None:
                    self._arm(guest.lost_until, "guest_lost", f"{call.id}|{guest.key}")
            for until in call.declined_until.values():
                self._arm(until, "declined", call.id)
        for expert in self._experts.values():
            if expert.wrap_up_until is not None:
                self._arm(expert.wrap_up_until, "wrap_up", expert.id)


def _call_to_dict(call: Call) -> dict[str, Any]:
    data = dict(vars(call))
    data["state"] = call.state.value
    data["offered_to"] = sorted(call.offered_to)
    data["declined_until"] = dict(call.declined_until)
    data["guests"] = [dict(vars(guest)) for guest in call.guests]
    return data


def _call_from_dict(data: dict[str, Any]) -> Call:
    values = dict(data)
    values["state"] = CallState(values["state"])
    values["offered_to"] = set(values["offered_to"])
    values["guests"] = [Participant(**guest) for guest in values.get("guests", [])]
    return Call(**values)


def _expert_to_dict(expert: Expert) -> dict[str, Any]:
    data = dict(vars(expert))
    data["services"] = sorted(expert.services)
    data["languages"] = sorted(expert.languages)
    data["status"] = expert.status.value
    data["state"] = expert.state.value
    return data


def _expert_from_dict(data: dict[str, Any]) -> Expert:
    values = dict(data)
    values["services"] = frozenset(values["services"])
    values["languages"] = frozenset(values["languages"])
    values["status"] = ExpertStatus(values["status"])
    values["state"] = ExpertState(values["state"])
    return Expert(**values)
