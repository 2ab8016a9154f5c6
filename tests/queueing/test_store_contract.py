"""The ``QueueStore`` contract, run against every store: in memory, in a folder, in Redis.

The ledger relies on exactly these rules to keep several nodes in step, so each store
must give the same answers. "Another writer" is a second ``RedisQueueStore`` on the
same Redis (another node); a folder or a process-local store has one writer by design,
so there the same object writes twice, which still exercises the numbering rules.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from queueing import QueueStore, Recovered, StoreConflict, StoreLost
from queueing.stores import FileQueueStore, MemoryQueueStore
from queueing.stores.redis import RedisQueueStore
from tests.cluster_support import RedisServer

PREFIX = "contract"


class Backend:
    """Makes writers of one store and closes whatever it made."""

    def __init__(self, kind: str, folder: Path, redis: RedisServer | None) -> None:
        self.kind = kind
        self.folder = folder
        self.redis = redis
        self.clients: list[Redis] = []
        self.stores: list[QueueStore] = []

    def client(self) -> Redis:
        assert self.redis is not None
        client = Redis.from_url(self.redis.url)
        self.clients.append(client)
        return client

    def writer(self) -> QueueStore:
        """A writer of the store; not loaded yet."""
        if self.kind == "redis":
            store: QueueStore = RedisQueueStore(self.client(), prefix=PREFIX)
        elif self.stores:
            return self.stores[0]
        elif self.kind == "memory":
            store = MemoryQueueStore()
        else:
            store = FileQueueStore(self.folder)
        self.stores.append(store)
        return store

    async def loaded(self) -> QueueStore:
        store = self.writer()
        await store.load()
        return store

    async def close(self) -> None:
        for store in self.stores:
            await store.close()
        for client in self.clients:
            await client.aclose()


@pytest.fixture(params=["memory", "file", "redis"])
def backend_kind(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    # Looked up only for the Redis case, so the other stores never start a server.
    redis = request.getfixturevalue("redis_server") if request.param == "redis" else None
    return Backend(request.param, tmp_path / "queue", redis)


@pytest.fixture
async def backend(backend_kind: Backend) -> AsyncIterator[Backend]:
    yield backend_kind
    await backend_kind.close()


def command(n: int) -> dict[str, Any]:
    return {"kind": "KioskLost", "at": float(n), "kiosk": f"k{n}", "link": ""}


def event(at: float, tag: str = "") -> dict[str, Any]:
    return {"kind": "PartyLost", "at": at, "call": f"c{at:g}{tag}", "party": "kiosk"}


async def fill(store: QueueStore, count: int, first: int = 1) -> None:
    for n in range(first, first + count):
        await store.append(n, command(n), [event(float(n))])


# --------------------------------------------------------------------------- journal


async def test_empty_store_loads_nothing(backend: Backend) -> None:
    store = backend.writer()

    assert await store.load() == Recovered(None, [], 0)
    assert await store.read_journal(0) == []
    assert await store.read_events() == []


async def test_appended_entries_load_back_in_order_with_the_last_number(backend: Backend) -> None:
    store = await backend.loaded()
    await fill(store, 3)

    recovered = await backend.writer().load()

    assert recovered == Recovered(None, [command(1), command(2), command(3)], 3)


async def test_read_journal_returns_only_the_entries_after_the_given_one(backend: Backend) -> None:
    store = await backend.loaded()
    await fill(store, 4)

    assert await store.read_journal(0) == [(n, command(n)) for n in range(1, 5)]
    assert await store.read_journal(2) == [(3, command(3)), (4, command(4))]
    assert await store.read_journal(4) == []


# --------------------------------------------------------------------------- event log


async def test_events_come_back_in_order_within_half_open_windows(backend: Backend) -> None:
    store = await backend.loaded()
    await store.append(1, command(1), [event(10.0), event(20.0)])
    await store.append(2, command(2), [])
    await store.append(3, command(3), [event(30.0), event(40.0)])

    async def times(since: float | None = None, until: float | None = None) -> list[float]:
        return [row["at"] for row in await store.read_events(since, until)]

    assert await store.read_events() == [event(10.0), event(20.0), event(30.0), event(40.0)]
    assert await times(since=20.0) == [20.0, 30.0, 40.0]
    assert await times(until=30.0) == [10.0, 20.0]
    assert await times(20.0, 40.0) == [20.0, 30.0]
    assert await times(25.0, 26.0) == []


# --------------------------------------------------------------------------- numbering


async def test_append_out_of_turn_is_refused_with_the_last_entry_and_writes_nothing(
    backend: Backend,
) -> None:
    store = await backend.loaded()
    with pytest.raises(StoreConflict) as on_empty:
        await store.append(2, command(2), [event(2.0)])
    await store.append(1, command(1), [event(1.0)])

    with pytest.raises(StoreConflict) as ahead:
        await store.append(3, command(3), [event(3.0)])
    with pytest.raises(StoreConflict) as taken:
        await store.append(1, command(9), [event(9.0)])

    assert (on_empty.value.last_entry, ahead.value.last_entry, taken.value.last_entry) == (0, 1, 1)
    assert await backend.writer().load() == Recovered(None, [command(1)], 1)
    assert await store.read_journal(0) == [(1, command(1))]
    assert await store.read_events() == [event(1.0)]


async def test_two_writers_racing_for_one_entry_one_wins_and_the_other_follows(
    backend: Backend,
) -> None:
    first, second = await backend.loaded(), await backend.loaded()
    mine, theirs = command(1), {**command(1), "kiosk": "other"}

    outcomes = await asyncio.gather(
        first.append(1, mine, [event(1.0, "a")]),
        second.append(1, theirs, [event(1.0, "b")]),
        return_exceptions=True,
    )

    winners = [i for i, outcome in enumerate(outcomes) if outcome is None]
    losers = [outcome for outcome in outcomes if isinstance(outcome, StoreConflict)]
    assert len(winners) == 1
    assert [loser.last_entry for loser in losers] == [1]
    won_with, won_event = [(mine, event(1.0, "a")), (theirs, event(1.0, "b"))][winners[0]]
    assert await first.read_journal(0) == [(1, won_with)]
    assert await second.read_events() == [won_event]

    # The loser learns the winner's entry and takes the next number.
    loser = second if winners[0] == 0 else first
    assert await loser.read_journal(0) == [(1, won_with)]
    await loser.append(2, command(2), [])
    assert (await backend.writer().load()).last_entry == 2


async def test_wait_journal_returns_at_once_what_is_already_there(backend: Backend) -> None:
    store = await backend.loaded()
    await fill(store, 2)

    assert await store.wait_journal(0, 5.0) == [(1, command(1)), (2, command(2))]


async def test_wait_journal_returns_an_entry_another_writer_appends_meanwhile(
    backend: Backend,
) -> None:
    reader, writer = await backend.loaded(), await backend.loaded()
    await writer.append(1, command(1), [])

    async def append_soon() -> None:
        await asyncio.sleep(0.1)
        await writer.append(2, command(2), [])

    appending = asyncio.create_task(append_soon())
    entries = await reader.wait_journal(1, 10.0)
    await appending

    assert entries == [(2, command(2))]


async def test_wait_journal_gives_nothing_when_no_entry_comes(backend: Backend) -> None:
    store = await backend.loaded()
    await fill(store, 1)

    assert await store.wait_journal(1, 0.2) == []


# --------------------------------------------------------------------------- snapshots


async def test_compacted_store_loads_the_snapshot_and_the_entries_after_it(
    backend: Backend,
) -> None:
    store = await backend.loaded()
    await fill(store, 3)
    snapshot = {"seq": 2, "calls": ["c1", "c2"]}

    await store.compact(snapshot, 2)
    await fill(store, 1, first=4)
    recovered = await backend.writer().load()

    assert recovered == Recovered(snapshot, [command(3), command(4)], 4)
    assert await store.read_journal(2) == [(3, command(3)), (4, command(4))]
    assert [row["at"] for row in await store.read_events()] == [1.0, 2.0, 3.0, 4.0]


async def test_seed_of_a_store_holding_entries_is_refused_and_changes_nothing(
    backend: Backend,
) -> None:
    store = await backend.loaded()
    await fill(store, 2)

    assert await store.seed({"seq": 7}, 5) is False
    assert await backend.writer().load() == Recovered(None, [command(1), command(2)], 2)


async def test_seed_of_an_empty_store_starts_it_from_the_snapshot(backend: Backend) -> None:
    store = await backend.loaded()

    assert await store.seed({"seq": 7}, 5) is True
    await store.append(6, command(6), [event(6.0)])

    assert await backend.writer().load() == Recovered({"seq": 7}, [command(6)], 6)
    assert await store.read_events() == [event(6.0)]


async def test_seed_over_the_last_entry_moves_the_store_on_to_the_snapshot(
    backend: Backend,
) -> None:
    store = await backend.loaded()
    await fill(store, 2)

    assert await store.seed({"seq": 7}, 5, over=2) is True
    await store.append(6, command(6), [event(6.0)])

    assert await backend.writer().load() == Recovered({"seq": 7}, [command(6)], 6)
    assert await store.read_journal(5) == [(6, command(6))]
    assert [row["at"] for row in await store.read_events()] == [1.0, 2.0, 6.0]


async def test_seed_over_another_last_entry_is_refused_and_changes_nothing(
    backend: Backend,
) -> None:
    store = await backend.loaded()
    await fill(store, 2)

    assert await store.seed({"seq": 7}, 5, over=1) is False
    assert await store.seed({"seq": 7}, 5, over=3) is False
    with pytest.raises(StoreConflict):
        await store.append(6, command(6), [])
    assert await backend.writer().load() == Recovered(None, [command(1), command(2)], 2)


# --------------------------------------------------------------------------- Redis only


@pytest.fixture
async def redis_client(redis_server: RedisServer) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


async def test_redis_append_after_the_data_was_lost_raises_store_lost(redis_client: Redis) -> None:
    store = RedisQueueStore(redis_client, prefix=PREFIX)
    await store.load()
    await fill(store, 2)

    await redis_client.flushall()

    with pytest.raises(StoreLost):
        await store.append(3, command(3), [])
    assert await store.read_journal(0) == []


async def writers_after_data_loss(
    client: Redis, written: int
) -> tuple[RedisQueueStore, RedisQueueStore]:
    """Two writers that loaded the store, the first wrote ``written`` entries, then
    Redis lost everything (as a restart without persistence does)."""
    first, second = (RedisQueueStore(client, prefix=PREFIX) for _ in range(2))
    await first.load()
    await second.load()
    await fill(first, written)
    await client.flushall()
    return first, second


async def test_redis_emptied_store_is_seeded_once_and_the_seeder_writes_on(
    redis_client: Redis,
) -> None:
    store, other = await writers_after_data_loss(redis_client, 2)

    assert await store.seed({"seq": 2}, 2) is True
    assert await other.seed({"seq": 1}, 1) is False
    await store.append(3, command(3), [event(3.0)])

    assert await other.load() == Recovered({"seq": 2}, [command(3)], 3)


async def test_redis_writer_fails_with_store_lost_once_another_writer_seeded(
    redis_client: Redis,
) -> None:
    first, second = await writers_after_data_loss(redis_client, 1)

    assert await second.seed({"seq": 1}, 1) is True

    with pytest.raises(StoreLost):
        await first.append(2, command(2), [])
    assert await second.read_journal(1) == []
    # Loading again adopts the seeded history, so appending works again.
    assert await first.load() == Recovered({"seq": 1}, [], 1)
    await first.append(2, command(2), [])


async def test_redis_seed_over_from_a_writer_of_a_replaced_history_is_refused(
    redis_client: Redis,
) -> None:
    first, second = await writers_after_data_loss(redis_client, 1)
    assert await second.seed({"seq": 1}, 1) is True

    # The entry number matches, but the history is another writer's.
    assert await first.seed({"seq": 2}, 2, over=1) is False
    assert await second.load() == Recovered({"seq": 1}, [], 1)


async def test_redis_journal_and_events_survive_a_kill_and_restart_with_persistence(
    persistent_redis: RedisServer,
) -> None:
    before, after = Redis.from_url(persistent_redis.url), Redis.from_url(persistent_redis.url)
    try:
        store = RedisQueueStore(before, prefix=PREFIX)
        await store.load()
        await fill(store, 3)
        await store.compact({"seq": 1}, 1)

        await persistent_redis.stop()
        await persistent_redis.start()

        reopened = RedisQueueStore(after, prefix=PREFIX)
        assert await reopened.load() == Recovered({"seq": 1}, [command(2), command(3)], 3)
        assert [row["at"] for row in await reopened.read_events()] == [1.0, 2.0, 3.0]
        # Same epoch: the writer from before the restart goes on where it was, once its
        # client has found its old connection dead.
        with contextlib.suppress(RedisConnectionError):
            await before.ping()
        await store.append(4, command(4), [])
        assert await reopened.read_journal(3) == [(4, command(4))]
    finally:
        await before.aclose()
        await after.aclose()


async def test_redis_heartbeat_keeps_a_node_alive_until_its_ttl_runs_out(
    redis_client: Redis,
) -> None:
    store = RedisQueueStore(redis_client, prefix=PREFIX)
    other_prefix = RedisQueueStore(redis_client, prefix=PREFIX + "-other")

    await store.beat("node-a", 0.2)
    await store.beat("node-b", 30.0)

    assert await store.alive(["node-a", "node-b", "node-c"]) == {"node-a", "node-b"}
    assert await other_prefix.alive(["node-a", "node-b"]) == set()
    assert await store.alive([]) == set()
    await asyncio.sleep(0.4)
    assert await store.alive(["node-a", "node-b"]) == {"node-b"}
