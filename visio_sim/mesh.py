"""A participant's media in a call room: one peer connection per other participant.

Rules this module keeps:

1. The server says whom to offer to (``call.connected.offer_to``, and
   ``call.participants.offer_to`` when someone joins); everybody else's offer is
   answered. SDP and ICE name their addressee (``to``) and come back with their
   ``sender``, which picks the pair's connection.
2. A participant that sends no media (a supervisor) still offers, to receive only.
3. A participant who leaves takes its connection with it; the others are untouched.
"""

from __future__ import annotations

import asyncio
import contextlib

from media.peer import IceCandidateInit, IceServerInit, PeerSession, SessionDescriptionInit
from signaling.messages import (
    CallConnected,
    CallParticipants,
    IceCandidate,
    IceServer,
    RtcIce,
    RtcSdp,
    ServerMessage,
    SessionDescription,
)
from visio_client import Client

__all__ = ["CallMesh", "to_candidate", "to_ice_servers", "to_media", "to_wire"]


def to_media(description: SessionDescription) -> SessionDescriptionInit:
    return {"type": description.type, "sdp": description.sdp}


def to_wire(description: SessionDescriptionInit) -> SessionDescription:
    return SessionDescription(type=description["type"], sdp=description["sdp"])


def to_candidate(candidate: IceCandidate | None) -> IceCandidateInit | None:
    if candidate is None:
        return None
    return {
        "candidate": candidate.candidate,
        "sdpMid": candidate.sdpMid,
        "sdpMLineIndex": candidate.sdpMLineIndex,
        "usernameFragment": candidate.usernameFragment,
    }


def to_ice_servers(servers: list[IceServer]) -> list[IceServerInit]:
    return [{"urls": s.urls, "username": s.username, "credential": s.credential} for s in servers]


class CallMesh:
    """The peer connections of one participant, keyed by the other participant."""

    def __init__(self, client: Client, connected: CallConnected, *, fps: int = 15) -> None:
        self.client = client
        self.call = connected.call
        self.you = connected.you
        self.send_media = connected.send_media
        self.fps = fps
        self._ice_servers = to_ice_servers(connected.ice_servers)
        self.peers: dict[str, PeerSession] = {}
        self._first_offers = list(connected.offer_to)

    async def start(self) -> None:
        """Offer to everyone the server named."""
        for key in self._first_offers:
            await self._offer(key)

    async def handle(self, event: ServerMessage) -> bool:
        """Take the room's part of an event; False when it was not about this room."""
        match event:
            case RtcSdp(call=self.call, sender=str(sender)):
                await self._description(sender, event.description)
            case RtcIce(call=self.call, sender=str(sender)) if sender in self.peers:
                await self.peers[sender].add_remote_candidate(to_candidate(event.candidate))
            case CallParticipants(call=self.call):
                if event.change == "left" and event.party.key in self.peers:
                    await self.peers.pop(event.party.key).close()
                for key in event.offer_to:
                    if key not in self.peers:
                        await self._offer(key)
            case _:
                return False
        return True

    async def pump(self, until: asyncio.Event | None = None) -> None:
        """Handle this room's events until ``until`` is set or the connection ends."""
        while until is None or not until.is_set():
            try:
                event = await self.client.wait_for(self._mine, timeout_s=0.2)
            except TimeoutError:
                continue
            await self.handle(event)

    def _mine(self, event: ServerMessage) -> bool:
        return isinstance(event, RtcSdp | RtcIce | CallParticipants) and event.call == self.call

    async def close(self) -> None:
        peers, self.peers = list(self.peers.values()), {}
        for peer in peers:
            with contextlib.suppress(Exception):
                await peer.close()

    def _new_peer(self) -> PeerSession:
        return PeerSession(ice_servers=self._ice_servers, fps=self.fps, send=self.send_media)

    async def _offer(self, key: str) -> None:
        peer = self.peers[key] = self._new_peer()
        offer = await peer.create_offer()
        await self.client.send(RtcSdp(call=self.call, description=to_wire(offer), to=key))

    async def _description(self, sender: str, description: SessionDescription) -> None:
        if description.type == "offer":
            if sender in self.peers:  # the other side started over: so do we
                await self.peers.pop(sender).close()
            peer = self.peers[sender] = self._new_peer()
            answer = await peer.answer(to_media(description))
            await self.client.send(RtcSdp(call=self.call, description=to_wire(answer), to=sender))
        elif description.type == "answer" and sender in self.peers:
            await self.peers[sender].accept_answer(to_media(description))
