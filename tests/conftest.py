from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.cluster_support import Node, RedisServer, cluster_config
from tests.support import JsonClient, RunningServer, start_server, write_test_config


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[RunningServer]:
    """An in-process server on a free loopback port, with the test configuration."""
    running = await start_server(write_test_config(tmp_path))
    yield running
    await running.stop()


@pytest.fixture
async def connect(server: RunningServer) -> AsyncIterator[Callable[..., Awaitable[JsonClient]]]:
    """Open authenticated clients: ``await connect("kiosk", "kiosk-1")``."""
    clients: list[JsonClient] = []

    async def open_client(
        role: str | None = None, sub: str | None = None, **claims: Any
    ) -> JsonClient:
        client = await JsonClient.connect(server.ws_url)
        clients.append(client)
        if role is not None and sub is not None:
            welcome = await client.hello(server.token(role, sub, **claims))
            assert welcome["type"] == "welcome", welcome
        return client

    yield open_client
    for client in clients:
        await client.close()


@pytest.fixture
async def redis_server(tmp_path: Path) -> AsyncIterator[RedisServer]:
    """A private redis-server without persistence on a free port; ``persistent_redis``
    is the same with an append-only file."""
    redis = RedisServer(tmp_path / "redis")
    await redis.start()
    yield redis
    await redis.stop()


@pytest.fixture
async def persistent_redis(tmp_path: Path) -> AsyncIterator[RedisServer]:
    redis = RedisServer(tmp_path / "redis-aof", persistence=True)
    await redis.start()
    yield redis
    await redis.stop()


@pytest.fixture
async def start_nodes(
    tmp_path: Path, redis_server: RedisServer
) -> AsyncIterator[Callable[..., Awaitable[list[Node]]]]:
    """Start server nodes sharing ``redis_server``: ``await start_nodes(3, kiosks=200)``;
    extra keywords go to ``cluster_config``. Every node started is stopped at the end."""
    started: list[Node] = []

    async def start(count: int, **config: Any) -> list[Node]:
        path = cluster_config(tmp_path, **config)
        nodes = [
            Node(
                f"node-{chr(ord('a') + len(started) + i)}",
                path,
                redis_server.url,
                tmp_path / f"node-{len(started) + i}.log",
            )
            for i in range(count)
        ]
        started.extend(nodes)
        await asyncio.gather(*(node.start() for node in nodes))
        return nodes

    yield start
    await asyncio.gather(*(node.stop() for node in started))
