"""The Redis parts of a multi-node deployment, made and closed in one place.

Only this module (with the Redis store and bus it assembles) knows about Redis; the
embedded default never imports it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError

from queueing.stores.redis import RedisQueueStore
from signaling.redis_bus import RedisBus

from .config import Config

__all__ = ["Cluster", "connect"]


def connect(url: str, **options: Any) -> Redis:
    """A client for ``redis://``, ``rediss://``, ``unix://`` or, to follow a Sentinel
    failover, ``redis+sentinel://host:26379,host2:26379/<master name>[/<db>]``."""
    # Short socket timeouts: a node must notice a Redis outage in about a second,
    # refuse new requests with a typed error and keep its WebSockets open.
    # A pooled connection that was idle while Redis restarted fails its next command
    # once; try again on a fresh one. Not after a timeout: the command may have run.
    retry = Retry(NoBackoff(), 1, supported_errors=(ConnectionError,))
    options = {"socket_connect_timeout": 1.0, "socket_timeout": 2.0, "retry": retry, **options}
    parts = urlsplit(url)
    if parts.scheme != "redis+sentinel":
        return Redis.from_url(url, **options)
    hosts = []
    for host in parts.netloc.rpartition("@")[2].split(","):
        name, _, port = host.partition(":")
        hosts.append((name, int(port or 26379)))
    master, _, db = parts.path.strip("/").partition("/")
    sentinel = Sentinel(  # type: ignore[no-untyped-call]
        hosts,
        sentinel_kwargs={"socket_connect_timeout": 1.0, "socket_timeout": 2.0},
        password=parts.password,
        db=int(db or 0),
        **options,
    )
    client: Redis = sentinel.master_for(master)
    return client


class Cluster:
    def __init__(self, config: Config) -> None:
        settings = config.redis
        # Short socket timeouts: a node must notice a Redis outage in about a second,
        # refuse new requests with a typed error and keep its WebSockets open.
        self.client = connect(settings.url, health_check_interval=settings.heartbeat_s * 5)
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
