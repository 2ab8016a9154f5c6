"""Shared pieces of the multi-node tests: parties signed in on chosen nodes, the shared
event log and journal read straight from Redis, and nodes on a Redis of the test's choice.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from queueing.stores.redis import RedisQueueStore
from tests.cluster_support import Node, RedisServer, cluster_config
from tests.support import JsonClient

StartNodes = Callable[..., Awaitable[list[Node]]]
Rows = list[dict[str, Any]]

SERVICE = "caf"
REASON = "Prestations"


def kiosk_id(number: int) -> str:
    return f"kiosk-{number:03d}"


def expert_id(number: int) -> str:
    return f"expert-{number:02d}"


class Parties:
    """Every client a test opens, so that all of them are closed whatever happens."""

    def __init__(self) -> None:
        self.clients: list[JsonClient] = []

    async def open(self, node: Node, role: str, sub: str) -> tuple[JsonClient, dict[str, Any]]:
        client = await JsonClient.connect(node.ws_url)
        self.clients.append(client)
        welcome = await client.hello(node.token(role, sub))
        assert welcome["type"] == "welcome", welcome
        return client, welcome

    async def kiosk(self, node: Node, kiosk: str) -> JsonClient:
        client, _ = await self.open(node, "kiosk", kiosk)
        return client

    async def expert(self, node: Node, expert: str, *, available: bool) -> JsonClient:
        client, _ = await self.open(node, "expert", expert)
        await client.expect("expert.state")
        if available:
            await set_status(client, "available")
        return client

    async def experts(
        self, nodes: Sequence[Node], count: int, *, available: bool, first: int = 1
    ) -> list[JsonClient]:
        """Experts ``expert-<first>``... signed in on the nodes in turn."""
        return [
            await self.expert(nodes[i % len(nodes)], expert_id(first + i), available=available)
            for i in range(count)
        ]

    async def resume_kiosk(self, node: Node, kiosk: str) -> tuple[JsonClient, dict[str, Any]]:
        """The kiosk connects again (through ``node``) and finds its call."""
        client = await self.kiosk(node, kiosk)
        resumed = await client.expect("call.resumed", timeout=10)
        return client, resumed

    async def close(self) -> None:
        for client in self.clients:
            # A client of a killed node may have nobody left to answer its close.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.close(), 5)


async def send_ok(
    client: JsonClient,
    message: dict[str, Any],
    reply: str = "ack",
    *,
    patient: bool = False,
    timeout: float = 10,
) -> dict[str, Any]:
    """Send a request that must get ``reply``. ``patient``: a ``service_unavailable``
    refusal (the protocol says nothing changed: try again) is sent again until
    ``timeout``."""
    async with asyncio.timeout(timeout):
        while True:
            got = await client.request(message, timeout=timeout)
            if patient and got.get("code") == "service_unavailable":
                await asyncio.sleep(0.2)
                continue
            assert got["type"] == reply, (message, got)
            return got


async def set_status(expert: JsonClient, status: str) -> None:
    await send_ok(expert, {"type": "expert.status", "status": status})
    await expert.expect("expert.state", status=status)


async def request_call(kiosk: JsonClient, *, patient: bool = False) -> dict[str, Any]:
    message = {"type": "call.request", "service": SERVICE, "beneficiary": "1"}
    return await send_ok(kiosk, message, "call.queued", patient=patient)


async def answer(
    expert: JsonClient, call: str, *, patient: bool = False, timeout: float = 10
) -> dict[str, Any]:
    """The next offer at ``expert`` must be ``call``: accept it; the expert's call.connected."""
    offer = await expert.expect("call.offered", timeout=timeout)
    assert offer["call"] == call, (offer, call)
    await send_ok(expert, {"type": "offer.accept", "call": call}, patient=patient)
    return await expert.expect("call.connected", timeout=timeout, call=call)


async def hang_up_and_wrap_up(expert: JsonClient, call: str, *, patient: bool = False) -> None:
    await send_ok(expert, {"type": "call.hangup", "call": call}, patient=patient)
    await expert.expect("wrapup.started", call=call)
    done = {"type": "wrapup.done", "call": call, "reason": REASON}
    await send_ok(expert, done, patient=patient)


# ---------------------------------------------------------------------- the shared store


async def read_events(redis_url: str) -> Rows:
    """The cluster's event log, oldest first (stream order is journal order)."""
    client = Redis.from_url(redis_url)
    try:
        return await RedisQueueStore(client).read_events()
    finally:
        await client.aclose()


async def read_journal(redis_url: str) -> Rows:
    client = Redis.from_url(redis_url)
    try:
        return [record for _, record in await RedisQueueStore(client).read_journal(0)]
    finally:
        await client.aclose()


async def wait_for_events(
    redis_url: str, done: Callable[[Rows], bool], timeout: float = 10
) -> Rows:
    """Poll the event log until ``done`` holds; the last rows read."""
    return await _poll(read_events, redis_url, done, timeout)


async def wait_for_journal(
    redis_url: str, done: Callable[[Rows], bool], timeout: float = 10
) -> Rows:
    """Poll the journal's command records until ``done`` holds."""
    return await _poll(read_journal, redis_url, done, timeout)


async def _poll(
    read: Callable[[str], Awaitable[Rows]],
    redis_url: str,
    done: Callable[[Rows], bool],
    timeout: float,
) -> Rows:
    rows: Rows = []
    try:
        async with asyncio.timeout(timeout):
            while True:
                rows = await read(redis_url)
                if done(rows):
                    return rows
                await asyncio.sleep(0.1)
    except TimeoutError:
        kinds = [(row["kind"], row.get("call")) for row in rows[-30:]]
        raise AssertionError(f"the store did not get there in {timeout} s: {kinds}") from None


def of_kind(rows: Rows, kind: str, calls: Sequence[str] | None = None) -> Rows:
    return [r for r in rows if r["kind"] == kind and (calls is None or r.get("call") in calls)]


def calls_of(rows: Rows, kind: str) -> list[str]:
    return [str(r["call"]) for r in of_kind(rows, kind)]


# ---------------------------------------------------------------------- nodes


class Cluster:
    """Nodes on a Redis the test chose (``start_nodes`` always uses ``redis_server``)."""

    def __init__(self, folder: Path, redis: RedisServer) -> None:
        self.folder = folder
        self.redis = redis
        self.nodes: list[Node] = []

    async def start(self, count: int, **config: Any) -> list[Node]:
        path = cluster_config(self.folder, **config)
        nodes = [
            Node(
                f"node-{chr(ord('a') + len(self.nodes) + i)}",
                path,
                self.redis.url,
                self.folder / f"node-{len(self.nodes) + i}.log",
            )
            for i in range(count)
        ]
        self.nodes.extend(nodes)
        await asyncio.gather(*(node.start() for node in nodes))
        return nodes

    async def stop(self) -> None:
        await asyncio.gather(*(node.stop() for node in self.nodes))


def logs(nodes: Sequence[Node]) -> str:
    """The tail of each node's log, for an assertion message."""
    return "\n".join(f"--- {n.name}\n{n.log()[-3000:]}" for n in nodes)
