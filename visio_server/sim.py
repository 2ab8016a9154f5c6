"""visio-sim: place real WebRTC calls through running visio-guichet servers.

Kiosks and experts here are real clients: each one authenticates with ``hello`` on its own
WebSocket, follows ``signaling.messages`` to the letter and, once connected, sends synthetic
audio and video to its peer through aiortc while counting the frames it decodes.

Rules this module keeps:

1. Server messages are decoded strictly against the protocol; a frame the protocol does not
   allow is reported as an error of the run, never silently skipped.
2. Nothing outlives a run: what a run learns lives in its ``SimRun``; the one process-wide
   change (loopback ICE candidates) is undone when the run ends.
3. Every wait is bounded: replies by ``REPLY_TIMEOUT_S``, media start by
   ``MEDIA_START_TIMEOUT_S``, the whole run by ``--timeout``.
4. A peer connection never gets a STUN or TURN server that nobody named: aiortc falls back
   to a public STUN server when given none, which costs seconds per call on a closed network.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import itertools
import json
import math
import random
import re
import sys
import time
from array import array
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import aioice.ice
import msgspec
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError
from aiortc.sdp import candidate_from_sdp
from av import AudioFrame, VideoFrame

from signaling.codec import encode
from signaling.messages import (
    Ack,
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
    Hello,
    IceCandidate,
    IceServer,
    Message,
    OfferAccept,
    OfferWithdrawn,
    RtcIce,
    RtcSdp,
    ServerMessage,
    ServiceInfo,
    SessionDescription,
    Welcome,
    WrapUpDone,
    WrapUpStarted,
)
from visio_server.auth import mint_token
from visio_server.config import Config, load_config

__all__ = [
    "CallQuota",
    "CallRecord",
    "ConnectionLost",
    "GradientVideoTrack",
    "PeerSession",
    "ServerError",
    "SignalingClient",
    "SimExpert",
    "SimKiosk",
    "SimOptions",
    "SimRun",
    "SineAudioTrack",
    "beneficiary_for",
    "loopback_host_candidates",
    "main",
    "percentile",
    "run_sim",
    "websocket_url",
]

VIDEO_WIDTH = 320
VIDEO_HEIGHT = 240
VIDEO_CLOCK_RATE = 90_000
AUDIO_SAMPLE_RATE = 48_000
AUDIO_FRAME_SAMPLES = 960
"""20 ms at 48 kHz, the packetisation Opus uses."""
TONE_HZ = 400
"""48 kHz / 400 Hz = 120 samples a period: a 20 ms frame holds whole periods, so one repeats."""
TONE_AMPLITUDE = 8_000

REPLY_TIMEOUT_S = 10.0
MEDIA_START_TIMEOUT_S = 15.0
"""From call.connected to the first remote video frame at the expert."""
CLEANUP_TIMEOUT_S = 2.0
"""For logging out and ending calls a run leaves behind or finds left by an earlier one."""

_REPLY_TYPES = (Welcome, Ack, CallQueued, ErrorMessage)
"""Messages that answer a request; every other server message is an event."""


# ---------------------------------------------------------------------------
# Synthetic media
# ---------------------------------------------------------------------------


class _Pacer:
    """Releases frame ``n`` at ``start + n * interval`` on the event loop's clock."""

    def __init__(self, interval_s: float) -> None:
        self._interval_s = interval_s
        self._start: float | None = None
        self._count = 0

    async def next_index(self) -> int:
        loop = asyncio.get_running_loop()
        if self._start is None:
            self._start = loop.time()
            return 0
        self._count += 1
        await asyncio.sleep(self._start + self._count * self._interval_s - loop.time())
        return self._count


class GradientVideoTrack(MediaStreamTrack):
    """A 320x240 diagonal luma gradient that scrolls one row a frame."""

    kind = "video"

    def __init__(self, fps: int = 30) -> None:
        super().__init__()
        self._pacer = _Pacer(1 / fps)
        self._pts_step = VIDEO_CLOCK_RATE // fps
        # Row y of this buffer holds (x + y) mod 256: the H rows starting at row (n mod 256) are
        # frame n, so each frame is one slice of a buffer built once, not a loop over pixels.
        ramp = bytes(range(256)) * (VIDEO_WIDTH // 256 + 2)
        self._luma = b"".join(
            ramp[y % 256 : y % 256 + VIDEO_WIDTH] for y in range(VIDEO_HEIGHT + 256)
        )
        self._chroma = bytes([128]) * ((VIDEO_WIDTH // 2) * (VIDEO_HEIGHT // 2))

    async def recv(self) -> VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        index = await self._pacer.next_index()
        offset = (index % 256) * VIDEO_WIDTH
        frame = VideoFrame(VIDEO_WIDTH, VIDEO_HEIGHT, "yuv420p")
        frame.planes[0].update(self._luma[offset : offset + VIDEO_WIDTH * VIDEO_HEIGHT])
        frame.planes[1].update(self._chroma)
        frame.planes[2].update(self._chroma)
        frame.pts = index * self._pts_step
        frame.time_base = Fraction(1, VIDEO_CLOCK_RATE)
        return frame


class SineAudioTrack(MediaStreamTrack):
    """A 400 Hz tone, mono, 48 kHz, in 20 ms frames."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._pacer = _Pacer(AUDIO_FRAME_SAMPLES / AUDIO_SAMPLE_RATE)
        self._samples = array(
            "h",
            (
                round(TONE_AMPLITUDE * math.sin(2 * math.pi * TONE_HZ * n / AUDIO_SAMPLE_RATE))
                for n in range(AUDIO_FRAME_SAMPLES)
            ),
        ).tobytes()

    async def recv(self) -> AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        index = await self._pacer.next_index()
        frame = AudioFrame(format="s16", layout="mono", samples=AUDIO_FRAME_SAMPLES)
        frame.planes[0].update(self._samples)
        frame.sample_rate = AUDIO_SAMPLE_RATE
        frame.pts = index * AUDIO_FRAME_SAMPLES
        frame.time_base = Fraction(1, AUDIO_SAMPLE_RATE)
        return frame


@contextlib.contextmanager
def loopback_host_candidates() -> Iterator[None]:
    """Make aioice offer 127.0.0.1 as its only host candidate while the block runs.

    aioice leaves 127.0.0.1 out when it gathers host addresses, so on a loopback-only
    network an aiortc peer offers no candidate anyone can reach.  When every server is on
    a loopback address, every peer the sim talks to (the other simulated party, or a
    server relaying media) is on this machine, and 127.0.0.1 is the one address that
    always reaches it.
    """
    original = aioice.ice.get_host_addresses

    def loopback_only(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return ["127.0.0.1"] if use_ipv4 else []

    aioice.ice.get_host_addresses = loopback_only
    try:
        yield
    finally:
        aioice.ice.get_host_addresses = original


def is_loopback_url(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# ---------------------------------------------------------------------------
# One WebRTC peer
# ---------------------------------------------------------------------------


class PeerSession:
    """One aiortc peer connection: sends a tone and a gradient, counts what it decodes."""

    def __init__(self, *, ice_servers: Sequence[IceServer] = (), fps: int = 30) -> None:
        self._pc = RTCPeerConnection(
            RTCConfiguration(
                iceServers=[
                    RTCIceServer(urls=s.urls, username=s.username, credential=s.credential)
                    for s in ice_servers
                ]
            )
        )
        self._outgoing: list[MediaStreamTrack] = [SineAudioTrack(), GradientVideoTrack(fps)]
        for track in self._outgoing:
            self._pc.addTrack(track)
        self._receivers: list[asyncio.Task[None]] = []
        self.video_frames = 0
        self.audio_frames = 0
        self.first_video_at: float | None = None
        """``time.perf_counter()`` when the first remote video frame was decoded."""
        self.connected_at: float | None = None
        """``time.perf_counter()`` when ICE and DTLS were up."""
        self.first_audio_at: float | None = None
        self.first_video = asyncio.Event()
        self.first_audio = asyncio.Event()
        self._pc.on("track", self._on_track)
        self._pc.on("connectionstatechange", self._on_connection_state)

    async def create_offer(self) -> SessionDescription:
        await self._pc.setLocalDescription(await self._pc.createOffer())
        return SessionDescription(type="offer", sdp=self._pc.localDescription.sdp)

    async def answer(self, offer: SessionDescription) -> SessionDescription:
        await self._pc.setRemoteDescription(RTCSessionDescription(sdp=offer.sdp, type="offer"))
        await self._pc.setLocalDescription(await self._pc.createAnswer())
        return SessionDescription(type="answer", sdp=self._pc.localDescription.sdp)

    async def accept_answer(self, answer: SessionDescription) -> None:
        await self._pc.setRemoteDescription(RTCSessionDescription(sdp=answer.sdp, type="answer"))

    async def add_remote_candidate(self, candidate: IceCandidate | None) -> None:
        """Add a trickled candidate; the end-of-candidates marker needs nothing from aiortc."""
        if candidate is None or not candidate.candidate:
            return
        parsed = candidate_from_sdp(candidate.candidate.removeprefix("candidate:"))
        parsed.sdpMid = candidate.sdpMid
        parsed.sdpMLineIndex = candidate.sdpMLineIndex
        await self._pc.addIceCandidate(parsed)

    async def close(self) -> None:
        # aiortc closes a connection by itself once the remote side's DTLS closed, and a
        # second close() awaits the first one's future: cancelling that await would cancel
        # aiortc's own future and make its close fail. The shield keeps it whole.
        await asyncio.shield(self._pc.close())
        for track in self._outgoing:
            track.stop()
        for receiver in self._receivers:
            receiver.cancel()
        await asyncio.gather(*self._receivers, return_exceptions=True)

    def _on_track(self, track: MediaStreamTrack) -> None:
        self._receivers.append(asyncio.create_task(self._count_frames(track)))

    def _on_connection_state(self) -> None:
        if self._pc.connectionState == "connected" and self.connected_at is None:
            self.connected_at = time.perf_counter()

    async def _count_frames(self, track: MediaStreamTrack) -> None:
        while True:
            try:
                await track.recv()
            except MediaStreamError:
                return
            if track.kind == "video":
                if self.first_video_at is None:
                    self.first_video_at = time.perf_counter()
                    self.first_video.set()
                self.video_frames += 1
            else:
                if self.first_audio_at is None:
                    self.first_audio_at = time.perf_counter()
                    self.first_audio.set()
                self.audio_frames += 1


# ---------------------------------------------------------------------------
# Signaling client
# ---------------------------------------------------------------------------


class ServerError(Exception):
    """The server answered a request with ``error``."""

    def __init__(self, code: str, reason: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason
        self.details = details or {}


class ConnectionLost(Exception):
    """The WebSocket closed while the client still needed it."""


def websocket_url(server_url: str) -> str:
    """``http://host:port`` -> ``ws://host:port/ws``; a ``ws(s)://`` URL is kept as given."""
    parts = urlsplit(server_url)
    if parts.scheme in ("ws", "wss"):
        return server_url
    scheme = "wss" if parts.scheme == "https" else "ws"
    path = parts.path.rstrip("/")
    if not path.endswith("/ws"):
        path += "/ws"
    return urlunsplit((scheme, parts.netloc, path, "", ""))


class SignalingClient:
    """One WebSocket to the server: requests matched to replies by ``id``, the rest events.

    The server keeps the connection alive with WebSocket pings (``heartbeat_s``), which
    aiohttp answers by itself, so the client sends no application ``ping``.
    """

    def __init__(
        self,
        http: aiohttp.ClientSession,
        server_url: str,
        token: str,
        *,
        label: str,
        report_error: Callable[[str], None],
    ) -> None:
        self.label = label
        self.server_url = server_url
        self._http = http
        self._token = token
        self._report_error = report_error
        self._decoder: msgspec.json.Decoder[ServerMessage] = msgspec.json.Decoder(ServerMessage)
        self._ids = itertools.count(1)
        self._pending: dict[str, asyncio.Future[ServerMessage]] = {}
        self._events: asyncio.Queue[ServerMessage | None] = asyncio.Queue()
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None

    async def connect(self) -> Welcome:
        self._ws = await self._http.ws_connect(websocket_url(self.server_url))
        self._reader = asyncio.create_task(self._read())
        welcome = await self.request(Hello, token=self._token)
        if not isinstance(welcome, Welcome):
            raise ConnectionLost(f"{self.label}: hello answered by {type(welcome).__name__}")
        return welcome

    async def request(self, kind: Callable[..., Message], **fields: Any) -> ServerMessage:
        """Send a request with a fresh ``id`` and return its reply; ``error`` raises."""
        request_id = str(next(self._ids))
        reply_future: asyncio.Future[ServerMessage] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = reply_future
        try:
            await self.send(kind(id=request_id, **fields))
            async with asyncio.timeout(REPLY_TIMEOUT_S):
                reply = await reply_future
        finally:
            self._pending.pop(request_id, None)
        if isinstance(reply, ErrorMessage):
            raise ServerError(reply.code, reply.reason, reply.details)
        return reply

    async def send(self, message: Message) -> None:
        if self._ws is None or self._ws.closed:
            raise ConnectionLost(f"{self.label}: WebSocket closed")
        await self._ws.send_str(encode(message))

    async def next_event(self) -> ServerMessage:
        event = await self._events.get()
        if event is None:
            self._events.put_nowait(None)  # every later reader learns it too
            raise ConnectionLost(f"{self.label}: WebSocket closed by the server")
        return event

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)

    async def _read(self) -> None:
        assert self._ws is not None
        try:
            async for frame in self._ws:
                if frame.type == aiohttp.WSMsgType.TEXT:
                    self._dispatch(frame.data)
                elif frame.type == aiohttp.WSMsgType.BINARY:
                    self._report_error(f"{self.label}: server sent a binary frame")
        finally:
            lost = ConnectionLost(f"{self.label}: WebSocket closed before the reply")
            for pending in self._pending.values():
                if not pending.done():
                    pending.set_exception(lost)
            self._events.put_nowait(None)

    def _dispatch(self, text: str) -> None:
        try:
            message = self._decoder.decode(text)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            self._report_error(f"{self.label}: server message outside the protocol ({exc}): {text}")
            return
        request_id = message.id if isinstance(message, _REPLY_TYPES) else None
        pending = self._pending.get(request_id) if request_id is not None else None
        if pending is not None and not pending.done():
            pending.set_result(message)
        else:
            self._events.put_nowait(message)


# ---------------------------------------------------------------------------
# What a run learns
# ---------------------------------------------------------------------------


@dataclass
class CallRecord:
    """One call as both of its parties saw it; times are ``time.perf_counter()`` values."""

    call: str
    kiosk: str = ""
    expert: str = ""
    service: str = ""
    requested_at: float | None = None
    """When the kiosk sent call.request (the citizen pressed Call)."""
    connected_at: float | None = None
    """When the kiosk received call.connected."""
    kiosk_media_connected_at: float | None = None
    """When ICE and DTLS were up at the kiosk."""
    kiosk_first_video_at: float | None = None
    outcome: str | None = None
    """The outcome of call.ended, as the kiosk received it."""
    wrapped_up: bool = False
    kiosk_video_frames: int = 0
    kiosk_audio_frames: int = 0
    expert_video_frames: int = 0
    expert_audio_frames: int = 0

    @property
    def completed(self) -> bool:
        return self.outcome == "answered" and self.wrapped_up

    @property
    def media_both_ways(self) -> bool:
        return (
            min(
                self.kiosk_video_frames,
                self.kiosk_audio_frames,
                self.expert_video_frames,
                self.expert_audio_frames,
            )
            > 0
        )

    @property
    def connected_ms(self) -> float | None:
        if self.requested_at is None or self.connected_at is None:
            return None
        return (self.connected_at - self.requested_at) * 1000

    @property
    def media_connected_ms(self) -> float | None:
        if self.requested_at is None or self.kiosk_media_connected_at is None:
            return None
        return (self.kiosk_media_connected_at - self.requested_at) * 1000

    @property
    def setup_ms(self) -> float | None:
        """Button press to the first remote video frame decoded at the kiosk."""
        if self.requested_at is None or self.kiosk_first_video_at is None:
            return None
        return (self.kiosk_first_video_at - self.requested_at) * 1000


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """Linear interpolation between the closest ranks; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * fraction
    low = math.floor(position)
    high = math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


@dataclass
class SimRun:
    """Calls and errors of one run, filled in by its kiosks and experts."""

    calls_requested: int
    calls: dict[str, CallRecord] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    started_at: float = field(default_factory=time.perf_counter)
    finished_at: float | None = None

    def new_call(self, call: str, kiosk: str, service: str, requested_at: float) -> CallRecord:
        """Record a call a kiosk of this run placed; only such calls count."""
        record = CallRecord(call=call, kiosk=kiosk, service=service, requested_at=requested_at)
        self.calls[call] = record
        return record

    def error(self, text: str) -> None:
        self.errors.append(text)

    @property
    def succeeded(self) -> bool:
        records = self.calls.values()
        return (
            not self.errors
            and len(self.calls) == self.calls_requested
            and all(r.completed and r.media_both_ways for r in records)
        )

    def summary(self) -> dict[str, Any]:
        records = list(self.calls.values())
        setup = [ms for r in records if (ms := r.setup_ms) is not None]
        connected = [ms for r in records if (ms := r.connected_ms) is not None]
        finished_at = self.finished_at if self.finished_at is not None else time.perf_counter()
        return {
            "calls_requested": self.calls_requested,
            "calls_placed": len(records),
            "calls_connected": sum(r.connected_at is not None for r in records),
            "calls_completed": sum(r.completed for r in records),
            "calls_with_media_both_ways": sum(r.media_both_ways for r in records),
            "video_frames_received_by_kiosks": sum(r.kiosk_video_frames for r in records),
            "video_frames_received_by_experts": sum(r.expert_video_frames for r in records),
            "audio_frames_received_by_kiosks": sum(r.kiosk_audio_frames for r in records),
            "audio_frames_received_by_experts": sum(r.expert_audio_frames for r in records),
            "setup_ms_p50": _rounded(percentile(setup, 0.50)),
            "setup_ms_p95": _rounded(percentile(setup, 0.95)),
            "connected_ms_p50": _rounded(percentile(connected, 0.50)),
            "connected_ms_p95": _rounded(percentile(connected, 0.95)),
            "duration_s": round(finished_at - self.started_at, 2),
            "succeeded": self.succeeded,
            "errors": list(self.errors),
        }


@dataclass
class CallQuota:
    """Calls still to place, shared by every kiosk of a run."""

    remaining: int

    def take(self) -> bool:
        if self.remaining <= 0:
            return False
        self.remaining -= 1
        return True


# ---------------------------------------------------------------------------
# Beneficiary numbers
# ---------------------------------------------------------------------------

_CLASS_REPEAT = re.compile(
    r"\^(?:\[(?P<cls>[^\]]+)\]|(?P<digit>\\d))\{(?P<lo>\d+)(?:,(?P<hi>\d+))?\}\$"
)
"""The shapes of pattern this generator understands: ``^[0-9A-Z]{7}$``, ``^\\d{8,10}$``..."""


def _expand_class(body: str) -> str:
    alphabet: list[str] = []
    index = 0
    while index < len(body):
        if index + 2 < len(body) and body[index + 1] == "-":
            alphabet.extend(chr(c) for c in range(ord(body[index]), ord(body[index + 2]) + 1))
            index += 3
        elif body.startswith("\\d", index):
            alphabet.extend("0123456789")
            index += 2
        else:
            alphabet.append(body[index])
            index += 1
    return "".join(alphabet)


def beneficiary_for(service: ServiceInfo, rng: random.Random) -> str:
    """A beneficiary number the service's ``beneficiary_pattern`` accepts."""
    pattern = service.beneficiary_pattern
    if pattern is None:
        return f"SIM{rng.randrange(1_000_000):06d}"
    shape = _CLASS_REPEAT.fullmatch(pattern)
    if shape is not None:
        alphabet = "0123456789" if shape["digit"] else _expand_class(shape["cls"])
        low = int(shape["lo"])
        length = rng.randint(low, int(shape["hi"])) if shape["hi"] else low
        candidate = "".join(rng.choice(alphabet) for _ in range(length))
        if re.fullmatch(pattern, candidate):
            return candidate
    if service.beneficiary_hint and re.fullmatch(pattern, service.beneficiary_hint):
        return service.beneficiary_hint
    raise ValueError(f"no beneficiary number for {service.id}: pattern {pattern!r} not understood")


# ---------------------------------------------------------------------------
# Simulated parties
# ---------------------------------------------------------------------------


async def _exchange_sdp(
    client: SignalingClient, peer: PeerSession, event: RtcSdp, run: SimRun
) -> None:
    match event.description.type:
        case "offer":
            answer = await peer.answer(event.description)
            await client.send(RtcSdp(call=event.call, description=answer))
        case "answer":
            await peer.accept_answer(event.description)
        case other:
            run.error(f"{client.label}: call {event.call}: unexpected SDP {other}")


async def _start_media(client: SignalingClient, connected: CallConnected, fps: int) -> PeerSession:
    peer = PeerSession(ice_servers=connected.ice_servers, fps=fps)
    if connected.initiator:
        offer = await peer.create_offer()
        await client.send(RtcSdp(call=connected.call, description=offer))
    return peer


class SimKiosk:
    """A kiosk that places calls one after another while the shared quota lasts."""

    def __init__(
        self,
        client: SignalingClient,
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
            try:
                reply = await self.client.request(
                    CallRequest, service=service.id, beneficiary=beneficiary_for(service, self._rng)
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
                        await peer.add_remote_candidate(event.candidate)
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
                while not isinstance(resumed := await self.client.next_event(), CallResumed):
                    pass
                await self._end_call(resumed.call, connected=resumed.state == "connected")
                while not (
                    isinstance(ended := await self.client.next_event(), CallEnded)
                    and ended.call == resumed.call
                ):
                    pass
                return True
        return False

    async def _end_call(self, call: str, *, connected: bool) -> None:
        """Hang up or cancel a call this kiosk leaves, so that nobody waits on it.

        What this kiosk last heard of the call may be stale (a waiting call may have been
        answered since), so the other request is tried when the first is refused.
        """
        first, second = (CallHangup, CallCancel) if connected else (CallCancel, CallHangup)
        with contextlib.suppress(ConnectionLost, ConnectionError, TimeoutError):
            async with asyncio.timeout(CLEANUP_TIMEOUT_S):
                try:
                    await self.client.request(first, call=call)
                except ServerError:
                    with contextlib.suppress(ServerError):
                        await self.client.request(second, call=call)

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
        client: SignalingClient,
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
        await self.client.request(ExpertStatusSet, status="available")
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
        with contextlib.suppress(ServerError, ConnectionLost, ConnectionError, TimeoutError):
            async with asyncio.timeout(CLEANUP_TIMEOUT_S):
                await self.client.request(ExpertStatusSet, status="logged_out")

    async def _handle(self, event: ServerMessage, holds: asyncio.TaskGroup) -> None:
        current = self._current
        match event:
            case CallOffered():
                self.idle.clear()
                self._current = _ExpertCall(event.call)
                try:
                    await self.client.request(OfferAccept, call=event.call)
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
                    await self.client.request(CallHangup, call=event.call)
            case ExpertState(state="wrap_up", call=str(call)) if (
                current is None and call not in self._run.calls and call not in self._leftovers
            ):
                await self._finish_leftover_wrap_up(call)
            case RtcSdp() if current and current.peer and event.call == current.call:
                await _exchange_sdp(self.client, current.peer, event, self._run)
            case RtcIce() if current and current.peer and event.call == current.call:
                await current.peer.add_remote_candidate(event.candidate)
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
            await self.client.request(CallHangup, call=call)
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
            await self.client.request(WrapUpDone, call=call, reason=reason)
        except ServerError as exc:
            reasons = exc.details.get("reasons")
            if exc.code == "invalid_visit_reason" and isinstance(reasons, list) and reasons:
                with contextlib.suppress(ServerError):
                    await self.client.request(WrapUpDone, call=call, reason=str(reasons[0]))

    async def _wrap_up(self, event: WrapUpStarted) -> None:
        await self._drop_call()
        reason = event.reasons[0] if event.reasons else "other"
        try:
            await self.client.request(WrapUpDone, call=event.call, reason=reason)
        except ServerError as exc:
            self._run.error(f"{self.client.label}: wrapup.done {event.call}: {exc}")
        else:
            if (record := self._run.calls.get(event.call)) is not None:
                record.wrapped_up = True
        self.idle.set()


# ---------------------------------------------------------------------------
# A whole run
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SimOptions:
    """What one run does; the command line fills it, a bench may build its own."""

    servers: tuple[str, ...]
    """Server base URLs (``http://host:port``); clients are spread over them in turn."""
    kiosks: int = 1
    experts: int = 1
    calls: int = 1
    media_s: float = 2.0
    """Seconds of audio and video each call carries once video reaches the expert."""
    timeout_s: float = 120.0
    fps: int = 30
    loopback_ice: bool | None = None
    """None: offer only 127.0.0.1 when every server is on a loopback address."""
    seed: int | None = None


@dataclass(frozen=True)
class _Identity:
    role: str
    id: str
    token: str


@dataclass(frozen=True)
class _Cast:
    experts: list[_Identity]
    kiosks: list[_Identity]
    served: frozenset[str]
    """Services at least one of the experts serves: the only ones worth calling."""


def _cast(config: Config, options: SimOptions) -> _Cast:
    """The first experts of the configuration, and kiosks that share a service with them."""
    if options.experts > len(config.experts):
        raise ValueError(
            f"{options.experts} experts asked, the configuration has {len(config.experts)}"
        )
    experts = config.experts[: options.experts]
    served = frozenset(s for e in experts for s in e.services)
    kiosks = [k for k in config.kiosks if served.intersection(k.services)][: options.kiosks]
    if len(kiosks) < options.kiosks:
        raise ValueError(
            f"{options.kiosks} kiosks asked, the configuration has {len(kiosks)} "
            "that share a service with the chosen experts"
        )
    expert_tokens = [
        mint_token(
            config, "expert", e.id, services=list(e.services), name=e.name, partner=e.partner
        )
        for e in experts
    ]
    return _Cast(
        experts=[_Identity("expert", e.id, t) for e, t in zip(experts, expert_tokens, strict=True)],
        kiosks=[_Identity("kiosk", k.id, mint_token(config, "kiosk", k.id)) for k in kiosks],
        served=served,
    )


async def run_sim(options: SimOptions, config: Config) -> SimRun:
    """Place ``options.calls`` calls and return what the run saw; never raises for a call."""
    run = SimRun(calls_requested=options.calls)
    loopback = options.loopback_ice
    if loopback is None:
        loopback = all(is_loopback_url(url) for url in options.servers)
    with loopback_host_candidates() if loopback else contextlib.nullcontext():
        try:
            async with asyncio.timeout(options.timeout_s):
                await _drive(options, config, run)
        except TimeoutError:
            run.error(f"run timed out after {options.timeout_s:g} s")
        except (ValueError, OSError, aiohttp.ClientError, ConnectionLost, ServerError) as exc:
            run.error(f"{type(exc).__name__}: {exc}")
    run.finished_at = time.perf_counter()
    return run


async def _drive(options: SimOptions, config: Config, run: SimRun) -> None:
    cast = _cast(config, options)
    rng = random.Random(options.seed)
    quota = CallQuota(options.calls)
    # One sequence for everyone, experts first: with two servers and one party of each,
    # the kiosk and the expert land on different servers.
    server_of = itertools.cycle(options.servers)
    async with aiohttp.ClientSession() as http, contextlib.AsyncExitStack() as clients:

        async def connect(identity: _Identity) -> tuple[SignalingClient, Welcome]:
            client = SignalingClient(
                http,
                next(server_of),
                identity.token,
                label=f"{identity.role} {identity.id}",
                report_error=run.error,
            )
            clients.push_async_callback(client.close)
            return client, await client.connect()

        experts: list[SimExpert] = []
        for identity in cast.experts:
            client, welcome = await connect(identity)
            expert = SimExpert(
                client, identity.id, run=run, media_s=options.media_s, fps=options.fps
            )
            expert.use_catalogue(welcome)
            experts.append(expert)
        kiosks: list[SimKiosk] = []
        for identity in cast.kiosks:
            client, welcome = await connect(identity)
            kiosk = SimKiosk(
                client,
                identity.id,
                run=run,
                quota=quota,
                served_services=cast.served,
                fps=options.fps,
                rng=rng,
            )
            kiosk.use_catalogue(welcome)
            kiosks.append(kiosk)

        await asyncio.gather(*(e.go_available() for e in experts))
        async with asyncio.TaskGroup() as experts_at_work:
            working = [experts_at_work.create_task(_guarded(run, e.client, e.run)) for e in experts]
            async with asyncio.TaskGroup() as kiosks_at_work:
                for kiosk in kiosks:
                    kiosks_at_work.create_task(_guarded(run, kiosk.client, kiosk.run))
            # The last calls may still be in wrap-up when their kiosks are done.
            await asyncio.gather(*(e.idle.wait() for e in experts))
            for task in working:
                task.cancel()
        await asyncio.gather(*(e.log_out() for e in experts))


async def _guarded(run: SimRun, client: SignalingClient, work: Callable[[], Any]) -> None:
    """Run one party; what goes wrong with it is an error of the run, not the end of it.

    Anything a party raises (a lost socket, a refused request, an aiortc error on a bad
    SDP) is what the sim is there to report, so it is caught broadly, here and only here.
    """
    try:
        await work()
    except Exception as exc:
        run.error(f"{client.label}: {type(exc).__name__}: {exc}")


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="visio-sim",
        description="Place real WebRTC calls (aiortc kiosks and experts) through visio-guichet.",
    )
    parser.add_argument(
        "--server",
        dest="servers",
        action="append",
        required=True,
        metavar="URL",
        help="server base URL, e.g. http://127.0.0.1:8080; repeat to spread clients over nodes",
    )
    parser.add_argument("--kiosks", type=_positive_int, default=1)
    parser.add_argument("--experts", type=_positive_int, default=1)
    parser.add_argument("--calls", type=_positive_int, default=1)
    parser.add_argument(
        "--media", type=float, default=2.0, metavar="SECONDS", help="media time of each call"
    )
    parser.add_argument(
        "--config", metavar="PATH", help="configuration the server runs with (identities, keys)"
    )
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object on the last line"
    )
    parser.add_argument("--timeout", type=float, default=120.0, metavar="S", help="whole run")
    parser.add_argument("--fps", type=_positive_int, default=30, help="frame rate of sent video")
    parser.add_argument(
        "--loopback-ice",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="offer only 127.0.0.1 as ICE host candidate (default: when all servers are loopback)",
    )
    parser.add_argument("--seed", type=int, help="seed for beneficiary numbers")
    return parser


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive integer")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    options = SimOptions(
        servers=tuple(args.servers),
        kiosks=args.kiosks,
        experts=args.experts,
        calls=args.calls,
        media_s=args.media,
        timeout_s=args.timeout,
        fps=args.fps,
        loopback_ice=args.loopback_ice,
        seed=args.seed,
    )
    try:
        config = load_config(args.config)
    except ValueError as exc:  # ConfigError says which key is at fault
        print(f"visio-sim: {exc}", file=sys.stderr)
        return 2
    run = asyncio.run(run_sim(options, config))
    summary = run.summary()
    if args.json:
        print(json.dumps(summary))
    else:
        for key, value in summary.items():
            if key != "errors":
                print(f"{key:36} {value}")
        for error in run.errors:
            print(f"error: {error}")
    return 0 if run.succeeded else 1


if __name__ == "__main__":
    raise SystemExit(main())
