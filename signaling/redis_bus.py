"""The message bus of a multi-node deployment: Redis pub/sub, one channel per address.

A node subscribes to the channel of an address while one of its connections listens
there, so a message published on any node reaches the node that holds the party. A
node hears its own publications through Redis too, which keeps one delivery path and
one order. Pub/sub keeps nothing: a node that is cut off from Redis misses what was
published meanwhile, which is why the queue's own events do not travel here (every
node replays them from the shared journal) and only call-to-call relays do.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from redis.asyncio import Redis
from redis.exceptions import RedisError

from .bus import Deliver, LocalBus, Subscription
from .codec import decode_server, encode
from .errors import Unavailable
from .messages import Message

__all__ = ["RedisBus"]

log = logging.getLogger(__name__)

_RETRY_S = (0.2, 0.5, 1.0, 2.0)


class RedisBus:
    def __init__(self, client: Redis, *, prefix: str = "visio", node: str = "node") -> None:
        self.client = client
        self._prefix = "{" + prefix + "}:bus:"
        self._control = self._prefix + "node:" + node
        self._local = LocalBus()
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.connected = False

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="redis-bus")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def publish(self, address: str, message: Message) -> int:
        try:
            return int(await self.client.publish(self._prefix + address, encode(message)))
        except (RedisError, OSError) as exc:
            raise Unavailable("the message could not be passed on; please try again") from exc

    async def publish_here(self, address: str, message: Message) -> int:
        return await self._local.publish(address, message)

    def subscribe(self, address: str, deliver: Deliver) -> Subscription:
        subscription = self._local.subscribe(address, deliver)
        self._changed.set()
        return _Tracked(subscription, self._changed)

    def has_subscribers(self, address: str) -> bool:
        return self._local.has_subscribers(address)

    # ------------------------------------------------------------------ listening

    async def _run(self) -> None:
        failures = 0
        while True:
            try:
                await self._listen()
            except (RedisError, OSError) as exc:
                self.connected = False
                delay = _RETRY_S[min(failures, len(_RETRY_S) - 1)]
                failures += 1
                log.warning("message bus lost Redis (%s); again in %.1f s", exc, delay)
                await asyncio.sleep(delay)
            else:
                failures = 0

    async def _listen(self) -> None:
        pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(self._control)
            self.connected = True
            subscribed: set[str] = set()
            while True:
                if self._changed.is_set():
                    self._changed.clear()
                    wanted = {self._prefix + a for a in self._local.addresses()}
                    if wanted - subscribed:
                        await pubsub.subscribe(*(wanted - subscribed))
                    if subscribed - wanted:
                        await pubsub.unsubscribe(*(subscribed - wanted))
                    subscribed = wanted
                message = await pubsub.get_message(timeout=0.05)
                if message is None or message["type"] != "message":
                    continue
                channel = message["channel"]
                channel = channel.decode() if isinstance(channel, bytes) else channel
                try:
                    decoded = decode_server(message["data"])
                except Exception:
                    log.warning("unreadable message on %s dropped", channel)
                    continue
                await self._local.publish(channel.removeprefix(self._prefix), decoded)
        finally:
            self._changed.set()  # a new connection must subscribe everything again
            with contextlib.suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call]


class _Tracked:
    def __init__(self, subscription: Subscription, changed: asyncio.Event) -> None:
        self._subscription, self._changed = subscription, changed

    def close(self) -> None:
        self._subscription.close()
        self._changed.set()
