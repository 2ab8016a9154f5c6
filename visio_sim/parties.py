"""Simulated kiosks and experts: each drives one ``visio_client.Client`` and, once its
call is connected, one ``media.PeerSession``.

Rules this module keeps:

1. What goes wrong with a party is an error of the run (``SimRun.error``), never the
   end of the run: a kiosk or expert carries on with its next call when it can.
2. Every wait is bounded: media start by ``MEDIA_START_TIMEOUT_S``, the clean-up of
   calls a run leaves behind (or finds left by an earlier one) by ``CLEANUP_TIMEOUT_S``.
3. SDP and ICE cross between the wire's structs and ``media``'s dictionaries here, and
   only here.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from dataclasses import dataclass

from media.peer import PeerSession
from signaling.messages import (
    CallCancel,
    CallConnected,
    CallEnded,
    CallHangup,
    CallOffered,
    CallQueued,
    CallRequest,
    CallRequeued,
    CallResumed,
    ErrorMessage,
    ExpertState,
    ExpertStatusSet,
    OfferAccept,
    OfferWithdrawn,
    RtcIce,
    RtcSdp,
    ServerMessage,
    ServiceInfo,
    Welcome,
    WrapUpDone,
    WrapUpStarted,
)
from visio_client import NEW_ID, Client, ClientError, ConnectionLost, ServerError

from .beneficiary import beneficiary_for
from .mesh import to_candidate, to_ice_servers, to_media, to_wire
from .record import CallQuota, CallRecord, SimRun

__all__ = ["CLEANUP_TIMEOUT_S", "MEDIA_START_TIMEOUT_S", "SimExpert", "SimKiosk"]

MEDIA_START_TIMEOUT_S = 15.0
"""From call.connected to the first remote video frame at the expert."""
CLEANUP_TIMEOUT_S = 2.0
"""For logging out and ending calls a run leaves behind or finds left by an earlier one."""


# ---------------------------------------------------------------------------
# Between the wire and media
# ---------------------------------------------------------------------------


async def _exchange_sdp(client: Client, peer: PeerSession, event: RtcSdp, run: SimRun) -> None:
    match event.description.type:
        case "offer":
            answer = await peer.answer(to_media(event.description))
            await client.send(RtcSdp(call=event.call, description=to_wire(answer)))
        case "answer":
            await peer.accept_answer(to_media(event.description))
        case other:
            run.error(f"{client.label}: call {event.call}: unexpected SDP {other}")


async def _start_media(client: Client, connected: CallConnected, fps: int) -> PeerSession:
    peer = PeerSession(ice_servers=to_ice_servers(connected.ice_servers), fps=fps)
    if connected.initiator:
        offer = await peer.create_offer()
        await client.send(RtcSdp(call=connected.call, description=to_wire(offer)))
    return peer


# ---------------------------------------------------------------------------
# Kiosk
# ---------------------------------------------------------------------------


class SimKiosk:
    """A kiosk that places calls one after another while the shared quota lasts."""

    def __init__(
        self,
        client: Client,
        kiosk_id: str,
        *,
        run: SimRun,
        quota: CallQuota,
        served_services: frozenset[str],
        fps: int = 30,
        rng: random.Random | None = None,
    ) -> None:
        self.client = client
        self.kiosk_id = kiosk_id
        self._run = run
        self._quota = quota
        self._served_services = served_services
        self._fps = fps
        self._rng = rng or random.Random()
        self._services: list[ServiceInfo] = []
        self._next_service = 0

    def use_catalogue(self, welcome: Welcome) -> None:
        """Call only services that are open now and that an expert of the run serves."""
        self._services = [s for s in welcome.services if s.open and s.id in self._served_services]

    async def run(self) -> None:
        while self._quota.take():
            if not await self.place_call():
                return

    async def place_call(self) -> bool:
        """Place one call and follow it to its end; False once this kiosk can call no more."""
        while self._services:
            service = self._services[self._next_service % len(self._services)]
            self._next_service += 1
            requested_at = time.perf_counter()
            beneficiary = beneficiary_for(service, self._rng)
            try:
                reply = await self.client.request(
                    CallRequest(id=NEW_ID, service=service.id, beneficiary=beneficiary)
                )
            except ServerError as exc:
                if exc.code == "service_closed":
                    self._services.remove(service)
                    continue
                if exc.code == "call_in_progress" and await self._end_resumed_call():
                    continue
                self._run.error(f"{self.client.label}: call.request {service.id} refused: {exc}")
                return True
            if not isinstance(reply, CallQueued):
                self._run.error(f"{self.client.label}: call.request answered by {reply}")
                return True
            record = self._run.new_call(reply.call, self.kiosk_id, service.id, requested_at)
            await self._follow(record)
            return True
        self._run.error(f"{self.client.label}: no open service that the run's experts serve")
        return False

    async def _follow(self, record: CallRecord) -> None:
        peer: PeerSession | None = None
        try:
            while record.outcome is None:
                event = await self.client.next_event()
                if getattr(event, "call", record.call) != record.call:
                    continue
                match event:
                    case CallConnected():
                        if peer is not None:  # connected again after a requeue: a new expert
                            await self._retire(peer, record)
                        else:
                            record.connected_at = time.perf_counter()
                        peer = await _start_media(self.client, event, self._fps)
                    case CallRequeued() if peer is not None:
                        await self._retire(peer, record)
                        peer = None
                    case RtcSdp() if peer is not None:
                        await _exchange_sdp(self.client, peer, event, self._run)
                    case RtcIce() if peer is not None:
                        await peer.add_remote_candidate(to_candidate(event.candidate))
                    case RtcSdp() | RtcIce():
                        self._run.error(f"{self.client.label}: {event} before call.connected")
                    case CallEnded():
                        record.outcome = event.outcome
                    case ErrorMessage():
                        self._run.error(f"{self.client.label}: {event.code}: {event.reason}")
        finally:
            if peer is not None:
                await self._retire(peer, record)
            if record.outcome is None:
                await self._end_call(record.call, connected=record.connected_at is not None)

    async def _end_resumed_call(self) -> bool:
        """End the call an earlier run left to this kiosk (the server keeps it for the
        kiosk's grace period and says so with call.resumed); True once it has ended."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CLEANUP_TIMEOUT_S):
                resumed = await self.client.expect(CallResumed)
                await self._end_call(resumed.call, connected=resumed.state == "connected")
                await self.client.expect(CallEnded, call=resumed.call)
                return True
        return False

    async def _end_call(self, call: str, *, connected: bool) -> None:
        """Hang up or cancel a call this kiosk leaves, so that nobody waits on it.

        What this kiosk last heard of the call may be stale (a waiting call may have been
        answered since), so the other request is tried when the first is refused.
        """
        hang_up, cancel = CallHangup(id=NEW_ID, call=call), CallCancel(id=NEW_ID, call=call)
        first, second = (hang_up, cancel) if connected else (cancel, hang_up)
        with contextlib.suppress(ConnectionLost, TimeoutError):
            async with asyncio.timeout(CLEANUP_TIMEOUT_S):
                try:
                    await self.client.request(first)
                except ServerError:
                    with contextlib.suppress(ServerError):
                        await self.client.request(second)

    @staticmethod
    async def _retire(peer: PeerSession, record: CallRecord) -> None:
        """Keep what a peer connection counted, then close it."""
        record.kiosk_video_frames += peer.video_frames
        record.kiosk_audio_frames += peer.audio_frames
        if record.kiosk_first_video_at is None:
            record.kiosk_first_video_at = peer.first_video_at
        if record.kiosk_media_connected_at is None:
            record.kiosk_media_connected_at = peer.connected_at
        await peer.close()


# ---------------------------------------------------------------------------
# Expert
# ---------------------------------------------------------------------------


@dataclass
class _ExpertCall:
    """The one call an expert holds, from the offer to the end of its wrap-up."""

    call: str
    peer: PeerSession | None = None
    hold: asyncio.Task[None] | None = None
    ended: bool = False
    """call.ended arrived: only the wrap-up is left."""
    leftover: bool = False
    """Left connected by an earlier run: hung up, never given media."""


class SimExpert:
    """An expert who takes every call offered, talks for ``media_s`` then hangs up."""

    def __init__(
        self,
        client: Client,
        expert_id: str,
        *,
        run: SimRun,
        media_s: float,
        fps: int = 30,
    ) -> None:
        self.client = client
        self.expert_id = expert_id
        self._run = run
        self._media_s = media_s
        self._fps = fps
        self._current: _ExpertCall | None = None
        self._visit_reasons: list[str] = []
        self._leftovers: set[str] = set()
        """Calls an earlier run left to this expert, already ended here."""
        self.idle = asyncio.Event()
        """Set while no call is offered to, connected to or wrapped up by this expert."""

    def use_catalogue(self, welcome: Welcome) -> None:
        self._visit_reasons = [r for s in welcome.services for r in s.visit_reasons]

    async def go_available(self) -> None:
        await self.client.request(ExpertStatusSet(id=NEW_ID, status="available"))
        self.idle.set()

    async def run(self) -> None:
        """Answer calls until cancelled; once this returns, the expert holds no call."""
        try:
            async with asyncio.TaskGroup() as holds:
                try:
                    while True:
                        await self._handle(await self.client.next_event(), holds)
                finally:
                    await self._drop_call()
        finally:
            self.idle.set()

    async def log_out(self) -> None:
        with contextlib.suppress(ClientError, TimeoutError):
            async with asyncio.timeout(CLEANUP_TIMEOUT_S):
                await self.client.request(ExpertStatusSet(id=NEW_ID, status="logged_out"))

    async def _handle(self, event: ServerMessage, holds: asyncio.TaskGroup) -> None:
        current = self._current
        match event:
            case CallOffered():
                self.idle.clear()
                self._current = _ExpertCall(event.call)
                try:
                    await self.client.request(OfferAccept(id=NEW_ID, call=event.call))
                except ServerError as exc:
                    self._run.error(f"{self.client.label}: offer.accept {event.call}: {exc}")
                    self._current = None
                    self.idle.set()
                    return
            case CallConnected() if current is not None and event.call == current.call:
                # Announced again when the kiosk comes back: media already runs, or the
                # call is a leftover being hung up.
                if current.peer is None and not current.leftover:
                    current.peer = await _start_media(self.client, event, self._fps)
                    current.hold = holds.create_task(self._hold(current.call, current.peer))
            case CallConnected() if current is None and event.call not in self._run.calls:
                # Left connected by an earlier run that stopped mid-call: the server gives
                # it back on sign-in. Hang up; its wrap-up follows as for any call.
                self.idle.clear()
                self._current = _ExpertCall(event.call, leftover=True)
                with contextlib.suppress(ServerError):
                    await self.client.request(CallHangup(id=NEW_ID, call=event.call))
            case ExpertState(state="wrap_up", call=str(call)) if (
                current is None and call not in self._run.calls and call not in self._leftovers
            ):
                await self._finish_leftover_wrap_up(call)
            case RtcSdp() if current and current.peer and event.call == current.call:
                await _exchange_sdp(self.client, current.peer, event, self._run)
            case RtcIce() if current and current.peer and event.call == current.call:
                await current.peer.add_remote_candidate(to_candidate(event.candidate))
            case CallEnded() if current is not None and event.call == current.call:
                await self._drop_call()
                self._current = _ExpertCall(event.call, ended=True)
            case WrapUpStarted():
                await self._wrap_up(event)
            case OfferWithdrawn() if current is not None and event.call == current.call:
                await self._drop_call()
                self.idle.set()
            case ExpertState(state="idle") if current is None or current.ended:
                # A service without wrap-up goes straight back to idle after call.ended.
                self._current = None
                self.idle.set()
            case ErrorMessage():
                self._run.error(f"{self.client.label}: {event.code}: {event.reason}")
            case RtcSdp() | RtcIce() | CallConnected():
                self._run.error(f"{self.client.label}: {type(event).__name__} for another call")

    async def _hold(self, call: str, peer: PeerSession) -> None:
        try:
            async with asyncio.timeout(MEDIA_START_TIMEOUT_S):
                await peer.first_video.wait()
        except TimeoutError:
            self._run.error(f"{self.client.label}: call {call}: no video within the media timeout")
        await asyncio.sleep(self._media_s)
        try:
            await self.client.request(CallHangup(id=NEW_ID, call=call))
        except ServerError as exc:
            self._run.error(f"{self.client.label}: call.hangup {call}: {exc}")

    async def _drop_call(self) -> None:
        """Keep what the current call's media counted, then stop it."""
        current, self._current = self._current, None
        if current is None:
            return
        if current.hold is not None and not current.hold.done():
            current.hold.cancel()
        if current.peer is not None:
            # A call offered here and placed by no kiosk of this run is not counted: one
            # that an earlier, aborted run left waiting in the queue.
            if (record := self._run.calls.get(current.call)) is not None:
                record.expert = self.expert_id
                record.expert_video_frames += current.peer.video_frames
                record.expert_audio_frames += current.peer.audio_frames
            await current.peer.close()

    async def _finish_leftover_wrap_up(self, call: str) -> None:
        """Close a wrap-up an earlier run left open (it stopped before wrapup.done).

        The server does not repeat wrapup.started on sign-in, so the call's visit reasons
        are unknown: try the first reason of the expert's catalogue, and on
        ``invalid_visit_reason`` the first of the reasons the refusal lists.
        """
        self._leftovers.add(call)
        reason = self._visit_reasons[0] if self._visit_reasons else "Autre"
        try:
            await self.client.request(WrapUpDone(id=NEW_ID, call=call, reason=reason))
        except ServerError as exc:
            reasons = exc.details.get("reasons")
            if exc.code == "invalid_visit_reason" and isinstance(reasons, list) and reasons:
                with contextlib.suppress(ServerError):
                    await self.client.request(
                        WrapUpDone(id=NEW_ID, call=call, reason=str(reasons[0]))
                    )

    async def _wrap_up(self, event: WrapUpStarted) -> None:
        await self._drop_call()
        reason = event.reasons[0] if event.reasons else "other"
        try:
            await self.client.request(WrapUpDone(id=NEW_ID, call=event.call, reason=reason))
        except ServerError as exc:
            self._run.error(f"{self.client.label}: wrapup.done {event.call}: {exc}")
        else:
            if (record := self._run.calls.get(event.call)) is not None:
                record.wrapped_up = True
        self.idle.set()
