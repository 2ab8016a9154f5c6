"""One contract for every queue store, run against the memory and the file store.

``reopen()`` stands for a process restart: the file store is opened afresh on the same
folder; the memory store, which lives in the process, is loaded again.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from queueing import (
    AcceptOffer,
    CallId,
    Command,
    ExpertId,
    ExpertSignIn,
    ExpertStatus,
    HangUp,
    KioskId,
    KioskLost,
    QueueMachine,
    QueueStore,
    Recovered,
    RequestCall,
    SetStatus,
    command_from_record,
    command_record,
    event_record,
)
from queueing.stores import FileQueueStore, MemoryQueueStore
from tests.queueing.helpers import CAF, machine, run_until

A = ExpertId("a")

SCENARIO: list[tuple[Command, float]] = [
    (ExpertSignIn(A, "Anne", "caf", (CAF,)), 0.0),
    (SetStatus(A, ExpertStatus.AVAILABLE), 1.0),
    (RequestCall(CallId("c1"), KioskId("k1"), CAF, "1234567"), 2.0),
    (RequestCall(CallId("c2"), KioskId("k2"), CAF, "7654321"), 3.0),
    (AcceptOffer(A, CallId("c1")), 4.0),
    (KioskLost(KioskId("k2")), 5.0),
    (HangUp(CallId("c1"), "k1", "kiosk"), 60.0),
]


@dataclass
class Harness:
    store: QueueStore
    reopen: Callable[[], Awaitable[QueueStore]]


@pytest.fixture(params=["memory", "file"])
async def harness(request, tmp_path: Path) -> AsyncIterator[Harness]:
    opened: list[QueueStore] = []

    async def open_store() -> QueueStore:
        if request.param == "memory":
            store: QueueStore = opened[0] if opened else MemoryQueueStore()
        else:
            store = FileQueueStore(tmp_path / "queue")
        opened.append(store)
        return store

    async def reopen() -> QueueStore:
        await opened[-1].close()
        store = await open_store()
        return store

    first = await open_store()
    yield Harness(first, reopen)
    for store in opened:
        await store.close()


async def record(store: QueueStore, m: QueueMachine, steps, first_entry: int = 1) -> int:
    """Apply ``steps`` to ``m`` as the glue does and journal them; returns the last entry."""
    entry = first_entry - 1
    for command, now in steps:
        events = run_until(m, now) + m.apply(command, now)
        entry += 1
        await store.append(entry, command_record(command, now), [event_record(e) for e in events])
    return entry


def replay(recovered: Recovered) -> QueueMachine:
    m = machine()
    if recovered.snapshot is not None:
        m.restore(recovered.snapshot)
    for row in recovered.journal:
        command, now = command_from_record(row)
        run_until(m, now)
        m.apply(command, now)
    return m


# --------------------------------------------------------------------------- journal


async def test_fresh_store_recovers_nothing(harness: Harness):
    recovered = await harness.store.load()

    assert recovered == Recovered(None, [], 0)


async def test_journal_entries_come_back_in_order_after_reopen(harness: Harness):
    await harness.store.load()
    await harness.store.append(1, {"kind": "KioskLost", "at": 1.0, "kiosk": "k1"}, [])
    await harness.store.append(2, {"kind": "KioskBack", "at": 2.0, "kiosk": "k1"}, [])

    recovered = await (await harness.reopen()).load()

    assert recovered.journal == [
        {"kind": "KioskLost", "at": 1.0, "kiosk": "k1"},
        {"kind": "KioskBack", "at": 2.0, "kiosk": "k1"},
    ]
    assert (recovered.snapshot, recovered.last_entry) == (None, 2)


async def test_journal_replay_after_reopen_gives_the_same_machine(harness: Harness):
    await harness.store.load()
    live = machine()
    await record(harness.store, live, SCENARIO)

    recovered = await (await harness.reopen()).load()
    replayed = replay(recovered)

    assert recovered.last_entry == len(SCENARIO)
    assert replayed.snapshot() == live.snapshot()
    assert replayed.get_timer() == live.get_timer()


async def test_store_keeps_taking_entries_after_reopen(harness: Harness):
    await harness.store.load()
    live = machine()
    last = await record(harness.store, live, SCENARIO[:4])

    store = await harness.reopen()
    recovered = await store.load()
    await record(store, live, SCENARIO[4:], first_entry=last + 1)
    recovered = await (await harness.reopen()).load()

    assert recovered.last_entry == len(SCENARIO)
    assert replay(recovered).snapshot() == live.snapshot()


# --------------------------------------------------------------------------- compaction


async def test_compaction_keeps_the_snapshot_and_only_later_entries(harness: Harness):
    await harness.store.load()
    live = machine()
    last = await record(harness.store, live, SCENARIO[:4])
    snapshot = live.snapshot()
    await harness.store.compact(snapshot, last)
    await record(harness.store, live, SCENARIO[4:], first_entry=last + 1)

    recovered = await (await harness.reopen()).load()

    assert recovered.snapshot == snapshot
    assert [command_from_record(r)[0] for r in recovered.journal] == [c for c, _ in SCENARIO[4:]]
    assert recovered.last_entry == len(SCENARIO)
    assert replay(recovered).snapshot() == live.snapshot()


async def test_compaction_at_an_older_entry_keeps_the_entries_after_it(harness: Harness):
    await harness.store.load()
    live = machine()
    await record(harness.store, live, SCENARIO[:2])
    snapshot = live.snapshot()
    await record(harness.store, live, SCENARIO[2:], first_entry=3)

    await harness.store.compact(snapshot, 2)
    recovered = await (await harness.reopen()).load()

    assert recovered.snapshot == snapshot
    assert len(recovered.journal) == len(SCENARIO) - 2
    assert recovered.last_entry == len(SCENARIO)
    assert replay(recovered).snapshot() == live.snapshot()


async def test_compaction_of_everything_leaves_an_empty_journal(harness: Harness):
    await harness.store.load()
    live = machine()
    last = await record(harness.store, live, SCENARIO)

    await harness.store.compact(live.snapshot(), last)
    recovered = await (await harness.reopen()).load()

    assert (recovered.journal, recovered.last_entry) == ([], last)
    assert replay(recovered).snapshot() == live.snapshot()


async def test_compaction_keeps_the_event_log(harness: Harness):
    await harness.store.load()
    live = machine()
    last = await record(harness.store, live, SCENARIO)
    before = await harness.store.read_events()

    await harness.store.compact(live.snapshot(), last)

    assert await (await harness.reopen()).read_events() == before


# --------------------------------------------------------------------------- event log


async def test_event_log_keeps_one_row_per_event_in_order(harness: Harness):
    await harness.store.load()
    live = machine()
    produced = []
    for entry, (command, now) in enumerate(SCENARIO, start=1):
        events = run_until(live, now) + live.apply(command, now)
        produced += [event_record(e) for e in events]
        await harness.store.append(entry, command_record(command, now), produced[-len(events) :])

    rows = await (await harness.reopen()).read_events()

    assert rows == produced
    assert [r["kind"] for r in rows][:3] == ["ExpertChanged", "ExpertChanged", "CallQueued"]


async def test_read_events_keeps_rows_in_a_half_open_time_window(harness: Harness):
    await harness.store.load()
    rows = [{"kind": "Tick", "at": at} for at in (10.0, 20.0, 30.0, 40.0)]
    await harness.store.append(1, {"kind": "Restarted", "at": 10.0}, rows[:2])
    await harness.store.append(2, {"kind": "Restarted", "at": 30.0}, rows[2:])

    def times(found):
        return [r["at"] for r in found]

    assert times(await harness.store.read_events()) == [10.0, 20.0, 30.0, 40.0]
    assert times(await harness.store.read_events(since=20.0)) == [20.0, 30.0, 40.0]
    assert times(await harness.store.read_events(until=30.0)) == [10.0, 20.0]
    assert times(await harness.store.read_events(20.0, 40.0)) == [20.0, 30.0]
    assert times(await harness.store.read_events(25.0, 26.0)) == []


async def test_command_without_events_writes_no_rows(harness: Harness):
    await harness.store.load()

    await harness.store.append(1, {"kind": "Restarted", "at": 1.0}, [])

    assert await harness.store.read_events() == []
    assert (await (await harness.reopen()).load()).last_entry == 1


# --------------------------------------------------------------------------- torn lines (file)


def tear(path: Path, row: dict) -> None:
    """Append the first half of a JSON line, as a crash in the middle of a write does."""
    line = json.dumps(row)
    with path.open("a", encoding="utf-8") as stream:
        stream.write(line[: len(line) // 2])


async def crashed_store(folder: Path) -> QueueMachine:
    store = FileQueueStore(folder)
    await store.load()
    live = machine()
    await record(store, live, SCENARIO[:4])
    await store.close()
    tear(folder / "journal.jsonl", {"n": 5, "command": command_record(*SCENARIO[4])})
    tear(folder / "events.jsonl", {"n": 5, "kind": "CallConnected", "at": 4.0, "call": "c1"})
    return live


async def events_of_first_steps(folder: Path) -> list[dict]:
    """The event log the crashed store held before its torn write."""
    reference = FileQueueStore(folder)
    await reference.load()
    await record(reference, machine(), SCENARIO[:4])
    rows = await reference.read_events()
    await reference.close()
    return rows


async def test_torn_last_lines_are_dropped_without_losing_earlier_rows(tmp_path: Path):
    live = await crashed_store(tmp_path)
    expected_events = await events_of_first_steps(tmp_path / "reference")

    store = FileQueueStore(tmp_path)
    recovered = await store.load()

    assert recovered.last_entry == 4
    assert len(recovered.journal) == 4
    assert replay(recovered).snapshot() == live.snapshot()
    assert await store.read_events() == expected_events
    await store.close()


async def test_read_events_skips_a_torn_line_without_repairing_the_file(tmp_path: Path):
    await crashed_store(tmp_path)
    expected_events = await events_of_first_steps(tmp_path / "reference")
    torn = (tmp_path / "events.jsonl").read_text("utf-8")

    rows = await FileQueueStore(tmp_path).read_events()

    assert rows == expected_events
    assert (tmp_path / "events.jsonl").read_text("utf-8") == torn


async def test_store_appends_cleanly_after_a_torn_line(tmp_path: Path):
    live = await crashed_store(tmp_path)
    store = FileQueueStore(tmp_path)
    await store.load()
    await record(store, live, SCENARIO[4:], first_entry=5)
    await store.close()

    reopened = FileQueueStore(tmp_path)
    recovered = await reopened.load()

    assert recovered.last_entry == len(SCENARIO)
    assert replay(recovered).snapshot() == live.snapshot()
    for path in (tmp_path / "journal.jsonl", tmp_path / "events.jsonl"):
        for line in path.read_text("utf-8").splitlines():
            json.loads(line)
    await reopened.close()


async def test_torn_line_alone_in_a_file_leaves_it_empty(tmp_path: Path):
    tear(tmp_path / "journal.jsonl", {"n": 1, "command": {"kind": "Restarted", "at": 1.0}})

    store = FileQueueStore(tmp_path)
    recovered = await store.load()

    assert recovered == Recovered(None, [], 0)
    assert (tmp_path / "journal.jsonl").read_text("utf-8") == ""
    await store.close()


async def test_file_store_snapshot_survives_reopen_of_the_folder(tmp_path: Path):
    store = FileQueueStore(tmp_path)
    await store.load()
    live = machine()
    last = await record(store, live, SCENARIO)
    await store.compact(live.snapshot(), last)
    await store.close()

    stored = json.loads((tmp_path / "snapshot.json").read_text("utf-8"))

    assert stored == {"n": last, "state": live.snapshot()}
    assert not (tmp_path / "snapshot.tmp").exists()
    assert (tmp_path / "journal.jsonl").read_text("utf-8") == ""


async def test_events_of_a_command_never_journaled_are_dropped_on_load(tmp_path: Path):
    """Events are written before their journal entry; a crash between the two leaves
    events of a command whose reply never left: they must not stay in the log."""
    store = FileQueueStore(tmp_path)
    await store.load()
    live = machine()
    await record(store, live, SCENARIO[:4])
    await store.close()
    expected_events = await events_of_first_steps(tmp_path / "reference")
    with (tmp_path / "events.jsonl").open("a", encoding="utf-8") as stream:
        stream.write(json.dumps({"n": 5, "kind": "CallConnected", "at": 4.0, "call": "c1"}) + "\n")

    reopened = FileQueueStore(tmp_path)
    recovered = await reopened.load()

    assert recovered.last_entry == 4
    assert await reopened.read_events() == expected_events
    await reopened.close()
