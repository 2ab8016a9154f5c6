"""Composition root: ``create_app(config)`` builds every part; nothing lives in globals."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from aiohttp import web
from prometheus_client import CollectorRegistry

from queueing import QueueStore
from queueing.stores import FileQueueStore, MemoryQueueStore
from signaling import LocalBus, MessageBus

from .auth import Authenticator
from .calls import Desk
from .config import Config
from .edge import Edge
from .http_api import error_middleware, setup_routes
from .keys import AUTH, CONFIG, DESK, EDGE, METRICS
from .metrics import JournalState, Metrics

__all__ = ["create_app", "make_store", "node_name"]


def node_name(config: Config) -> str:
    return config.redis.node_id or f"{socket.gethostname()}-{os.getpid()}"


def make_store(config: Config) -> QueueStore:
    storage = config.storage
    if storage.backend == "memory":
        return MemoryQueueStore()
    return FileQueueStore(Path(storage.data_dir), fsync=storage.fsync)


def create_app(
    config: Config,
    *,
    store: QueueStore | None = None,
    registry: CollectorRegistry | None = None,
    clock: Callable[[], float] = time.time,
) -> web.Application:
    app = web.Application(middlewares=[error_middleware], client_max_size=1024**2)
    metrics = Metrics(registry or CollectorRegistry(), (s.service_level_s for s in config.services))
    node = node_name(config)
    cluster = None
    if config.redis.url and store is None:
        from .cluster import Cluster  # the embedded default does without the Redis client

        cluster = Cluster(config)
    bus: MessageBus = cluster.bus if cluster else LocalBus()
    if cluster is not None:
        desk = Desk(config, cluster.store, bus, metrics, clock, node=node, nodes=cluster.store)
    else:
        desk = Desk(config, store or make_store(config), bus, metrics, clock, node=node)
    auth = Authenticator(config)
    edge = Edge(config, desk, auth, bus, metrics)
    metrics.watch(
        lambda: desk.machine,
        edge.counts,
        clock,
        lambda: JournalState(desk.store_ok, desk.ledger.entry, desk.ledger.conflicts),
    )
    app[CONFIG], app[DESK], app[EDGE], app[AUTH], app[METRICS] = config, desk, edge, auth, metrics
    setup_routes(app, edge.handle)
    if cluster is not None:
        app.cleanup_ctx.append(cluster.context)
    app.cleanup_ctx.append(_run_desk)
    app.on_shutdown.append(_close_connections)
    return app


async def _run_desk(app: web.Application) -> AsyncIterator[None]:
    desk = app[DESK]
    await desk.start()
    runner = asyncio.create_task(desk.run(), name="desk")
    try:
        yield
    finally:
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner
        await desk.stop()
        await desk.store.close()


async def _close_connections(app: web.Application) -> None:
    await app[EDGE].close_all()
