"""A participant of a call room driven by a program: its events read by one task, its
media by a ``CallMesh``, and waits on what it received.

Rules this module keeps:

1. One task reads the connection: SDP, ICE and membership must reach the mesh even
   while the program waits for something else, so nothing is skipped or dropped.
2. Every event is kept (unless ``on_event`` took it), so a wait may find an event that
   came before it was asked for.
3. A wait that fails says what the participant received, in order: the message
   sequence is what tells a server bug from a slow machine.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

from media.peer import PeerSession
from signaling.messages import (
    CallConnected,
    CallParticipants,
    Message,
    RtcSdp,
    ServerMessage,
)
from visio_client import Client

from .mesh import CallMesh

__all__ = ["RoomParty", "RoomWaitFailed", "describe"]

M = TypeVar("M", bound=Message)


class RoomWaitFailed(AssertionError):
    """A wait of a ``RoomParty`` ran out, or its connection failed; the message lists
    what it received."""


def describe(event: ServerMessage) -> str:
    """One event in a line, for the message sequence shown when a wait fails."""
    fields = [str(type(event).__struct_config__.tag)]
    for name in ("call", "change", "state", "sender", "to", "reason", "offer_to", "outcome"):
        value = getattr(event, name, None)
        if value not in (None, "", []):
            fields.append(f"{name}={value}")
    if isinstance(event, CallParticipants):
        fields.append(f"party={event.party.key}")
    if isinstance(event, RtcSdp):
        fields.append(event.description.type)
    return " ".join(fields)


class RoomParty:
    """A signed-in client, its mesh once connected (when it has ``media``), and every
    event it received."""

    def __init__(
        self,
        client: Client,
        *,
        name: str | None = None,
        media: bool = True,
        fps: int = 15,
        timeout_s: float = 20.0,
        on_event: Callable[[ServerMessage], bool] | None = None,
    ) -> None:
        self.client = client
        self.name = name or client.label
        self.media = media
        self.fps = fps
        self.timeout_s = timeout_s
        """How long a wait lasts unless told otherwise."""
        self.on_event = on_event
        """Sees each event first; an event it returns True for is not kept."""
        self.mesh: CallMesh | None = None
        self.events: list[ServerMessage] = []
        self.failure: BaseException | None = None
        self._changed = asyncio.Condition()
        self._reader = asyncio.create_task(self._read())

    @property
    def key(self) -> str:
        assert self.client.welcome is not None
        return f"{self.client.welcome.role}:{self.client.welcome.identity}"

    async def _read(self) -> None:
        try:
            async for event in self.client.events():
                if self.on_event is not None and self.on_event(event):
                    continue
                self.events.append(event)
                if isinstance(event, CallConnected) and self.media and self.mesh is None:
                    self.mesh = CallMesh(self.client, event, fps=self.fps)
                    await self.mesh.start()
                elif self.mesh is not None:
                    await self.mesh.handle(event)
                async with self._changed:
                    self._changed.notify_all()
        except Exception as exc:  # shown by the next wait, not lost in a task
            self.failure = exc
            async with self._changed:
                self._changed.notify_all()

    def find(
        self, kind: type[M], where: Callable[[M], bool] = lambda _: True, **fields: object
    ) -> list[M]:
        return [
            e
            for e in self.events
            if isinstance(e, kind)
            and all(getattr(e, k) == v for k, v in fields.items())
            and where(e)
        ]

    async def seen(
        self,
        kind: type[M],
        where: Callable[[M], bool] = lambda _: True,
        *,
        timeout_s: float | None = None,
        **fields: object,
    ) -> M:
        """The first event of ``kind`` with these ``fields`` received so far, or the next one."""
        await self._until(
            lambda: bool(self.find(kind, where, **fields)),
            f"no {kind.__struct_config__.tag} {fields}",
            timeout_s,
        )
        return self.find(kind, where, **fields)[0]

    async def connection_with(self, key: str, timeout_s: float | None = None) -> PeerSession:
        """The peer connection with ``key``, once an offer or an answer made it."""
        await self._until(
            lambda: self.mesh is not None and key in self.mesh.peers,
            f"no connection with {key}",
            timeout_s,
        )
        assert self.mesh is not None
        return self.mesh.peers[key]

    def peer(self, key: str) -> PeerSession:
        assert self.mesh is not None, f"{self.name} is not in a call: {self.sequence()}"
        assert key in self.mesh.peers, f"{self.name} has no connection with {key}"
        return self.mesh.peers[key]

    def frames_from(self, key: str) -> tuple[int, int]:
        """(video, audio) frames decoded from ``key``; (0, 0) without a connection."""
        if self.mesh is None or key not in self.mesh.peers:
            return 0, 0
        peer = self.mesh.peers[key]
        return peer.video_frames, peer.audio_frames

    def sequence(self) -> list[str]:
        return [describe(e) for e in self.events]

    async def _until(
        self, condition: Callable[[], bool], missing: str, timeout_s: float | None
    ) -> None:
        limit = self.timeout_s if timeout_s is None else timeout_s
        try:
            async with asyncio.timeout(limit), self._changed:
                await self._changed.wait_for(lambda: condition() or self.failure is not None)
        except TimeoutError:
            raise RoomWaitFailed(
                f"{self.name}: {missing} in {limit} s; received: {self.sequence()}"
            ) from None
        if self.failure is not None:
            raise RoomWaitFailed(f"{self.name}: reading events failed") from self.failure

    async def close(self) -> None:
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)
        if self.mesh is not None:
            await self.mesh.close()
        await self.client.close()
