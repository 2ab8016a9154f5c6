"""Several nodes, each with its own ``Ledger``, over one shared store.

A node is a ledger, the lock that the desk holds around each commit, and a record of
what it was told about the other nodes' entries (the ``replayed`` callback). The shared
store is one ``MemoryQueueStore`` object or one Redis seen through a
``RedisQueueStore`` per node. Time is explicit: every commit gets a fixed clock.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from redis.asyncio import Redis

import visio_server.calls.ledger as ledger_module
from queueing import (
    CallEnded,
    CallId,
    CancelCall,
    Command,
    Event,
    ExpertId,
    ExpertSignIn,
    JournalEntry,
    KioskId,
    Outcome,
    QueueError,
    QueueMachine,
    QueueStore,
    Recovered,
    RequestCall,
)
from queueing.stores import MemoryQueueStore
from queueing.stores.redis import RedisQueueStore
from tests.cluster_support import RedisServer
from tests.queueing.helpers import CAF, kiosks, machine, only, positions, service
from visio_server.calls.ledger import TIMER_RECORD, Ledger, StoreUnavailable

KIOSKS = 90
MAX_WAIT_S = 60.0
PREFIX = "ledger"


def new_machine() -> QueueMachine:
    return machine([service("caf", max_wait_s=MAX_WAIT_S)], kiosks(KIOSKS, ("caf",)))


def sign_in(expert: str = "anne") -> ExpertSignIn:
    # Signed in on a break: calls queue up without being offered.
    return ExpertSignIn(ExpertId(expert), expert.title(), "caf", (CAF,))


def request(call: str, kiosk: int) -> RequestCall:
    return RequestCall(CallId(call), KioskId(f"k{kiosk}"), CAF, "1234567")


class FailingStore:
    """A store that fails every operation while ``down``, as a store cut off does, or
    only its reads while ``reads_down``, as one cut off between two calls does."""

    def __init__(self, inner: QueueStore) -> None:
        self.inner = inner
        self.shared = inner.shared
        self.down = False
        self.reads_down = False

    def _check(self, *, read: bool = False) -> None:
        if self.down or (read and self.reads_down):
            raise ConnectionError("the store does not answer")

    async def load(self) -> Recovered:
        self._check(read=True)
        return await self.inner.load()

    async def append(
        self, entry: int, command: dict[str, Any], events: list[dict[str, Any]]
    ) -> None:
        self._check()
        await self.inner.append(entry, command, events)

    async def append_many(
        self, entries: list[tuple[int, dict[str, Any], list[dict[str, Any]]]]
    ) -> None:
        self._check()
        await self.inner.append_many(entries)

    async def read_journal(self, after: int) -> list[JournalEntry]:
        self._check(read=True)
        return await self.inner.read_journal(after)

    async def wait_journal(self, after: int, block_s: float) -> list[JournalEntry]:
        self._check(read=True)
        return await self.inner.wait_journal(after, block_s)

    async def compact(self, snapshot: dict[str, Any], entry: int) -> None:
        self._check()
        await self.inner.compact(snapshot, entry)

    async def seed(self, snapshot: dict[str, Any], entry: int, *, over: int | None = None) -> bool:
        self._check()
        return await self.inner.seed(snapshot, entry, over=over)

    async def read_events(
        self, since: float | None = None, until: float | None = None
    ) -> list[dict[str, Any]]:
        self._check(read=True)
        return await self.inner.read_events(since, until)

    async def close(self) -> None:
        await self.inner.close()


@dataclass
class Heard:
    """What a node was told of the entries other nodes wrote."""

    entries: list[tuple[dict[str, Any], list[Event], float]] = field(default_factory=list)

    async def __call__(self, record: dict[str, Any], events: list[Event], at: float) -> None:
        self.entries.append((record, events, at))

    @property
    def records(self) -> list[dict[str, Any]]:
        return [record for record, _, _ in self.entries]


@dataclass
class Node:
    ledger: Ledger
    heard: Heard = field(default_factory=Heard)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def machine(self) -> QueueMachine:
        return self.ledger.machine

    async def run(self, command: Command | None, at: float) -> list[Event]:
        async with self.lock:
            events, _ = await self.ledger.commit(command, clock(at), self.heard)
        return events

    async def catch_up(self) -> int:
        async with self.lock:
            return await self.ledger.catch_up(self.heard)


def clock(at: float) -> Callable[[], float]:
    return lambda: at


class Shared:
    """The store every node writes to, and a way to make it fail and come back."""

    def __init__(self, redis: RedisServer | None) -> None:
        self.redis = redis
        self.memory = FailingStore(MemoryQueueStore())
        self.clients: list[Redis] = []

    def store(self) -> QueueStore:
        """The store as one more node sees it."""
        if self.redis is None:
            return self.memory
        client = Redis.from_url(self.redis.url)
        self.clients.append(client)
        return RedisQueueStore(client, prefix=PREFIX)

    async def node(self) -> Node:
        ledger = Ledger(new_machine, self.store())
        await ledger.open()
        return Node(ledger)

    async def journal(self) -> list[dict[str, Any]]:
        return (await self.store().load()).journal

    async def events(self) -> list[dict[str, Any]]:
        return await self.store().read_events()

    async def fail(self) -> None:
        if self.redis is None:
            self.memory.down = True
        else:
            await self.redis.stop()

    async def come_back(self) -> None:
        if self.redis is None:
            self.memory.down = False
        else:
            await self.redis.start()  # without persistence: it comes back empty

    async def close(self) -> None:
        for client in self.clients:
            await client.aclose()


@pytest.fixture(params=["memory", "redis"])
def store_kind(request: pytest.FixtureRequest) -> RedisServer | None:
    # Looked up only for the Redis case, so the memory store never starts a server.
    return request.getfixturevalue("redis_server") if request.param == "redis" else None


@pytest.fixture
async def shared(store_kind: RedisServer | None) -> AsyncIterator[Shared]:
    made = Shared(store_kind)
    yield made
    await made.close()


@pytest.fixture
async def redis_shared(redis_server: RedisServer) -> AsyncIterator[Shared]:
    made = Shared(redis_server)
    yield made
    await made.close()


def kinds(journal: list[dict[str, Any]]) -> list[str]:
    return [record["kind"] for record in journal]


# --------------------------------------------------------------------------- conflicts


async def test_node_behind_the_store_catches_up_inside_commit_and_writes_next(
    shared: Shared,
) -> None:
    a, b = await shared.node(), await shared.node()
    await a.run(sign_in(), 1.0)
    await a.run(request("c1", 1), 2.0)

    await b.run(request("c2", 2), 3.0)
    await a.catch_up()

    assert (a.ledger.entry, b.ledger.entry) == (3, 3)
    assert b.ledger.conflicts == 1
    assert b.machine.snapshot() == a.machine.snapshot()
    assert positions(a.machine) == positions(b.machine) == ["c1", "c2"]
    assert kinds(await shared.journal()) == ["ExpertSignIn", "RequestCall", "RequestCall"]


async def test_command_refused_once_caught_up_changes_nothing_and_writes_nothing(
    shared: Shared,
) -> None:
    a, b = await shared.node(), await shared.node()
    await a.run(sign_in(), 1.0)
    await a.run(request("c1", 1), 2.0)
    events_before = await shared.events()

    # Kiosk k1 is free as far as b knows; the store says a gave it a call already.
    with pytest.raises(QueueError) as refused:
        await b.run(request("c2", 1), 3.0)

    assert refused.value.code == "call_in_progress"
    assert b.ledger.entry == 2
    assert b.machine.snapshot() == a.machine.snapshot()
    assert b.machine.call(CallId("c2")) is None
    assert kinds(await shared.journal()) == ["ExpertSignIn", "RequestCall"]
    assert await shared.events() == events_before
    # Nothing was left half done: b's next command goes through.
    await b.run(request("c2", 2), 4.0)
    assert positions(b.machine) == ["c1", "c2"]


async def test_timer_due_on_two_nodes_is_journaled_once_and_both_agree(shared: Shared) -> None:
    a, b = await shared.node(), await shared.node()
    await a.run(sign_in(), 0.0)
    await a.run(request("c1", 1), 1.0)
    await b.catch_up()
    b.heard.entries.clear()
    due = 1.0 + MAX_WAIT_S
    assert a.machine.get_timer() == b.machine.get_timer() == due

    fired = await asyncio.gather(a.run(None, due + 5), b.run(None, due + 5))

    journal = await shared.journal()
    assert kinds(journal).count(TIMER_RECORD) == 1
    assert a.machine.snapshot() == b.machine.snapshot()
    assert positions(a.machine) == positions(b.machine) == []
    assert a.machine.get_timer() is None and b.machine.get_timer() is None
    # One node wrote the timer and got its events; the other was told of them.
    ended = [only(events, CallEnded) for events in fired]
    assert sorted(len(e) for e in ended) == [0, 1]
    [call_ended] = ended[0] or ended[1]
    assert (call_ended.call, call_ended.outcome) == ("c1", Outcome.TIMED_OUT)
    told = [record for node in (a, b) for record in node.heard.records]
    assert kinds(told) == [TIMER_RECORD]
    logged = [row for row in await shared.events() if row["kind"] == "CallEnded"]
    assert len(logged) == 1


async def test_timer_not_yet_due_writes_nothing(shared: Shared) -> None:
    a = await shared.node()
    await a.run(sign_in(), 0.0)
    await a.run(request("c1", 1), 1.0)

    assert await a.run(None, MAX_WAIT_S) == []
    assert kinds(await shared.journal()) == ["ExpertSignIn", "RequestCall"]


# --------------------------------------------------------------------------- replays


async def test_replayed_tells_each_entry_of_the_other_nodes_once_with_its_events(
    shared: Shared,
) -> None:
    a, b = await shared.node(), await shared.node()
    written_by_a = [
        await a.run(sign_in(), 1.0),
        await a.run(request("c1", 1), 2.0),
        await a.run(request("c2", 2), 3.0),
    ]

    assert await b.catch_up() == 3
    assert await b.catch_up() == 0
    # Entries read twice, as a follower racing a commit may, are not told again.
    assert await b.ledger.catch_up(b.heard, await shared.store().read_journal(0)) == 0
    written_by_b = await b.run(request("c3", 3), 4.0)
    await a.run(request("c4", 4), 5.0)  # conflicts, and a catches up on c3 first

    assert [events for _, events, _ in b.heard.entries] == written_by_a
    assert b.heard.records == (await shared.journal())[:3]
    assert [at for _, _, at in b.heard.entries] == [1.0, 2.0, 3.0]
    assert [(record["call"], events) for record, events, _ in a.heard.entries] == [
        ("c3", written_by_b)
    ]
    assert positions(a.machine) == ["c1", "c2", "c3", "c4"]


async def test_conflict_storm_keeps_one_entry_and_one_event_per_call(shared: Shared) -> None:
    nodes = [await shared.node() for _ in range(3)]
    await nodes[0].run(sign_in(), 1.0)

    await asyncio.gather(
        *(
            node.run(request(f"c{n}-{i}", n * 30 + i + 1), 10.0)
            for i in range(30)
            for n, node in enumerate(nodes)
        )
    )
    for node in nodes:
        await node.catch_up()

    journal = await shared.journal()
    assert kinds(journal).count("RequestCall") == 90
    assert len(journal) == 91
    queued = [row["call"] for row in await shared.events() if row["kind"] == "CallQueued"]
    assert len(queued) == len(set(queued)) == 90
    order = positions(nodes[0].machine)
    assert sorted(order) == sorted(queued)
    for node in nodes:
        assert node.ledger.entry == 91
        assert positions(node.machine) == order
        assert node.machine.snapshot() == nodes[0].machine.snapshot()
    # The two nodes that never caught up before writing had to.
    assert all(node.ledger.conflicts >= 1 for node in nodes[1:])


# --------------------------------------------------------------------------- failures


async def test_store_failure_raises_unavailable_with_the_machine_as_stored(shared: Shared) -> None:
    a = await shared.node()
    await a.run(sign_in(), 1.0)
    await a.run(request("c1", 1), 2.0)
    before = a.machine.snapshot()

    await shared.fail()
    with pytest.raises(StoreUnavailable) as failed:
        await a.run(request("c2", 2), 3.0)

    assert failed.value.code == "service_unavailable"
    assert a.ledger.entry == 2
    assert a.machine.snapshot() == before
    assert a.machine.call(CallId("c2")) is None

    # Once the store answers again (Redis without persistence comes back empty, and the
    # node writes its history back), the same command goes through.
    await shared.come_back()
    await a.run(request("c2", 2), 4.0)
    fresh = await shared.node()
    assert fresh.machine.snapshot() == a.machine.snapshot()
    assert positions(fresh.machine) == ["c1", "c2"]


async def test_timer_failing_to_be_stored_fires_again_later(shared: Shared) -> None:
    a = await shared.node()
    await a.run(sign_in(), 0.0)
    await a.run(request("c1", 1), 1.0)
    before = a.machine.snapshot()

    await shared.fail()
    with pytest.raises(StoreUnavailable):
        await a.run(None, 100.0)
    assert a.machine.snapshot() == before
    assert a.machine.get_timer() == 1.0 + MAX_WAIT_S

    await shared.come_back()
    [ended] = only(await a.run(None, 101.0), CallEnded)
    assert ended.call == "c1"


async def test_store_failing_while_catching_up_after_a_conflict_raises_unavailable() -> None:
    store = FailingStore(MemoryQueueStore())
    a, b = Node(Ledger(new_machine, store)), Node(Ledger(new_machine, store))
    await a.ledger.open()
    await b.ledger.open()
    await a.run(sign_in(), 1.0)
    before = b.machine.snapshot()

    # b's append meets a's entry; the store stops answering before b has read it.
    store.reads_down = True
    with pytest.raises(StoreUnavailable):
        await b.run(request("c1", 1), 2.0)
    assert b.machine.snapshot() == before
    assert b.ledger.entry == 0


# --------------------------------------------------------------------------- Redis data loss


async def test_redis_emptied_is_seeded_from_a_node_checkpoint_with_its_tail_written_back(
    redis_shared: Shared, redis_server: RedisServer
) -> None:
    a, b = await redis_shared.node(), await redis_shared.node()
    await a.run(sign_in(), 1.0)
    # Past one checkpoint: what goes back is a snapshot and the entries after it.
    for kiosk in range(1, 71):
        await a.run(request(f"c{kiosk}", kiosk), 2.0)
    await b.catch_up()

    client = Redis.from_url(redis_server.url)
    await client.flushall()
    await client.aclose()
    await a.run(request("c71", 71), 3.0)

    recovered = await redis_shared.store().load()
    assert recovered.snapshot is not None
    assert recovered.last_entry == a.ledger.entry == 72
    fresh = await redis_shared.node()
    assert fresh.machine.snapshot() == a.machine.snapshot()
    # The other node's history is the same, so it goes on from the seeded store.
    await b.run(request("c72", 72), 4.0)
    await a.catch_up()
    assert b.machine.snapshot() == a.machine.snapshot()
    assert positions(a.machine)[-2:] == ["c71", "c72"]
    queued = [row["call"] for row in await redis_shared.events() if row["kind"] == "CallQueued"]
    assert queued[-2:] == ["c71", "c72"]


async def saved_keys(client: Redis) -> dict[Any, Any]:
    return {key: await client.dump(key) for key in await client.keys("*")}


async def restore_keys(client: Redis, saved: dict[Any, Any]) -> None:
    await client.flushall()
    for key, value in saved.items():
        await client.restore(key, 0, value)


@pytest.mark.parametrize(
    "written_after_save",
    [pytest.param(5, id="lost-after-checkpoint"), pytest.param(70, id="lost-past-checkpoint")],
)
async def test_redis_back_from_an_older_save_gets_the_lost_entries_back_from_a_node(
    redis_shared: Shared,
    redis_server: RedisServer,
    written_after_save: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Checkpoints every 64 entries, so that 70 lost entries go past one.
    monkeypatch.setattr(ledger_module, "_CHECKPOINT_EVERY", 64)
    client = Redis.from_url(redis_server.url)
    a, b = await redis_shared.node(), await redis_shared.node()
    await a.run(sign_in(), 1.0)
    await a.run(request("c1", 1), 2.0)
    saved = await saved_keys(client)
    for kiosk in range(2, 2 + written_after_save):
        await a.run(request(f"c{kiosk}", kiosk), 3.0)
    await b.catch_up()
    last = a.ledger.entry

    # As when Redis restarts from a save older than its last writes: same epoch,
    # fewer entries.
    await restore_keys(client, saved)
    await client.aclose()
    await a.run(request("late", 80), 4.0)

    assert a.ledger.entry == last + 1
    # Past a checkpoint, the store is moved on to it rather than given every entry.
    recovered = await redis_shared.store().load()
    assert (recovered.snapshot is not None) == (written_after_save > 64)
    fresh = await redis_shared.node()
    assert fresh.ledger.entry == last + 1
    assert fresh.machine.snapshot() == a.machine.snapshot()
    assert positions(fresh.machine)[-2:] == [f"c{1 + written_after_save}", "late"]
    await b.run(request("later", 81), 5.0)
    await a.catch_up()
    assert b.machine.snapshot() == a.machine.snapshot()
    queued = [row["call"] for row in await redis_shared.events() if row["kind"] == "CallQueued"]
    assert queued[-3:] == [f"c{1 + written_after_save}", "late", "later"]


async def test_redis_emptied_and_opened_by_a_starting_node_still_takes_the_history_back(
    redis_shared: Shared, redis_server: RedisServer
) -> None:
    a = await redis_shared.node()
    await a.run(sign_in(), 1.0)
    await a.run(request("c1", 1), 2.0)
    await a.run(request("c2", 2), 3.0)
    client = Redis.from_url(redis_server.url)
    await client.flushall()
    await client.aclose()

    starting = await redis_shared.node()  # a node (re)starting just after the loss
    await a.run(request("c3", 3), 4.0)
    await starting.catch_up()

    assert positions(a.machine) == ["c1", "c2", "c3"]
    assert starting.machine.snapshot() == a.machine.snapshot()


def live_events() -> int:
    gc.collect()
    return sum(1 for thing in gc.get_objects() if isinstance(thing, Event))


async def ignore_replayed(record: dict[str, Any], events: list[Event], at: float) -> None:
    pass


async def queued_then_half_cancelled(calls: int) -> Ledger:
    """A ledger with ``calls`` calls queued, then the first half of them cancelled."""
    ledger = Ledger(new_machine, MemoryQueueStore())
    await ledger.open()
    await ledger.commit(sign_in(), lambda: 1.0, ignore_replayed)
    for kiosk in range(1, calls + 1):
        await ledger.commit(request(f"c{kiosk}", kiosk), lambda: 2.0, ignore_replayed)
    for kiosk in range(1, calls // 2 + 1):
        cancel = CancelCall(CallId(f"c{kiosk}"), KioskId(f"k{kiosk}"))
        await ledger.commit(cancel, lambda: 3.0, ignore_replayed)
    return ledger


async def test_events_told_are_not_kept_alive_whatever_the_number_of_calls() -> None:
    # Each cancel at the head renumbers every call behind it: a PositionChanged each.
    # Kept in the ledger's tail, they were tens of thousands of objects for the
    # collector to walk at every full collection, while serving calls.
    before = live_events()
    small = await queued_then_half_cancelled(20)
    with_small = live_events() - before
    large = await queued_then_half_cancelled(KIOSKS)
    with_large = live_events() - before - with_small
    assert small.entry < large.entry < 1000  # no compaction emptied the tail
    assert with_small == with_large == 0
