"""One aiortc peer connection that sends synthetic media and counts what it decodes.

Rules this module keeps:

1. SDP, ICE candidates and ICE servers go in and out as the plain dictionaries of the
   WebRTC spec (``RTCSessionDescriptionInit``, ``RTCIceCandidateInit``, ``RTCIceServer``),
   so this package needs nothing from the wire protocol; callers convert.
2. A peer connection never gets a STUN or TURN server that nobody named: aiortc falls
   back to a public STUN server when given none, which costs seconds per call on a
   closed network.
3. Times are ``time.perf_counter()`` values, comparable with the caller's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator, Sequence
from typing import Literal, NotRequired, TypedDict

import aioice.ice
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError
from aiortc.sdp import candidate_from_sdp

from .tracks import GradientVideoTrack, SineAudioTrack

__all__ = [
    "IceCandidateInit",
    "IceServerInit",
    "PeerSession",
    "SessionDescriptionInit",
    "loopback_host_candidates",
]


class SessionDescriptionInit(TypedDict):
    """An SDP offer or answer, as ``RTCSessionDescription`` serialises it."""

    type: Literal["offer", "answer", "pranswer", "rollback"]
    sdp: str


class IceCandidateInit(TypedDict):
    """One trickled candidate, as ``RTCIceCandidate.toJSON()`` gives it."""

    candidate: str
    sdpMid: NotRequired[str | None]
    sdpMLineIndex: NotRequired[int | None]
    usernameFragment: NotRequired[str | None]


class IceServerInit(TypedDict):
    """An entry of ``RTCConfiguration.iceServers``."""

    urls: list[str]
    username: NotRequired[str | None]
    credential: NotRequired[str | None]


@contextlib.contextmanager
def loopback_host_candidates() -> Iterator[None]:
    """Make aioice offer 127.0.0.1 as its only host candidate while the block runs.

    aioice leaves 127.0.0.1 out when it gathers host addresses, so on a loopback-only
    network an aiortc peer offers no candidate anyone can reach. When every peer is on
    this machine, 127.0.0.1 is the one address that always reaches it. This changes the
    whole process for the duration of the block: use it around a run, not per call.
    """
    original = aioice.ice.get_host_addresses

    def loopback_only(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return ["127.0.0.1"] if use_ipv4 else []

    aioice.ice.get_host_addresses = loopback_only
    try:
        yield
    finally:
        aioice.ice.get_host_addresses = original


class PeerSession:
    """One aiortc peer connection: sends a tone and a gradient, counts what it decodes."""

    def __init__(
        self, *, ice_servers: Sequence[IceServerInit] = (), fps: int = 30, send: bool = True
    ) -> None:
        self._pc = RTCPeerConnection(
            RTCConfiguration(
                iceServers=[
                    RTCIceServer(
                        urls=s["urls"], username=s.get("username"), credential=s.get("credential")
                    )
                    for s in ice_servers
                ]
            )
        )
        # A receive-only participant (a supervisor) offers to receive and sends nothing.
        self._outgoing: list[MediaStreamTrack] = (
            [SineAudioTrack(), GradientVideoTrack(fps)] if send else []
        )
        for track in self._outgoing:
            self._pc.addTrack(track)
        if not send:
            for kind in ("audio", "video"):
                self._pc.addTransceiver(kind, direction="recvonly")
        self._receivers: list[asyncio.Task[None]] = []
        self.video_frames = 0
        self.audio_frames = 0
        self.connected_at: float | None = None
        """When ICE and DTLS were up."""
        self.first_video_at: float | None = None
        """When the first remote video frame was decoded."""
        self.first_audio_at: float | None = None
        self.first_video = asyncio.Event()
        self.first_audio = asyncio.Event()
        self._pc.on("track", self._on_track)
        self._pc.on("connectionstatechange", self._on_connection_state)

    async def create_offer(self) -> SessionDescriptionInit:
        await self._pc.setLocalDescription(await self._pc.createOffer())
        return {"type": "offer", "sdp": self._pc.localDescription.sdp}

    async def answer(self, offer: SessionDescriptionInit) -> SessionDescriptionInit:
        await self._pc.setRemoteDescription(RTCSessionDescription(sdp=offer["sdp"], type="offer"))
        await self._pc.setLocalDescription(await self._pc.createAnswer())
        return {"type": "answer", "sdp": self._pc.localDescription.sdp}

    async def accept_answer(self, answer: SessionDescriptionInit) -> None:
        await self._pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))

    async def add_remote_candidate(self, candidate: IceCandidateInit | None) -> None:
        """Add a trickled candidate; the end-of-candidates marker needs nothing from aiortc."""
        if candidate is None or not candidate["candidate"]:
            return
        parsed = candidate_from_sdp(candidate["candidate"].removeprefix("candidate:"))
        parsed.sdpMid = candidate.get("sdpMid")
        parsed.sdpMLineIndex = candidate.get("sdpMLineIndex")
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
