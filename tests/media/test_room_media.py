"""Calls as rooms with real media: aiortc participants (``visio_sim.mesh.CallMesh``) in
a call through the server, one peer connection per pair of participants.

Each participant's events are all read by one task: the room's SDP, ICE and
membership changes go to its mesh (made when ``call.connected`` arrives), and every
event is kept so that a test can look at what arrived, in order, without taking it
from the mesh. The peers offer only 127.0.0.1 as ICE host candidate
(``loopback_host_candidates``): aioice leaves it out on its own, and these tests stay
on loopback. Video is 320x240 at 12 fps to spare the CPU.

The helpers here also serve the multi-node test (``tests/cluster/test_cluster_rooms.py``):
a ``Site`` is anything with a WebSocket URL that mints tokens, an in-process server or
a node of a cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import pytest

from media import loopback_host_candidates
from signaling.messages import (
    Ack,
    CallConnected,
    CallEnded,
    CallHangup,
    CallInterpreter,
    CallInvite,
    CallJoin,
    CallOffered,
    CallParticipants,
    CallQueued,
    CallRequest,
    ExpertStatusSet,
    Message,
    OfferAccept,
    RtcSdp,
)
from tests.support import RunningServer
from visio_client import NEW_ID, Client
from visio_sim.room import RoomParty

M = TypeVar("M", bound=Message)

FPS = 12
MEDIA_TIMEOUT_S = 20.0
"""First frames come within a second on an idle machine; the margin is for a busy one."""
EVENT_TIMEOUT_S = 10.0

KIOSK, EXPERT, LEA, SUPERVISOR = (
    "kiosk:kiosk-1",
    "expert:expert-1",
    "interpreter:interp-1",
    "supervisor:super-caf",
)
EXPERT_CLAIMS = {"services": ["caf"], "name": "Camille Expert", "partner": "caf"}
INTERPRETER_CLAIMS = {
    "services": ["interpretes"],
    "languages": ["lsf", "fr"],
    "name": "Léa Interprète",
    "partner": "interpretes",
}
SUPERVISOR_CLAIMS = {"partner": "caf", "name": "Superviseur CAF"}


class Site(Protocol):
    """Where a participant signs in: ``RunningServer`` or a cluster ``Node``."""

    @property
    def ws_url(self) -> str: ...

    def token(self, role: str, sub: str, **claims: Any) -> str: ...


class Room:
    """Every participant a test signs in, closed whatever happens."""

    def __init__(self) -> None:
        self.participants: list[RoomParty] = []

    async def sign_in(
        self, site: Site, role: str, sub: str, *, available: bool = False, **claims: Any
    ) -> RoomParty:
        client = await Client.connect(site.ws_url, token=site.token(role, sub, **claims))
        participant = RoomParty(client, name=f"{role} {sub}", fps=FPS, timeout_s=EVENT_TIMEOUT_S)
        self.participants.append(participant)
        if available:
            await client.request(ExpertStatusSet(id=NEW_ID, status="available"), Ack)
        return participant

    async def close(self) -> None:
        for participant in self.participants:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(participant.close(), 10)


@dataclass
class Call:
    call: str
    kiosk: RoomParty
    expert: RoomParty
    interpreter: RoomParty | None = None


async def until(condition: Callable[[], bool], what: Callable[[], str], timeout_s: float) -> None:
    """Poll ``condition`` every 50 ms (frame counts have no event to wait on); on
    timeout fail with ``what()``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"not within {timeout_s} s: {what()}")


def receiving(pairs: list[tuple[RoomParty, str]], video: int = 1, audio: int = 1) -> bool:
    """Every receiver decoded at least ``video`` and ``audio`` frames from its sender."""
    return all(v >= video and a >= audio for v, a in (r.frames_from(key) for r, key in pairs))


def frame_counts(pairs: list[tuple[RoomParty, str]]) -> str:
    return ", ".join(f"{r.name} <- {key}: {r.frames_from(key)}" for r, key in pairs)


async def media_flows(pairs: list[tuple[RoomParty, str]], video: int = 1, audio: int = 1) -> None:
    await until(
        lambda: receiving(pairs, video, audio),
        lambda: f"(video, audio) frames decoded: {frame_counts(pairs)}",
        MEDIA_TIMEOUT_S,
    )


async def two_party_call(room: Room, kiosk_at: Site, expert_at: Site) -> Call:
    """kiosk-1 calls CAF; expert-1 answers; media flows both ways."""
    expert = await room.sign_in(expert_at, "expert", "expert-1", available=True, **EXPERT_CLAIMS)
    kiosk = await room.sign_in(kiosk_at, "kiosk", "kiosk-1")
    queued = await kiosk.client.request(
        CallRequest(id=NEW_ID, service="caf", beneficiary="1234567"), CallQueued
    )
    await expert.seen(CallOffered, call=queued.call)
    await expert.client.request(OfferAccept(id=NEW_ID, call=queued.call), Ack)
    for side, offer_to in ((kiosk, []), (expert, [KIOSK])):
        connected = await side.seen(CallConnected, call=queued.call)
        assert connected.offer_to == offer_to, side.sequence()
    await media_flows([(kiosk, EXPERT), (expert, KIOSK)])
    return Call(queued.call, kiosk, expert)


async def interpreter_joins(room: Room, call: Call, interpreter_at: Site) -> RoomParty:
    """The expert asks for an LSF interpreter; interp-1 accepts and offers to both."""
    interpreter = await room.sign_in(
        interpreter_at, "interpreter", "interp-1", available=True, **INTERPRETER_CLAIMS
    )
    call.interpreter = interpreter
    invite = CallInvite(id=NEW_ID, call=call.call, role="interpreter", language="lsf")
    await call.expert.client.request(invite, Ack)
    offered = await interpreter.seen(CallOffered, joins=call.call)
    assert offered.language == "lsf" and offered.service == "interpretes"
    await interpreter.client.request(OfferAccept(id=NEW_ID, call=offered.call), Ack)

    connected = await interpreter.seen(CallConnected, call=call.call)
    assert connected.you == LEA and connected.send_media
    assert [p.key for p in connected.participants] == [KIOSK, EXPERT, LEA]
    assert connected.offer_to == [KIOSK, EXPERT], interpreter.sequence()
    for side in (call.kiosk, call.expert):
        joined = await side.seen(
            CallParticipants, lambda e: e.party.key == LEA, call=call.call, change="joined"
        )
        assert joined.offer_to == [], "the newcomer makes the offers"
        await side.seen(CallInterpreter, call=call.call, state="joined")
    return interpreter


def all_pairs(*participants: RoomParty) -> list[tuple[RoomParty, str]]:
    return [(r, s.key) for r in participants for s in participants if r is not s]


def directions(sdp: str) -> list[str]:
    """The direction attribute of each media section, in order."""
    sections = re.split(r"\r?\nm=", sdp)[1:]
    found = []
    for section in sections:
        match = re.search(r"^a=(sendrecv|sendonly|recvonly|inactive)\r?$", section, re.M)
        found.append(match.group(1) if match else "sendrecv")
    return found


@contextlib.asynccontextmanager
async def open_room() -> AsyncIterator[Room]:
    """A room whose peers offer 127.0.0.1 only, closed with everyone in it on the way out."""
    with loopback_host_candidates():
        opened = Room()
        try:
            yield opened
        finally:
            await opened.close()


@pytest.fixture
async def room() -> AsyncIterator[Room]:
    async with open_room() as opened:
        yield opened


# ---------------------------------------------------------------------- tests


@pytest.mark.media
@pytest.mark.timeout(90)
async def test_three_parties_each_receive_the_two_others_video_and_audio(
    server: RunningServer, room: Room
) -> None:
    call = await two_party_call(room, server, server)
    kiosk_to_expert = call.kiosk.peer(EXPERT)

    interpreter = await interpreter_joins(room, call, server)

    pairs = all_pairs(call.kiosk, call.expert, interpreter)
    await media_flows(pairs, video=FPS // 2, audio=10)
    for receiver, sender in pairs:
        video, audio = receiver.frames_from(sender)
        assert video > 0 and audio > 0, (receiver.name, sender, video, audio)
    # Two connections each, and the kiosk's with the expert was not touched.
    for participant in (call.kiosk, call.expert, interpreter):
        assert participant.mesh is not None and len(participant.mesh.peers) == 2
    assert call.kiosk.peer(EXPERT) is kiosk_to_expert


@pytest.mark.media
@pytest.mark.timeout(90)
async def test_supervisor_receives_kiosk_and_expert_and_sends_nothing(
    server: RunningServer, room: Room
) -> None:
    call = await two_party_call(room, server, server)
    supervisor = await room.sign_in(server, "supervisor", "super-caf", **SUPERVISOR_CLAIMS)

    await supervisor.client.request(CallJoin(id=NEW_ID, call=call.call), Ack)

    connected = await supervisor.seen(CallConnected, call=call.call)
    assert connected.send_media is False
    assert connected.offer_to == [KIOSK, EXPERT], supervisor.sequence()
    for side in (call.kiosk, call.expert):
        joined = await side.seen(
            CallParticipants, lambda e: e.party.key == SUPERVISOR, change="joined"
        )
        assert joined.party.sends_media is False
    watched = [(supervisor, KIOSK), (supervisor, EXPERT)]
    await media_flows(watched, video=2 * FPS, audio=50)  # a couple of seconds' worth

    # The supervisor asked to receive only, and each side answered that it only sends.
    for side in (call.kiosk, call.expert):
        offer = await side.seen(RtcSdp, lambda e: e.description.type == "offer", sender=SUPERVISOR)
        assert directions(offer.description.sdp) == ["recvonly", "recvonly"]
        answer = await supervisor.seen(
            RtcSdp, lambda e: e.description.type == "answer", sender=side.key
        )
        assert directions(answer.description.sdp) == ["sendonly", "sendonly"]
        assert side.frames_from(SUPERVISOR) == (0, 0), "nothing comes from a supervisor"
        assert side.peer(SUPERVISOR).connected_at is not None
    # The kiosk and the expert still see and hear each other.
    await media_flows([(call.kiosk, EXPERT), (call.expert, KIOSK)], video=2 * FPS, audio=50)


@pytest.mark.media
@pytest.mark.timeout(90)
async def test_interpreter_leaves_and_the_call_goes_on_with_media(
    server: RunningServer, room: Room
) -> None:
    call = await two_party_call(room, server, server)
    interpreter = await interpreter_joins(room, call, server)
    await media_flows(all_pairs(call.kiosk, call.expert, interpreter))

    await interpreter.client.request(CallHangup(id=NEW_ID, call=call.call), Ack)

    ended = await interpreter.seen(CallEnded, call=call.call)
    assert ended.reason == "left", interpreter.sequence()
    for side in (call.kiosk, call.expert):
        left = await side.seen(
            CallParticipants, lambda e: e.party.key == LEA, call=call.call, change="left"
        )
        assert [p.key for p in left.participants] == [KIOSK, EXPERT]
        assert side.mesh is not None and list(side.mesh.peers) == [
            EXPERT if side is call.kiosk else KIOSK
        ]
        assert side.find(CallEnded) == [], side.sequence()
    # Media keeps coming between the kiosk and the expert after the leave.
    pairs = [(call.kiosk, EXPERT), (call.expert, KIOSK)]
    before = {key: r.frames_from(key) for r, key in pairs}
    await until(
        lambda: all(
            r.frames_from(key)[0] >= before[key][0] + FPS
            and r.frames_from(key)[1] >= before[key][1] + 25
            for r, key in pairs
        ),
        lambda: f"frames before the leave {before}, now: {frame_counts(pairs)}",
        MEDIA_TIMEOUT_S,
    )

    # Still a connected call: the kiosk's hang-up ends it for both.
    await call.kiosk.client.request(CallHangup(id=NEW_ID, call=call.call), Ack)
    for side in (call.kiosk, call.expert):
        ended = await side.seen(CallEnded, call=call.call)
        assert ended.outcome == "answered"
    assert len(interpreter.find(CallEnded)) == 1, interpreter.sequence()
