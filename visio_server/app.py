"""Composition root: ``create_app(config)`` builds every part; nothing lives in globals."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import socket
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CollectorRegistry

from casefiles.store import CaseStore
from casefiles.stores import FileCaseStore, MemoryCaseStore
from queueing import QueueStore
from queueing.stores import FileQueueStore, MemoryQueueStore
from signaling import LocalBus, MessageBus

from .auth import Authenticator
from .calls import Desk
from .config import Config
from .documents.blobs import BlobStore
from .documents.devices import DeviceRegistry, MemoryDeviceRegistry
from .documents.exporter import make_exporter
from .documents.service import Documents
from .edge import Edge
from .http_api import error_middleware, setup_routes
from .keys import AUTH, CONFIG, DESK, DOCUMENTS, EDGE, METRICS
from .logs import quiet_client_errors
from .metrics import JournalState, Metrics

if TYPE_CHECKING:
    from .cluster import Cluster

__all__ = ["create_app", "make_case_store", "make_store", "node_name"]

log = logging.getLogger(__name__)


def node_name(config: Config) -> str:
    return config.redis.node_id or f"{socket.gethostname()}-{os.getpid()}"


def make_store(config: Config) -> QueueStore:
    storage = config.storage
    if storage.backend == "memory":
        return MemoryQueueStore()
    return FileQueueStore(Path(storage.data_dir), fsync=storage.fsync)


def make_case_store(config: Config, cluster: Cluster | None = None) -> CaseStore:
    """Case files: in Redis with several nodes, else beside the queue's files (or in
    memory with the memory backend)."""
    if cluster is not None:
        from casefiles.stores.redis_store import RedisCaseStore  # only with Redis

        return RedisCaseStore(cluster.client, prefix=config.redis.prefix)
    storage = config.storage
    if storage.backend == "memory":
        return MemoryCaseStore()
    return FileCaseStore(Path(storage.data_dir) / "cases", fsync=storage.fsync)


def _document_folders(config: Config) -> tuple[Path, Path, Path | None]:
    """Where documents and directory exports go, and a folder to remove at the end
    (the memory backend keeps nothing across runs, so its folder is temporary)."""
    settings, storage = config.documents, config.storage
    scratch = None
    if storage.backend == "memory" and not (settings.shared_dir and settings.export_dir):
        scratch = Path(tempfile.mkdtemp(prefix="visio-documents-"))
    base = scratch or Path(storage.data_dir)
    blobs = Path(settings.shared_dir) if settings.shared_dir else base / "documents"
    export = Path(settings.export_dir) if settings.export_dir else base / "export"
    return blobs, export, scratch


def _device_registry(config: Config, cluster: Cluster | None) -> DeviceRegistry:
    if cluster is None:
        return MemoryDeviceRegistry()
    from .documents.devices_redis import RedisDeviceRegistry  # only with Redis

    stale_s = max(config.redis.node_cutoff_s, 6.0)
    return RedisDeviceRegistry(cluster.client, config.redis.prefix, stale_s=stale_s)


def create_app(
    config: Config,
    *,
    store: QueueStore | None = None,
    registry: CollectorRegistry | None = None,
    clock: Callable[[], float] = time.time,
) -> web.Application:
    quiet_client_errors()
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
    blobs_dir, export_dir, scratch = _document_folders(config)
    documents = Documents(
        config,
        lambda: desk.machine,
        make_case_store(config, cluster),
        BlobStore(blobs_dir, fsync=config.storage.fsync),
        _device_registry(config, cluster),
        bus,
        metrics,
        make_exporter(config.documents, export_dir, config.storage.fsync),
        clock,
        status_changed=desk.status_changed,
    )
    desk.on_call_announced = documents.call_announced
    desk.show_devices(documents.known_devices)
    metrics.watch_devices(documents.known_devices)
    auth = Authenticator(config)
    edge = Edge(config, desk, auth, bus, metrics, documents)
    metrics.watch(
        lambda: desk.machine,
        edge.counts,
        clock,
        lambda: JournalState(desk.store_ok, desk.ledger.entry, desk.ledger.conflicts),
    )
    app[CONFIG], app[DESK], app[EDGE], app[AUTH], app[METRICS] = config, desk, edge, auth, metrics
    app[DOCUMENTS] = documents
    setup_routes(app, edge.handle)
    if cluster is not None:
        app.cleanup_ctx.append(cluster.context)
    app.cleanup_ctx.append(_run_desk)
    app.cleanup_ctx.append(_run_documents)
    if scratch is not None:
        app.on_cleanup.append(lambda app: asyncio.to_thread(shutil.rmtree, scratch, True))
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


async def _run_documents(app: web.Application) -> AsyncIterator[None]:
    documents = app[DOCUMENTS]
    runner = asyncio.create_task(documents.run(), name="documents")
    try:
        yield
    finally:
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner
        await documents.close()


async def _close_connections(app: web.Application) -> None:
    await app[EDGE].close_all()
