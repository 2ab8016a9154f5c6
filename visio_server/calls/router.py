"""Events to wire messages, by a table from event class to a small handler.

Rules this module keeps:

1. Every node routes every event (it replays the whole journal) and tells only its own
   connections: messages go out with ``publish_here``, and a message that costs
   something to build is not built for a party held elsewhere.
2. Messages leave in the order the events happened, one event at a time.
3. An event class missing from ``ROUTES`` tells nobody: ``CallQueued`` is answered by
   the request's reply, ``CallRefused`` by its error, ``WrapUpFinished`` by the
   expert's state.
4. What a kiosk was last told of its place is kept with the estimates, so the handlers
   that tell a kiosk its place (or that its call ended) keep that record right.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from queueing import (
    CallConnected,
    CallEnded,
    CallId,
    CallOffered,
    CallRequeued,
    CallResumed,
    CallState,
    CallTransferred,
    Event,
    ExpertChanged,
    ExpertId,
    ExpertState,
    OfferEnded,
    PartyBack,
    PartyLost,
    PositionChanged,
    WrapUpStarted,
)
from queueing.model import Call
from signaling import MessageBus, address
from signaling import messages as m

from .estimates import Estimates
from .views import Views

__all__ = ["ROUTES", "Context", "Router"]


class Context(Protocol):
    """What a handler may use: this node's connections, the views, the estimates."""

    @property
    def views(self) -> Views: ...

    @property
    def estimates(self) -> Estimates: ...

    async def publish(self, target: str, message: m.Message) -> None: ...

    def has_subscribers(self, target: str) -> bool: ...


Handler = Callable[[Any, float, Context], Awaitable[None]]
"""Tells the parties concerned of one event, given the time it was applied at."""


async def _position_changed(event: PositionChanged, now: float, ctx: Context) -> None:
    await ctx.estimates.tell_position(event.call, event.kiosk, event.service, event.position, now)


async def _call_offered(event: CallOffered, now: float, ctx: Context) -> None:
    target = address("expert", event.expert)
    if ctx.has_subscribers(target):
        await ctx.publish(target, ctx.views.offer(event, now))


async def _offer_ended(event: OfferEnded, now: float, ctx: Context) -> None:
    if event.result != "accepted":  # an accepted offer is told by call.connected
        reason: Any = event.result
        message = m.OfferWithdrawn(call=event.call, reason=reason)
        await ctx.publish(address("expert", event.expert), message)


async def _call_connected(event: CallConnected, now: float, ctx: Context) -> None:
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
    message = m.CallPeerState(call=event.call, state="lost", grace_s=event.until - now)
    await _to_other_party(ctx, event.call, event.role, message)


async def _party_back(event: PartyBack, now: float, ctx: Context) -> None:
    message = m.CallPeerState(call=event.call, state="back")
    await _to_other_party(ctx, event.call, event.role, message)


async def _call_requeued(event: CallRequeued, now: float, ctx: Context) -> None:
    ctx.estimates.requeued(event.call, event.position)
    message = m.CallRequeued(call=event.call, position=event.position, reason=event.reason)
    await ctx.publish(address("kiosk", event.kiosk), message)


async def _call_transferred(event: CallTransferred, now: float, ctx: Context) -> None:
    await ctx.publish(address("kiosk", event.kiosk), ctx.views.transferred(event))
    ended = m.CallEnded(call=event.call, outcome="transferred", reason=event.to_service)
    await ctx.publish(address("expert", event.expert), ended)


async def _call_ended(event: CallEnded, now: float, ctx: Context) -> None:
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


ROUTES: dict[type[Event], Handler] = {
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


async def announce_connected(ctx: Context, call: Call, now: float) -> None:
    """Tell both parties who the other is; the expert then makes the SDP offer."""
    for target, message in ctx.views.connected(call, now, ctx.has_subscribers):
        await ctx.publish(target, message)


async def _to_other_party(
    ctx: Context, call_id: CallId, lost_role: str, message: m.Message
) -> None:
    call = ctx.views.call(call_id)
    if call is None:
        return
    if lost_role == "kiosk" and call.expert is not None:
        await ctx.publish(address("expert", call.expert), message)
    elif lost_role == "expert":
        await ctx.publish(address("kiosk", call.kiosk), message)


class Router:
    """The context handlers get, over the bus of this node."""

    def __init__(
        self,
        bus: MessageBus,
        views: Views,
        estimates: Estimates,
        routes: dict[type[Event], Handler] = ROUTES,
    ) -> None:
        self.bus = bus
        self.views = views
        self.estimates = estimates
        self.routes = routes

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
            await self.announce_connected(call, now)
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
