"""The ``MessageBus`` contract, run against the local bus and the Redis bus.

Two ``RedisBus`` objects on one Redis stand for two nodes; the local bus serves one
process, so there "the other node" is the same bus. Redis delivery is asynchronous:
rather than sleeping, a test publishes a last marker message and waits for it, since a
node delivers what it hears in order.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from redis.asyncio import Redis

from signaling import LocalBus, MessageBus, Unavailable, address
from signaling.messages import CallPosition, IceCandidate, Message, RtcIce
from signaling.redis_bus import RedisBus
from tests.cluster_support import RedisServer

KIOSK = address("kiosk", "k1")
EXPERT = address("expert", "e1")


@dataclass
class Nodes:
    here: MessageBus
    there: MessageBus
    redis: RedisServer | None = None

    @property
    def distinct(self) -> bool:
        return self.here is not self.there


class Inbox:
    def __init__(self) -> None:
        self.messages: list[Message] = []
        self._arrived = asyncio.Event()

    def __call__(self, message: Message) -> None:
        self.messages.append(message)
        self._arrived.set()

    async def wait_for(self, message: Message, timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while message not in self.messages:
                self._arrived.clear()
                await self._arrived.wait()


def ice(n: int) -> RtcIce:
    return RtcIce(call="c1", candidate=IceCandidate(f"candidate:{n} 1 udp 1 10.0.0.1 {n} typ host"))


def marker(n: int = 0) -> CallPosition:
    return CallPosition(call="marker", position=n)


@pytest.fixture(params=["local", "redis"])
def bus_kind(request: pytest.FixtureRequest) -> tuple[str, RedisServer | None]:
    # Looked up only for the Redis case, so the local bus never starts a server.
    redis = request.getfixturevalue("redis_server") if request.param == "redis" else None
    return request.param, redis


@contextlib.asynccontextmanager
async def two_redis_nodes(redis: RedisServer) -> AsyncIterator[Nodes]:
    clients = [Redis.from_url(redis.url) for _ in range(2)]
    buses = [RedisBus(client, prefix="bus-contract") for client in clients]
    try:
        for bus in buses:
            await bus.start()
        yield Nodes(buses[0], buses[1], redis)
    finally:
        for bus in buses:
            await bus.close()
        for client in clients:
            await client.aclose()


@pytest.fixture
async def nodes(bus_kind: tuple[str, RedisServer | None]) -> AsyncIterator[Nodes]:
    _, redis = bus_kind
    if redis is None:
        bus = LocalBus()
        yield Nodes(bus, bus)
        return
    async with two_redis_nodes(redis) as started:
        yield started


@pytest.fixture
async def redis_nodes(redis_server: RedisServer) -> AsyncIterator[Nodes]:
    async with two_redis_nodes(redis_server) as started:
        yield started


async def test_publish_reaches_subscribers_on_every_node_once_and_in_order(nodes: Nodes) -> None:
    local, remote = Inbox(), Inbox()
    nodes.here.subscribe(KIOSK, local)
    nodes.there.subscribe(KIOSK, remote)
    sent: list[Message] = [ice(n) for n in range(50)]

    for message in [*sent, marker()]:
        await nodes.here.publish(KIOSK, message)
    await local.wait_for(marker())
    await remote.wait_for(marker())

    assert local.messages == [*sent, marker()]
    assert remote.messages == [*sent, marker()]


async def test_publish_reaches_only_the_addressed_party(nodes: Nodes) -> None:
    kiosk, expert = Inbox(), Inbox()
    nodes.there.subscribe(KIOSK, kiosk)
    nodes.there.subscribe(EXPERT, expert)

    await nodes.here.publish(KIOSK, ice(1))
    await nodes.here.publish(EXPERT, marker())
    await expert.wait_for(marker())

    assert kiosk.messages == [ice(1)]
    assert expert.messages == [marker()]


async def test_publish_here_reaches_only_the_subscribers_of_this_node(nodes: Nodes) -> None:
    local, remote = Inbox(), Inbox()
    nodes.here.subscribe(KIOSK, local)
    nodes.there.subscribe(KIOSK, remote)

    delivered = await nodes.here.publish_here(KIOSK, ice(1))

    assert local.messages == [ice(1)]  # delivered before publish_here returns
    assert delivered == (1 if nodes.distinct else 2)

    await nodes.here.publish(KIOSK, marker())
    await remote.wait_for(marker())
    assert remote.messages == ([marker()] if nodes.distinct else [ice(1), marker()])


async def test_closed_subscription_receives_nothing_more(nodes: Nodes) -> None:
    closed, open_ = Inbox(), Inbox()
    subscription = nodes.there.subscribe(KIOSK, closed)
    nodes.there.subscribe(KIOSK, open_)
    await nodes.here.publish(KIOSK, ice(1))
    await closed.wait_for(ice(1))

    subscription.close()
    subscription.close()  # closing twice is harmless
    await nodes.here.publish(KIOSK, ice(2))
    await open_.wait_for(ice(2))

    assert closed.messages == [ice(1)]
    assert open_.messages == [ice(1), ice(2)]


async def test_has_subscribers_follows_subscriptions_on_this_node(nodes: Nodes) -> None:
    assert not nodes.here.has_subscribers(KIOSK)

    first = nodes.here.subscribe(KIOSK, Inbox())
    second = nodes.here.subscribe(KIOSK, Inbox())
    assert nodes.here.has_subscribers(KIOSK)
    assert not nodes.here.has_subscribers(EXPERT)
    if nodes.distinct:
        assert not nodes.there.has_subscribers(KIOSK)

    first.close()
    assert nodes.here.has_subscribers(KIOSK)
    second.close()
    assert not nodes.here.has_subscribers(KIOSK)


async def test_publish_without_any_subscriber_is_not_an_error(nodes: Nodes) -> None:
    counted = await nodes.here.publish(KIOSK, ice(1))

    # The local bus counts subscribers, the Redis bus the nodes that heard it.
    assert counted == (2 if nodes.distinct else 0)


# --------------------------------------------------------------------------- Redis only


async def test_redis_bus_refuses_to_publish_while_redis_is_down_and_recovers(
    redis_nodes: Nodes,
) -> None:
    nodes = redis_nodes
    assert nodes.redis is not None
    remote = Inbox()
    nodes.there.subscribe(KIOSK, remote)

    await nodes.redis.stop()
    with pytest.raises(Unavailable):
        await nodes.here.publish(KIOSK, ice(1))
    await nodes.redis.start()

    # Both the publishing client and the listeners reconnect by themselves.
    async with asyncio.timeout(10):
        attempt = 0
        while True:
            attempt += 1
            with contextlib.suppress(Unavailable):
                await nodes.here.publish(KIOSK, marker(attempt))
            with contextlib.suppress(TimeoutError):
                await remote.wait_for(marker(attempt), timeout=0.2)
                break
    remote.messages.clear()
    await nodes.here.publish(KIOSK, ice(2))
    await nodes.here.publish(KIOSK, marker())
    await remote.wait_for(marker())

    assert remote.messages == [ice(2), marker()]
