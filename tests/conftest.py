from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support import RunningServer, WsClient, start_server, write_test_config


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[RunningServer]:
    """An in-process server on a free loopback port, with the test configuration."""
    running = await start_server(write_test_config(tmp_path))
    yield running
    await running.stop()


@pytest.fixture
async def connect(server: RunningServer) -> AsyncIterator[Callable[..., Awaitable[WsClient]]]:
    """Open authenticated clients: ``await connect("kiosk", "kiosk-1")``."""
    clients: list[WsClient] = []

    async def open_client(
        role: str | None = None, sub: str | None = None, **claims: Any
    ) -> WsClient:
        client = await WsClient.connect(server.ws_url)
        clients.append(client)
        if role is not None and sub is not None:
            welcome = await client.hello(server.token(role, sub, **claims))
            assert welcome["type"] == "welcome", welcome
        return client

    yield open_client
    for client in clients:
        await client.close()
