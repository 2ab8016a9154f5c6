"""The message bus of a multi-node deployment: one Redis pub/sub channel for all nodes.

Every node listens on the channel from its start and delivers what it hears to its own
subscribers of the addressed party, so a message published on any node reaches the node
that holds the party, with no subscription to race against a connection that has just
arrived. A node hears its own publications through Redis too, which keeps one delivery
path and one order. Pub/sub keeps nothing: a node cut off from Redis misses what was
published meanwhile, which is why the queue's own events do not travel here (every
node replays them from the shared journal) and only call-to-call relays do. Those are
a few messages per call set-up, so sending each to every node costs little.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import msgspec
from redis.asyncio import Redis
from redis.exceptions import RedisError

from .bus import Deliver, LocalBus, Subscription, not_cancelled
from .codec import decode_server, encode
from .errors import Unavailable
from .messages import Message

__all__ = ["RedisBus"]

log = logging.getLogger(__name__)

_RETRY_S = (0.2, 0.5, 1.0, 2.0)


class _Envelope(msgspec.Struct):
    to: str
    m: msgspec.Raw


_envelope = msgspec.json.Decoder(_Envelope)


class RedisBus:
    def __init__(self, client: Redis, *, prefix: str = "visio") -> None:
        self.client = client
        self._channel = "{" + prefix + "}:bus"
        self._local = LocalBus()
        self._task: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()
        self.connected = False

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="redis-bus")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._listening.wait(), 5)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def publish(self, address: str, message: Message) -> int:
        envelope = '{"to":' + msgspec.json.encode(address).decode() + ',"m":' + encode(message)
        try:
            return int(await self.client.publish(self._channel, envelope + "}"))
        except (RedisError, OSError) as exc:
            raise Unavailable("the message could not be passed on; please try again") from exc

    async def publish_here(self, address: str, message: Message) -> int:
        return await self._local.publish(address, message)

    def subscribe(self, address: str, deliver: Deliver) -> Subscription:
        return self._local.subscribe(address, deliver)

    def has_subscribers(self, address: str) -> bool:
        return self._local.has_subscribers(address)

    # ------------------------------------------------------------------ listening

    async def _run(self) -> None:
        failures = 0
        while not_cancelled():
            try:
                await self._listen()
            except (RedisError, OSError) as exc:
                self.connected = False
                delay = _RETRY_S[min(failures, len(_RETRY_S) - 1)]
                failures += 1
                log.warning("message bus lost Redis (%s); again in %.1f s", exc, delay)
                await asyncio.sleep(delay)

    async def _listen(self) -> None:
        pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(self._channel)
            self.connected = True
            self._listening.set()
            while not_cancelled():
                message = await pubsub.get_message(timeout=1.0)
                if message is None or message["type"] != "message":
                    continue
                try:
                    envelope = _envelope.decode(message["data"])
                    decoded = decode_server(envelope.m)
                except (msgspec.DecodeError, msgspec.ValidationError):
                    log.warning("unreadable message on the bus dropped")
                    continue
                await self._local.publish(envelope.to, decoded)
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call]
