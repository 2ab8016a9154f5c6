"""Faults of a multi-node deployment: a node killed while calls wait or talk, Redis
stopped and started again, a node restarted under its own name. Grace periods and the
node cut-off are short here, so that every rule shows within seconds."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.helpers import (
    Cluster,
    Parties,
    Rows,
    StartNodes,
    answer,
    calls_of,
    hang_up_and_wrap_up,
    kiosk_id,
    logs,
    of_kind,
    read_events,
    request_call,
    send_ok,
    set_status,
    wait_for_events,
    wait_for_journal,
)
from tests.cluster_support import Node, RedisServer
from tests.support import JsonClient

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def parties() -> AsyncIterator[Parties]:
    opened = Parties()
    yield opened
    await opened.close()


@pytest.fixture
async def clusters(tmp_path: Path) -> AsyncIterator[Callable[[RedisServer], Cluster]]:
    """Nodes on the Redis a test picks (``start_nodes`` knows only ``redis_server``)."""
    made: list[Cluster] = []

    def on(redis: RedisServer) -> Cluster:
        cluster = Cluster(tmp_path / f"cluster-{len(made)}", redis)
        cluster.folder.mkdir(parents=True)
        made.append(cluster)
        return cluster

    yield on
    await asyncio.gather(*(cluster.stop() for cluster in made))


def assert_never_ended_early(rows: Rows, calls: list[str]) -> None:
    """No call ended before it was answered, and each answered call ended by a hang-up."""
    for call in calls:
        kinds = [r["kind"] for r in rows if r.get("call") == call]
        assert "CallConnected" in kinds, (call, kinds)
        for ended in of_kind(rows, "CallEnded", [call]):
            assert ended["outcome"] == "answered" and ended["reason"].startswith("hangup"), ended
        if "CallEnded" in kinds:
            assert kinds.index("CallConnected") < kinds.index("CallEnded"), (call, kinds)


def is_open(client: JsonClient) -> bool:
    return not client.closed and client.close_code is None


# ---------------------------------------------------------------------- a node killed


async def test_waiting_kiosks_of_a_killed_node_resume_elsewhere_and_keep_their_order(
    start_nodes: StartNodes, redis_server: RedisServer, parties: Parties
) -> None:
    nodes = await start_nodes(3, kiosks=9, experts=2, node_cutoff_s=1.0, kiosk_grace_s=30)
    node_a, node_b, node_c = nodes
    # Signed in, so calls are taken; on break, so that every call waits.
    expert, _ = await parties.experts([node_a], 2, available=False)
    kiosks: dict[int, JsonClient] = {}
    calls: list[str] = []
    for number in range(1, 10):
        kiosks[number] = await parties.kiosk(nodes[number % 3], kiosk_id(number))
        queued = await request_call(kiosks[number])
        assert queued["position"] == number, queued
        calls.append(queued["call"])
    on_c = [n for n in kiosks if nodes[n % 3] is node_c]
    lost_calls = [calls[n - 1] for n in on_c]

    await node_c.kill()
    # The survivors declare node C dead: its kiosks count as lost, their calls keep
    # their place for the kiosk grace.
    await wait_for_events(
        redis_server.url,
        lambda rows: len(of_kind(rows, "PartyLost", lost_calls)) == len(lost_calls),
    )
    for i, number in enumerate(on_c):
        await kiosks[number].wait_closed()
        kiosks[number], resumed = await parties.resume_kiosk(
            (node_a, node_b)[i % 2], kiosk_id(number)
        )
        assert resumed["call"] == calls[number - 1], resumed
        assert resumed["state"] == "waiting" and resumed["position"] == number, resumed

    await set_status(expert, "available")
    for number, call in enumerate(calls, start=1):
        await answer(expert, call)
        await kiosks[number].expect("call.connected", call=call)
        await hang_up_and_wrap_up(expert, call)
        assert (await kiosks[number].expect("call.ended", call=call))["outcome"] == "answered"

    rows = await read_events(redis_server.url)
    assert calls_of(rows, "CallQueued") == calls
    assert calls_of(rows, "CallConnected") == calls
    assert sorted(calls_of(rows, "CallResumed")) == sorted(lost_calls)
    assert_never_ended_early(rows, calls)


async def test_call_of_an_expert_on_a_killed_node_goes_back_to_the_head_of_the_queue(
    start_nodes: StartNodes, redis_server: RedisServer, parties: Parties
) -> None:
    node_a, node_b, node_c = await start_nodes(
        3, kiosks=3, experts=2, priority_kiosks=1, node_cutoff_s=1.0, expert_grace_s=1
    )
    doomed = await parties.expert(node_b, "expert-01", available=True)
    spare = await parties.expert(node_c, "expert-02", available=False)
    caller = await parties.kiosk(node_a, "kiosk-002")
    call = (await request_call(caller))["call"]
    await answer(doomed, call)
    await caller.expect("call.connected", call=call)
    # A priority caller now waits: only the head of the queue comes before it.
    urgent = await parties.kiosk(node_c, "kiosk-001")
    waiting = await request_call(urgent)
    assert waiting["position"] == 1

    await node_b.kill()
    lost = await caller.expect("call.peer_state", timeout=10, call=call)
    assert lost["state"] == "lost" and lost["grace_s"] <= 1, lost
    requeued = await caller.expect("call.requeued", timeout=10, call=call)
    assert requeued["position"] == 1 and requeued["reason"] == "expert_lost", requeued
    await urgent.expect("call.position", call=waiting["call"], position=2)

    await set_status(spare, "available")
    connected = await answer(spare, call)
    assert connected["peer"]["id"] == "kiosk-002"
    again = await caller.expect("call.connected", call=call)
    assert again["peer"]["id"] == "expert-02"
    await hang_up_and_wrap_up(spare, call)
    await answer(spare, waiting["call"])
    await hang_up_and_wrap_up(spare, waiting["call"])

    rows = await read_events(redis_server.url)
    assert calls_of(rows, "CallQueued") == [call, waiting["call"]]
    assert calls_of(rows, "CallConnected") == [call, call, waiting["call"]]
    assert calls_of(rows, "CallRequeued") == [call]
    assert [r["expert"] for r in of_kind(rows, "CallConnected", [call])] == [
        "expert-01",
        "expert-02",
    ]
    assert_never_ended_early(rows, [call, waiting["call"]])


async def test_kiosk_of_a_killed_node_resumes_its_connected_call_through_another_node(
    start_nodes: StartNodes, redis_server: RedisServer, parties: Parties
) -> None:
    node_a, node_b, node_c = await start_nodes(
        3, kiosks=2, experts=1, node_cutoff_s=1.0, kiosk_grace_s=30
    )
    expert = await parties.expert(node_a, "expert-01", available=True)
    kiosk = await parties.kiosk(node_c, "kiosk-001")
    call = (await request_call(kiosk))["call"]
    await answer(expert, call)
    await kiosk.expect("call.connected", call=call)

    await node_c.kill()
    lost = await expert.expect("call.peer_state", timeout=10, call=call)
    assert lost["state"] == "lost" and 0 < lost["grace_s"] <= 30, lost
    kiosk, resumed = await parties.resume_kiosk(node_b, "kiosk-001")
    assert resumed["call"] == call and resumed["state"] == "connected", resumed
    assert resumed["position"] is None
    await expert.expect("call.peer_state", call=call, state="back")
    # Both are told again, so that the expert starts a new media session.
    await expert.expect("call.connected", call=call)
    await kiosk.expect("call.connected", call=call)
    sdp = {"type": "offer", "sdp": "v=0\r\n"}
    await expert.send({"type": "rtc.sdp", "call": call, "description": sdp})
    assert (await kiosk.expect("rtc.sdp", call=call))["description"] == sdp

    rows = await read_events(redis_server.url)
    assert of_kind(rows, "CallEnded") == []
    assert calls_of(rows, "CallQueued") == [call]
    assert calls_of(rows, "CallConnected") == [call]
    assert calls_of(rows, "PartyLost") == [call] and calls_of(rows, "PartyBack") == [call]

    assert (await kiosk.request({"type": "call.hangup", "call": call}))["type"] == "ack"
    ended = await expert.expect("call.ended", call=call)
    assert ended["reason"] == "hangup_kiosk", ended
    await expert.expect("wrapup.started", call=call)
    rows = await read_events(redis_server.url)
    assert_never_ended_early(rows, [call])


# ---------------------------------------------------------------------- Redis down


@pytest.fixture(params=["redis_server", "persistent_redis"], ids=["no-persistence", "append-only"])
def any_redis(request: pytest.FixtureRequest) -> RedisServer:
    redis: RedisServer = request.getfixturevalue(request.param)
    return redis


async def test_redis_outage_keeps_websockets_and_the_queue_and_heals_by_itself(
    any_redis: RedisServer, clusters: Callable[[RedisServer], Cluster], parties: Parties
) -> None:
    redis = any_redis
    nodes = await clusters(redis).start(2, kiosks=5, experts=2, kiosk_grace_s=30)
    node_a, node_b = nodes
    expert = await parties.expert(node_a, "expert-01", available=True)
    await parties.expert(node_b, "expert-02", available=False)
    talker = await parties.kiosk(node_b, "kiosk-001")
    talking = (await request_call(talker))["call"]
    await answer(expert, talking)
    await talker.expect("call.connected", call=talking)
    waiters = {n: await parties.kiosk(nodes[n % 2], kiosk_id(n)) for n in (2, 3, 4)}
    waiting = [(await request_call(waiters[n]))["call"] for n in (2, 3, 4)]
    late = await parties.kiosk(node_b, "kiosk-005")
    # Its sign-in must be stored before the outage, or its retry would race the test.
    await wait_for_journal(redis.url, lambda j: any(r.get("kiosk") == "kiosk-005" for r in j))

    await redis.stop()
    refused = await late.request(
        {"type": "call.request", "service": "caf", "beneficiary": "1"}, timeout=15
    )
    assert refused["type"] == "error" and refused["code"] == "service_unavailable", refused
    for client in (expert, talker):
        assert (await client.request({"type": "ping"}, timeout=15))["type"] == "pong"
    sdp = {"type": "offer", "sdp": "v=0\r\n"}
    relay = {"type": "rtc.sdp", "call": talking, "description": sdp}
    refused = await expert.request(relay, timeout=15)
    assert refused["type"] == "error" and refused["code"] == "service_unavailable", refused
    # A presence change the store cannot take now: kiosk-004 (on node A) leaves.
    await waiters[4].close()
    assert is_open(expert) and is_open(talker)

    await redis.start()
    # With nobody asking anything, node A records kiosk-004's loss once Redis is back
    # (a Redis that lost its data is first given back the queue the nodes hold).
    rows = await wait_for_events(
        redis.url, lambda rows: bool(of_kind(rows, "PartyLost", [waiting[2]]))
    )
    assert of_kind(rows, "CallEnded") == []
    # Patient from here on: a stale Redis connection may still refuse one request
    # (see the test below); what this test checks is that nothing was lost.
    queued = await request_call(late, patient=True)
    assert queued["position"] == 4, (queued, logs(nodes))
    waiting.append(queued["call"])
    waiters[4], resumed = await parties.resume_kiosk(node_b, "kiosk-004")
    assert resumed["call"] == waiting[2] and resumed["position"] == 3, resumed

    await send_ok(expert, relay, patient=True)
    assert (await talker.expect("rtc.sdp", call=talking))["description"] == sdp
    await hang_up_and_wrap_up(expert, talking, patient=True)
    assert (await talker.expect("call.ended", call=talking))["reason"] == "hangup_expert"
    clients = [waiters[2], waiters[3], waiters[4], late]
    for call, kiosk in zip(waiting, clients, strict=True):
        await answer(expert, call, patient=True)
        await kiosk.expect("call.connected", call=call)
        await hang_up_and_wrap_up(expert, call, patient=True)
    assert is_open(expert) and is_open(talker)

    rows = await read_events(redis.url)
    connected = calls_of(rows, "CallConnected")
    assert connected[-4:] == waiting
    assert_never_ended_early(rows, waiting)
    if redis.persistence:  # without it, the log before the outage is gone with Redis
        assert calls_of(rows, "CallQueued") == [talking, *waiting]
        assert connected == [talking, *waiting]
        assert_never_ended_early(rows, [talking])
    for node in nodes:
        assert node.process is not None and node.process.returncode is None, logs(nodes)


CANDIDATE = {"candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host", "sdpMid": "0"}


def ice(call: str) -> dict[str, Any]:
    return {"type": "rtc.ice", "call": call, "candidate": CANDIDATE}


async def relay_burst(pairs: list[tuple[JsonClient, JsonClient, str]], rounds: int) -> list[Any]:
    """Every party of every call relays ICE at the same time, ``rounds`` times: relays
    are not serialised by the queue, so the node uses many Redis connections at once."""
    replies: list[Any] = []
    for _ in range(rounds):
        replies += await asyncio.gather(
            *(
                party.request(ice(call))
                for expert, kiosk, call in pairs
                for party in (expert, kiosk)
            )
        )
    return replies


async def test_after_redis_is_back_every_request_succeeds(
    start_nodes: StartNodes, redis_server: RedisServer, parties: Parties
) -> None:
    calls = 8
    (node,) = await start_nodes(1, kiosks=calls, experts=calls)
    pairs: list[tuple[JsonClient, JsonClient, str]] = []
    for number in range(1, calls + 1):
        expert = await parties.expert(node, f"expert-{number:02d}", available=True)
        kiosk = await parties.kiosk(node, kiosk_id(number))
        call = (await request_call(kiosk))["call"]
        await answer(expert, call)
        pairs.append((expert, kiosk, call))
    assert {r["type"] for r in await relay_burst(pairs, 3)} == {"ack"}

    await redis_server.stop()
    refused = await pairs[0][0].request({"type": "call.hangup", "call": pairs[0][2]}, timeout=15)
    assert refused.get("code") == "service_unavailable", refused
    await redis_server.start()
    # Back once a relay and a queue change go through; from then on nothing may fail.
    await send_ok(pairs[0][0], ice(pairs[0][2]), patient=True)
    await send_ok(pairs[0][0], {"type": "expert.status", "status": "available"}, patient=True)
    replies = await relay_burst(pairs, 5)
    refused = [r for r in replies if r["type"] != "ack"]
    assert refused == [], f"{len(refused)} of {len(replies)} refused: {refused[:3]}"
    for expert, _, call in pairs:
        await hang_up_and_wrap_up(expert, call)


# ---------------------------------------------------------------------- same name again


async def call_to_an_expert_on_node_b(
    start_nodes: StartNodes, parties: Parties
) -> tuple[Node, JsonClient, JsonClient, str]:
    """Two nodes with a cut-off far longer than a test: kiosk-001 on node A in a call
    with expert-01 on node B, and expert-02 on node A, on break. Returns node B, the
    spare expert, the kiosk and the call."""
    node_a, node_b = await start_nodes(
        2, kiosks=2, experts=2, node_cutoff_s=30, kiosk_grace_s=30, expert_grace_s=1
    )
    expert = await parties.expert(node_b, "expert-01", available=True)
    spare = await parties.expert(node_a, "expert-02", available=False)
    caller = await parties.kiosk(node_a, "kiosk-001")
    call = str((await request_call(caller))["call"])
    await answer(expert, call)
    await caller.expect("call.connected", call=call)
    return node_b, spare, caller, call


async def test_node_restarted_under_its_name_releases_its_parties_at_once(
    start_nodes: StartNodes, redis_server: RedisServer, parties: Parties
) -> None:
    # A cut-off far longer than the test: only the restart itself can release them.
    node_b, spare, caller, call = await call_to_an_expert_on_node_b(start_nodes, parties)
    waiter = await parties.kiosk(node_b, "kiosk-002")
    waiting = (await request_call(waiter))["call"]

    await node_b.kill()
    await node_b.start()
    lost = await caller.expect("call.peer_state", timeout=10, call=call)
    assert lost["state"] == "lost", lost
    requeued = await caller.expect("call.requeued", timeout=10, call=call)
    assert requeued["position"] == 1, requeued
    await wait_for_events(
        redis_server.url, lambda rows: bool(of_kind(rows, "PartyLost", [waiting]))
    )
    waiter, resumed = await parties.resume_kiosk(node_b, "kiosk-002")
    assert resumed["call"] == waiting and resumed["state"] == "waiting", resumed
    assert resumed["position"] == 2, resumed

    await set_status(spare, "available")
    await answer(spare, call)
    await hang_up_and_wrap_up(spare, call)
    await answer(spare, waiting)
    await waiter.expect("call.connected", call=waiting)
    await hang_up_and_wrap_up(spare, waiting)
    rows = await read_events(redis_server.url)
    assert_never_ended_early(rows, [call, waiting])


async def test_node_stopped_on_purpose_releases_its_parties_at_once(
    start_nodes: StartNodes, redis_server: RedisServer, parties: Parties
) -> None:
    # A cut-off far longer than the test: only the node's own goodbye can release them.
    node_b, spare, caller, call = await call_to_an_expert_on_node_b(start_nodes, parties)

    await node_b.stop()  # SIGTERM: the node closes its sockets and says it is leaving

    lost = await caller.expect("call.peer_state", timeout=5, call=call)
    assert lost["state"] == "lost", lost
    requeued = await caller.expect("call.requeued", timeout=5, call=call)
    assert requeued["position"] == 1, requeued
    await set_status(spare, "available")
    await answer(spare, call)
    await hang_up_and_wrap_up(spare, call)
    rows = await read_events(redis_server.url)
    assert_never_ended_early(rows, [call])
