"""Events to wire messages, by a table from event class to a small handler.

Rules this module keeps:

1. Every node routes every event (it replays the whole journal) and tells only its own
   connections: messages go out with ``publish_here``, and a message that costs
   something to build is not built for a party held elsewhere.
2. Messages leave in the order the events happened, one event at a time.
3. An event class missing from ``ROUTES`` tells nobody: ``WrapUpFinished`` is told by
   the expert's state, ``TextSaid`` was relayed live. ``CallQueued`` and
   ``CallRefused`` of a kiosk's call are answered by its request's reply or error;
   those of a request for an interpreter (``joins``) are told to the call it is for.
5. Events of a call carry who is in it (``members``, ``notify``): handlers tell those
   participants without reading the machine back; only ``call.connected``, which
   needs the whole room and fresh TURN credentials, is built from the machine.
4. What a kiosk was last told of its place is kept with the estimates, so the handlers
   that tell a kiosk its place (or that its call ended) keep that record right.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from queueing import (
    CallConnected,
    CallEnded,
    CallOffered,
    CallQueued,
    CallRefused,
    CallRequeued,
    CallResumed,
    CallState,
    CallTransferred,
    Event,
    ExpertChanged,
    ExpertId,
    ExpertState,
    OfferEnded,
    ParticipantJoined,
    ParticipantLeft,
    PartyBack,
    PartyLost,
    PositionChanged,
    WrapUpStarted,
)
from queueing.model import Call
from signaling import MessageBus, address
from signaling import messages as m

from .estimates import Estimates
from .rooms import Rooms, bus_address
from .views import Views

__all__ = ["ROUTES", "Context", "Router"]


class Context(Protocol):
    """What a handler may use: this node's connections, the views, the estimates."""

    @property
    def views(self) -> Views: ...

    @property
    def estimates(self) -> Estimates: ...

    @property
    def rooms(self) -> Rooms: ...

    async def publish(self, target: str, message: m.Message) -> None: ...

    def has_subscribers(self, target: str) -> bool: ...

    def announced(self, call: Call, only: str | None) -> None:
        """``call.connected`` went out (to ``only``, or to everyone): what follows it."""


Handler = Callable[[Any, float, Context], Awaitable[None]]
"""Tells the parties concerned of one event, given the time it was applied at."""


async def _tell(ctx: Context, members: tuple[str, ...], message: m.Message, but: str = "") -> None:
    for key in members:
        if key != but:
            await ctx.publish(bus_address(key), message)


async def _position_changed(event: PositionChanged, now: float, ctx: Context) -> None:
    if event.joins is not None:
        update = m.CallInterpreter(call=event.joins, state="queued", position=event.position)
        await _tell(ctx, event.notify, update)
        return
    await ctx.estimates.tell_position(event.call, event.kiosk, event.service, event.position, now)


async def _call_queued(event: CallQueued, now: float, ctx: Context) -> None:
    if event.joins is not None:
        update = m.CallInterpreter(
            call=event.joins, state="queued", language=event.language, position=event.position
        )
        await _tell(ctx, event.notify, update)


async def _call_refused(event: CallRefused, now: float, ctx: Context) -> None:
    if event.joins is not None:
        update = m.CallInterpreter(
            call=event.joins,
            state="unavailable",
            reason=event.outcome.value,
            next_opening=event.next_opening,
        )
        await _tell(ctx, event.notify, update)


async def _call_offered(event: CallOffered, now: float, ctx: Context) -> None:
    target = address("expert", event.expert)
    if ctx.has_subscribers(target):
        await ctx.publish(target, ctx.views.offer(event, now))
    if event.joins is not None:
        update = m.CallInterpreter(call=event.joins, state="offered", language=event.language)
        await _tell(ctx, event.notify, update)


async def _offer_ended(event: OfferEnded, now: float, ctx: Context) -> None:
    if event.result != "accepted":  # an accepted offer is told by call.connected
        reason: Any = event.result
        message = m.OfferWithdrawn(call=event.call, reason=reason)
        await ctx.publish(address("expert", event.expert), message)


async def _call_connected(event: CallConnected, now: float, ctx: Context) -> None:
    if event.joins is not None:
        return  # the interpreter joins the call it was asked for: ParticipantJoined
    call = ctx.views.call(event.call)
    if call is not None:
        await announce_connected(ctx, call, now)


async def _call_resumed(event: CallResumed, now: float, ctx: Context) -> None:
    message = m.CallResumed(
        call=event.call,
        service=event.service,
        state=event.state.value,  # type: ignore[arg-type]
        position=event.position or None,
    )
    await ctx.publish(address("kiosk", event.kiosk), message)
    call = ctx.views.call(event.call)
    if call is not None and call.state is CallState.CONNECTED:
        await announce_connected(ctx, call, now)


async def _party_lost(event: PartyLost, now: float, ctx: Context) -> None:
    key = f"{event.role}:{event.party}"
    message = m.CallPeerState(
        call=event.call, state="lost", grace_s=max(event.until - now, 0.0), party=key
    )
    await _tell(ctx, event.members, message, but=key)
    if event.role == "interpreter":
        await _tell(ctx, event.members, m.CallInterpreter(call=event.call, state="lost"), but=key)


async def _party_back(event: PartyBack, now: float, ctx: Context) -> None:
    key = f"{event.role}:{event.party}"
    await _tell(ctx, event.members, m.CallPeerState(call=event.call, state="back", party=key), key)
    if event.role not in ("kiosk", "expert"):
        # A guest back on a new connection sets its room up again; the kiosk's return
        # is told to everyone by call.resumed, the expert's by its console catch-up.
        call = ctx.views.call(event.call)
        if call is not None:
            await announce_connected(ctx, call, now, only=key)


async def _participant_joined(event: ParticipantJoined, now: float, ctx: Context) -> None:
    call = ctx.views.call(event.call)
    if call is None:
        return
    key = f"{event.role}:{event.party}"
    await announce_connected(ctx, call, now, only=key)
    members = ctx.rooms.members(call)
    joined = next(p for p in members if p.key == key)
    for other in members:
        if other.key == key or not ctx.has_subscribers(bus_address(other.key)):
            continue
        await ctx.publish(
            bus_address(other.key),
            m.CallParticipants(
                call=event.call,
                participants=members,
                change="joined",
                party=joined,
            ),
        )
    if event.role == "interpreter":
        update = m.CallInterpreter(
            call=event.call, state="joined", language=event.language, interpreter=joined
        )
        await _tell(ctx, event.members, update, but=key)


async def _participant_left(event: ParticipantLeft, now: float, ctx: Context) -> None:
    key = f"{event.role}:{event.party}"
    gone = m.PartyInfo(
        role=event.role,  # type: ignore[arg-type]
        id=event.party,
        name=event.name,
        key=key,
        language=event.language,
        sends_media=event.role != "supervisor",
    )
    call = ctx.views.call(event.call)
    members = ctx.rooms.members(call) if call is not None else []
    for other in event.members:
        await ctx.publish(
            bus_address(other),
            m.CallParticipants(
                call=event.call,
                participants=members,
                change="left",
                party=gone,
                reason=event.reason,
            ),
        )
    if event.role == "interpreter" and event.reason not in ("call_ended",):
        update = m.CallInterpreter(call=event.call, state="left", reason=event.reason)
        await _tell(ctx, event.members, update)
    # The guest's own page: its part of the call is over.
    ended = m.CallEnded(call=event.call, outcome="answered", reason=event.reason)
    await ctx.publish(bus_address(key), ended)


async def _call_requeued(event: CallRequeued, now: float, ctx: Context) -> None:
    ctx.estimates.requeued(event.call, event.position)
    message = m.CallRequeued(call=event.call, position=event.position, reason=event.reason)
    await ctx.publish(address("kiosk", event.kiosk), message)


async def _call_transferred(event: CallTransferred, now: float, ctx: Context) -> None:
    await ctx.publish(address("kiosk", event.kiosk), ctx.views.transferred(event))
    ended = m.CallEnded(call=event.call, outcome="transferred", reason=event.to_service)
    await ctx.publish(address("expert", event.expert), ended)


async def _call_ended(event: CallEnded, now: float, ctx: Context) -> None:
    if event.joins is not None:
        if event.outcome.value != "answered" and event.reason not in _ROOM_GONE:
            update = m.CallInterpreter(
                call=event.joins, state="unavailable", reason=event.outcome.value
            )
            await _tell(ctx, event.notify, update)
        return
    ctx.estimates.ended(event.call)
    ended = m.CallEnded(call=event.call, outcome=event.outcome.value, reason=event.reason)
    await ctx.publish(address("kiosk", event.kiosk), ended)
    if event.expert is not None and event.talk_s is not None:  # the expert was in the call
        await ctx.publish(address("expert", event.expert), ended)


async def _wrap_up_started(event: WrapUpStarted, now: float, ctx: Context) -> None:
    await ctx.publish(address("expert", event.expert), ctx.views.wrap_up(event, now))


async def _expert_changed(event: ExpertChanged, now: float, ctx: Context) -> None:
    message = m.ExpertState(
        status=event.status.value, state=event.state.value, call=event.call, reason=event.reason
    )
    await ctx.publish(address("expert", event.expert), message)


_ROOM_GONE = ("call_ended", "requeued", "transferred")
"""Why a request for an interpreter is withdrawn when its call does not go on."""

ROUTES: dict[type[Event], Handler] = {
    CallQueued: _call_queued,
    CallRefused: _call_refused,
    ParticipantJoined: _participant_joined,
    ParticipantLeft: _participant_left,
    PositionChanged: _position_changed,
    CallOffered: _call_offered,
    OfferEnded: _offer_ended,
    CallConnected: _call_connected,
    CallResumed: _call_resumed,
    PartyLost: _party_lost,
    PartyBack: _party_back,
    CallRequeued: _call_requeued,
    CallTransferred: _call_transferred,
    CallEnded: _call_ended,
    WrapUpStarted: _wrap_up_started,
    ExpertChanged: _expert_changed,
}


async def announce_connected(ctx: Context, call: Call, now: float, only: str | None = None) -> None:
    """Tell each participant (or ``only`` one) who is in the call and whom it offers to."""
    for target, message in ctx.rooms.connected(call, now, ctx.has_subscribers, only):
        await ctx.publish(target, message)
    ctx.announced(call, only)


class Router:
    """The context handlers get, over the bus of this node."""

    def __init__(
        self,
        bus: MessageBus,
        views: Views,
        estimates: Estimates,
        rooms: Rooms,
        routes: dict[type[Event], Handler] = ROUTES,
    ) -> None:
        self.bus = bus
        self.views = views
        self.estimates = estimates
        self.rooms = rooms
        self.routes = routes
        self.on_announced: Callable[[Call, str | None], None] = lambda call, only: None
        """Told after each ``call.connected`` (the case file follows it); must not block."""

    def announced(self, call: Call, only: str | None) -> None:
        self.on_announced(call, only)

    async def publish(self, target: str, message: m.Message) -> None:
        await self.bus.publish_here(target, message)

    def has_subscribers(self, target: str) -> bool:
        return self.bus.has_subscribers(target)

    async def route(self, events: list[Event], now: float) -> None:
        for event in events:
            handler = self.routes.get(type(event))
            if handler is not None:
                await handler(event, now, self)

    async def announce_connected(self, call: Call, now: float) -> None:
        await announce_connected(self, call, now)

    async def console_back(self, expert_id: ExpertId, now: float) -> None:
        """A console that connected again is told what it would otherwise miss."""
        machine = self.views.machine()
        record = machine.expert(expert_id)
        call = machine.call(record.call) if record and record.call else None
        if call is not None and call.state is CallState.CONNECTED:
            # Everyone sets up their connection with the console again (a guest
            # interpreter is told alone: the others' connections are unchanged).
            guest = call.guest("interpreter", expert_id)
            await announce_connected(self, call, now, f"interpreter:{expert_id}" if guest else None)
        if record is not None and record.state is ExpertState.OFFERED and call is not None:
            # Reloaded while ringing: ring again for the time that is left.
            await self.route([_offered_again(call, expert_id, now)], now)
        wrap_up = self.views.machine().wrap_up_of(expert_id)
        if wrap_up is not None:
            # Reloaded during wrap-up: it needs the reasons again to finish it.
            call_id, service, until = wrap_up
            await self.route([WrapUpStarted(now, expert_id, call_id, service, until)], now)


def _offered_again(call: Call, expert: ExpertId, now: float) -> CallOffered:
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
