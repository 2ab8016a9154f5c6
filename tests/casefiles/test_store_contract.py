"""The ``CaseStore`` contract, run against every store: in memory, in a folder, in Redis.

"Another writer" is a second ``RedisCaseStore`` on the same Redis (another node); a
folder or a process-local store has one writer by design, so there the same object
serves both, which still exercises the compare-and-set: two loads give two copies.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from casefiles import (
    AuditRow,
    CaseConflict,
    CaseError,
    CaseFile,
    CaseStore,
    DocumentState,
    Share,
    update,
)
from casefiles.stores import FileCaseStore, MemoryCaseStore
from casefiles.stores.redis_store import RedisCaseStore
from tests.cluster_support import RedisServer

PREFIX = "contract"
EXPERT = "expert:alice"
DEVICE = "device:k1"


class Backend:
    """Makes stores of one kind over the same data and closes whatever it made."""

    def __init__(self, kind: str, folder: Path, redis: RedisServer | None) -> None:
        self.kind = kind
        self.folder = folder
        self.redis = redis
        self.clients: list[Redis] = []
        self.stores: list[CaseStore] = []

    def store(self) -> CaseStore:
        """A writer: a new one for Redis, the first one again for the others."""
        if self.kind != "redis" and self.stores:
            return self.stores[0]
        return self.reopened()

    def reopened(self) -> CaseStore:
        """A new store object over the same data (a restart, or another node)."""
        if self.kind == "redis":
            assert self.redis is not None
            client = Redis.from_url(self.redis.url)
            self.clients.append(client)
            store: CaseStore = RedisCaseStore(client, prefix=PREFIX)
        elif self.kind == "memory":
            store = self.stores[0] if self.stores else MemoryCaseStore()
        else:
            store = FileCaseStore(self.folder)
        self.stores.append(store)
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
    return Backend(request.param, tmp_path / "cases", redis)


@pytest.fixture
async def backend(backend_kind: Backend) -> AsyncIterator[Backend]:
    yield backend_kind
    await backend_kind.close()


def new_case(case_id: str = "c-call1", call: str = "call1") -> tuple[CaseFile, list[AuditRow]]:
    return CaseFile.open(case_id, "caf", "CAF", "1234567", "k1", call, 1000.0)


def issue_scan(case: CaseFile, key: str, now: float = 1010.0) -> list[AuditRow]:
    _, _, rows = case.issue(key, case.calls[-1], "scan", {}, "", 1, "", EXPERT, now, 60.0)
    return rows


def receive(case: CaseFile, key: str, now: float = 1020.0) -> tuple[str, list[AuditRow]]:
    rows = issue_scan(case, key, now)
    document, _, more = case.add_document(
        "", case.calls[-1], "Avis", "scan", "application/pdf", 1, 10, "b.pdf", "0" * 64,
        key, DEVICE, now, now + 3600.0,
    )  # fmt: skip
    return document.id, rows + more


async def saved(store: CaseStore, case_id: str = "c-call1", call: str = "call1") -> CaseFile:
    case, rows = new_case(case_id, call)
    await store.save(case, rows)
    return case


def actions(rows: list[dict[str, Any]]) -> list[str]:
    return [row["action"] for row in rows]


# --------------------------------------------------------------------------- cases


async def test_an_empty_store_knows_nothing(backend: Backend) -> None:
    store = backend.store()

    assert await store.load("c-call1") is None
    assert await store.case_of_call("call1") is None
    assert await store.case_of_document("d-1") is None
    assert await store.load_share("ABCD2345") is None
    assert await store.cases_with_work() == []
    assert await store.read_audit() == []


async def test_a_saved_case_loads_back_equal_at_the_next_version(backend: Backend) -> None:
    store = backend.store()
    case, rows = new_case()
    receive(case, "scan-1")
    issue_scan(case, "scan-2")

    await store.save(case, rows)

    assert case.version == 1
    assert await store.load("c-call1") == case
    assert await backend.reopened().load("c-call1") == case


async def test_a_loaded_case_is_a_copy(backend: Backend) -> None:
    store = backend.store()
    await saved(store)

    loaded = await store.load("c-call1")
    assert loaded is not None
    issue_scan(loaded, "scan-1")

    again = await store.load("c-call1")
    assert again is not None and again.commands == {}


async def test_the_second_of_two_saves_from_one_version_conflicts_and_writes_nothing(
    backend: Backend,
) -> None:
    await saved(backend.store())
    first = await backend.store().load("c-call1")
    second = await backend.store().load("c-call1")
    assert first is not None and second is not None
    audit_before = await backend.store().read_audit()

    await backend.store().save(first, issue_scan(first, "scan-1"))
    with pytest.raises(CaseConflict) as conflict:
        await backend.store().save(second, issue_scan(second, "scan-2"))

    assert (conflict.value.loaded, conflict.value.stored) == (1, 2)
    assert second.version == 1
    stored = await backend.reopened().load("c-call1")
    assert stored is not None and list(stored.commands) == ["scan-1"]
    audit = await backend.store().read_audit()
    assert len(audit) == len(audit_before) + 2
    assert all(row["command"] != "scan-2" for row in audit)


async def test_a_new_case_cannot_be_saved_over_an_existing_one(backend: Backend) -> None:
    await saved(backend.store())
    again, rows = new_case()

    with pytest.raises(CaseConflict) as conflict:
        await backend.store().save(again, rows)
    assert (conflict.value.loaded, conflict.value.stored) == (0, 1)


# --------------------------------------------------------------------------- indexes


async def test_calls_and_documents_lead_to_their_case(backend: Backend) -> None:
    store = backend.store()
    case, rows = new_case("b-beneficiary", "call1")
    doc, more = receive(case, "scan-1")
    await store.save(case, rows + more)
    rows = case.attach_call("call2", 2000.0)
    await store.save(case, rows)

    for reader in (store, backend.reopened()):
        assert await reader.case_of_call("call1") == "b-beneficiary"
        assert await reader.case_of_call("call2") == "b-beneficiary"
        assert await reader.case_of_call("call3") is None
        assert await reader.case_of_document(doc) == "b-beneficiary"


async def test_a_document_that_left_its_case_leaves_the_index(backend: Backend) -> None:
    store = backend.store()
    case, rows = new_case()
    rows += issue_scan(case, "scan-1")
    [requested] = case.documents
    await store.save(case, rows)
    assert await store.case_of_document(requested) == "c-call1"

    await store.save(case, case.progress("scan-1", "failed", 0, 0, "jam", DEVICE, 1020.0, 60.0))

    assert await store.case_of_document(requested) is None
    assert await backend.reopened().case_of_document(requested) is None


async def test_cases_with_work_follow_each_save(backend: Backend) -> None:
    store = backend.store()
    idle = await saved(store, "c-idle", "idle")
    busy, rows = new_case("c-busy", "busy")
    rows += issue_scan(busy, "scan-1")
    await store.save(busy, rows)
    holding, rows = new_case("c-holding", "holding")
    doc, more = receive(holding, "scan-1")
    await store.save(holding, rows + more)

    assert await store.cases_with_work() == ["c-busy", "c-holding"]

    await store.save(busy, busy.expire(5000.0))
    await store.save(holding, holding.purge(doc, 5000.0))
    await store.save(idle, idle.attach_call("idle2", 5000.0))

    assert await store.cases_with_work() == []
    assert await backend.reopened().cases_with_work() == []


# --------------------------------------------------------------------------- update


async def test_update_applies_a_change_and_returns_its_result(backend: Backend) -> None:
    store = backend.store()
    await saved(store)

    def scan(case: CaseFile) -> tuple[bool, list[AuditRow]]:
        _, created, rows = case.issue("scan-1", "call1", "scan", {}, "", 1, "", EXPERT, 1.0, 60.0)
        return created, rows

    assert await update(store, "c-call1", scan) is True
    assert await update(store, "c-call1", scan) is False

    stored = await store.load("c-call1")
    assert stored is not None and stored.version == 2  # the repeat wrote nothing
    assert actions(await store.read_audit()) == [
        "case_opened",
        "command_issued",
        "document_requested",
    ]


async def test_update_opens_a_missing_case_or_refuses_it(backend: Backend) -> None:
    store = backend.store()

    with pytest.raises(CaseError) as refused:
        await update(store, "c-call1", lambda case: (None, case.attach_call("x", 1.0)))
    assert refused.value.code == "unknown_case"

    kiosk = await update(
        store, "c-call1", lambda case: (case.kiosk, case.attach_call("call1", 1.0)),
        missing=new_case,
    )  # fmt: skip

    assert kiosk == "k1"
    assert actions(await store.read_audit()) == ["case_opened"]
    assert await store.case_of_call("call1") == "c-call1"


async def test_update_saves_nothing_when_the_change_is_refused(backend: Backend) -> None:
    store = backend.store()
    await saved(store)

    def review_unknown(case: CaseFile) -> tuple[None, list[AuditRow]]:
        issue_scan(case, "scan-1")  # changed, then refused: must not be kept
        return None, case.review("d-nope", "accepted", "", EXPERT, 2.0)

    with pytest.raises(CaseError) as refused:
        await update(store, "c-call1", review_unknown)

    assert refused.value.code == "unknown_document"
    stored = await store.load("c-call1")
    assert stored is not None and (stored.version, stored.commands) == (1, {})


class Interfering:
    """Passes every call to ``store``, but the first ``times`` loads of a case are
    followed by another writer's save of that case, before the caller can save."""

    def __init__(self, store: CaseStore, other: CaseStore, times: int) -> None:
        self.store = store
        self.other = other
        self.times = times

    async def load(self, case_id: str) -> CaseFile | None:
        loaded = await self.store.load(case_id)
        if self.times > 0:
            self.times -= 1
            meddler = await self.other.load(case_id)
            assert meddler is not None
            await self.other.save(meddler, meddler.attach_call(f"meddler{self.times}", 5.0))
        return loaded

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


async def test_update_retries_when_another_writer_saved_in_between(backend: Backend) -> None:
    await saved(backend.store())
    interfering: Any = Interfering(backend.store(), backend.store(), times=2)
    runs = 0

    def scan(case: CaseFile) -> tuple[str, list[AuditRow]]:
        nonlocal runs
        runs += 1
        return case.calls[-1], issue_scan(case, "scan-1")

    seen_last_call = await update(interfering, "c-call1", scan)

    assert runs == 3
    assert seen_last_call == "meddler0"
    stored = await backend.reopened().load("c-call1")
    assert stored is not None
    assert stored.calls == ["call1", "meddler1", "meddler0"]
    assert list(stored.commands) == ["scan-1"] and stored.version == 4
    assert actions(await backend.store().read_audit()).count("command_issued") == 1


async def test_update_gives_up_with_the_conflict_after_its_attempts(backend: Backend) -> None:
    await saved(backend.store())
    interfering: Any = Interfering(backend.store(), backend.store(), times=3)

    with pytest.raises(CaseConflict):
        await update(interfering, "c-call1", lambda case: (None, issue_scan(case, "s")), 3)

    stored = await backend.store().load("c-call1")
    assert stored is not None and stored.commands == {}


async def test_concurrent_updates_of_one_case_all_land(backend: Backend) -> None:
    await saved(backend.store())
    writers = [backend.store() for _ in range(5)]

    async def scan(store: CaseStore, key: str) -> None:
        await update(store, "c-call1", lambda case: (None, issue_scan(case, key)), attempts=20)

    await asyncio.gather(*(scan(store, f"scan-{n}") for n, store in enumerate(writers)))

    stored = await backend.reopened().load("c-call1")
    assert stored is not None
    assert sorted(stored.commands) == [f"scan-{n}" for n in range(5)]
    assert stored.version == 6


# --------------------------------------------------------------------------- shares


async def test_a_share_is_saved_withdrawn_and_audited(backend: Backend) -> None:
    store = backend.store()
    case = await saved(store)
    doc, rows = receive(case, "scan-1")
    rows += case.review(doc, "accepted", "", EXPERT, 1030.0)
    share, given = case.give_consent("call1", "ABCD2345", "kiosk:k1", 1040.0)
    await store.save(case, rows)
    await store.save_share(share, given)

    assert await backend.reopened().load_share("ABCD2345") == share

    await store.save_share(share, share.withdraw("kiosk:k1", 1050.0))

    stored = await backend.reopened().load_share("ABCD2345")
    assert stored is not None and stored.withdrawn_at == 1050.0 and stored.documents == [doc]
    assert actions(await store.read_audit(since=1040.0)) == ["share_given", "share_withdrawn"]


@pytest.mark.parametrize("code", ["../../etc/passwd", "..", "A" * 300, "abcd\x00"])
async def test_a_share_code_typed_by_anyone_finds_nothing(backend: Backend, code: str) -> None:
    await backend.store().save_share(Share("ABCD2345", "c-1", "CAF", [], 1.0), [])

    assert await backend.store().load_share(code) is None


# --------------------------------------------------------------------------- audit


async def test_audit_rows_come_back_in_order_within_half_open_windows(backend: Backend) -> None:
    store = backend.store()
    case, rows = new_case()
    await store.save(case, rows)  # at 1000
    await store.save(case, issue_scan(case, "scan-1", now=1010.0))
    await store.save(case, issue_scan(case, "scan-2", now=1020.0))
    await store.save_share(
        Share("ABCD2345", "c-call1", "CAF", [], 1030.0),
        [AuditRow(1030.0, "c-call1", "call1", "kiosk:k1", "share_given")],
    )

    async def times(since: float | None = None, until: float | None = None) -> list[float]:
        return [row["at"] for row in await store.read_audit(since, until)]

    everything = await store.read_audit()
    assert AuditRow.from_dict(everything[0]) == rows[0]
    assert await times() == [1000.0, 1010.0, 1010.0, 1020.0, 1020.0, 1030.0]
    assert await times(since=1010.0) == [1010.0, 1010.0, 1020.0, 1020.0, 1030.0]
    assert await times(until=1020.0) == [1000.0, 1010.0, 1010.0]
    assert await times(1010.0, 1030.0) == [1010.0, 1010.0, 1020.0, 1020.0]
    assert await times(1011.0, 1012.0) == []
    assert await backend.reopened().read_audit() == everything


# --------------------------------------------------------------------------- file only


async def test_file_cases_are_json_files_and_odd_ids_stay_in_the_folder(tmp_path: Path) -> None:
    store = FileCaseStore(tmp_path / "cases", fsync=True)
    await saved(store, "c-call1")
    await saved(store, "../escape", "call2")

    names = sorted(path.name for path in (tmp_path / "cases").iterdir())
    assert names == [
        "%2E%2E%2Fescape.json",
        "c-call1.json",
        "events.jsonl",
        "index.jsonl",
        "shares",
    ]
    stored = json.loads((tmp_path / "cases" / "c-call1.json").read_text("utf-8"))
    assert (stored["id"], stored["version"]) == ("c-call1", 1)
    assert await store.load("../escape") is not None


async def test_file_store_drops_a_torn_last_line_before_writing_on(tmp_path: Path) -> None:
    folder = tmp_path / "cases"
    store = FileCaseStore(folder)
    case = await saved(store)
    with (folder / "events.jsonl").open("a", encoding="utf-8") as log:
        log.write('{"at": 1005.0, "case": "c-ca')  # the process died mid-write
    with (folder / "index.jsonl").open("a", encoding="utf-8") as index:
        index.write('{"call": "ghost", "ca')

    reopened = FileCaseStore(folder)
    assert actions(await reopened.read_audit()) == ["case_opened"]
    await reopened.save(case, issue_scan(case, "scan-1"))

    assert actions(await FileCaseStore(folder).read_audit()) == [
        "case_opened",
        "command_issued",
        "document_requested",
    ]
    assert await FileCaseStore(folder).case_of_call("ghost") is None
    assert await FileCaseStore(folder).cases_with_work() == ["c-call1"]


# --------------------------------------------------------------------------- Redis only


async def test_redis_keys_are_the_documented_ones(redis_server: RedisServer) -> None:
    client = Redis.from_url(redis_server.url)
    try:
        store = RedisCaseStore(client, prefix=PREFIX)
        case, rows = new_case()
        doc, more = receive(case, "scan-1")
        await store.save(case, rows + more)
        await store.save_share(Share("ABCD2345", case.id, "CAF", [doc], 1.0), [])

        keys = sorted(_text(key) for key in await client.keys("*"))
        assert keys == [
            "{contract}:case-calls",
            "{contract}:case-documents",
            "{contract}:case-events",
            "{contract}:case-work",
            "{contract}:case:c-call1",
            "{contract}:share:ABCD2345",
        ]
        assert await client.type("{contract}:case-events") == b"stream"
        stored = json.loads(_text(await client.get("{contract}:case:c-call1")))
        assert stored["version"] == 1
        assert stored["documents"][0]["state"] == DocumentState.RECEIVED.value
    finally:
        await client.aclose()


def _text(value: Any) -> str:
    assert isinstance(value, bytes)
    return value.decode()
