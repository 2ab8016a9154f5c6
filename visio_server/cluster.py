"""The Redis parts of a multi-node deployment, made and closed in one place.

Only this module (with the Redis store and bus it assembles) knows about Redis; the
embedded default never imports it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web
from redis.asyncio import Redis

from queueing.stores.redis import RedisQueueStore
from signaling.redis_bus import RedisBus

from .config import Config

__all__ = ["Cluster"]


class Cluster:
    def __init__(self, config: Config) -> None:
        settings = config.redis
        # Short socket timeouts: a node must notice a Redis outage in about a second,
        # refuse new requests with a typed error and keep its WebSockets open.
        self.client = Redis.from_url(
            settings.url,
            socket_connect_timeout=1.0,
            socket_timeout=2.0,
            health_check_interval=settings.heartbeat_s * 5,
        )
        self.store = RedisQueueStore(
            self.client, prefix=settings.prefix, journal_keep=settings.journal_keep
        )
        self.bus = RedisBus(self.client, prefix=settings.prefix)

    async def context(self, app: web.Application) -> AsyncIterator[None]:
        await self.bus.start()
        try:
            yield
        finally:
            await self.bus.close()
            await self.client.aclose()
