"""Faults over real WebSockets: lost experts, dropped kiosks, a server restart."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path

from queueing.stores import FileQueueStore
from tests.server.test_security import connected_call
from tests.support import EXPERT_CAF, JsonClient, RunningServer, start_server, write_test_config
from visio_server.keys import DESK

Connect = Callable[..., Awaitable[JsonClient]]


async def available_expert(connect: Connect, expert_id: str = "expert-1") -> JsonClient:
    expert = await connect("expert", expert_id, **EXPERT_CAF)
    await expert.request({"type": "expert.status", "status": "available"})
    return expert


async def test_expert_lost_in_call_kiosk_told_then_call_requeued_at_head(connect: Connect) -> None:
    kiosk, expert, call = await connected_call(connect)
    waiting = await connect("kiosk", "kiosk-2")
    await waiting.request({"type": "call.request", "service": "caf", "beneficiary": "2222222"})
    await expert.close()
    lost = await kiosk.expect("call.peer_state", timeout=3)
    assert lost["state"] == "lost" and lost["grace_s"] > 0
    requeued = await kiosk.expect("call.requeued", timeout=5)
    assert requeued == {
        "type": "call.requeued",
        "call": call,
        "position": 1,
        "reason": "expert_lost",
    }
    assert (await waiting.expect("call.position", position=2))["call"]
    rescuer = await available_expert(connect, "expert-3")
    assert (await rescuer.expect("call.offered"))["call"] == call


async def test_expert_back_within_grace_keeps_the_call(connect: Connect) -> None:
    kiosk, expert, call = await connected_call(connect)
    await expert.close()
    assert (await kiosk.expect("call.peer_state"))["state"] == "lost"
    again = await connect("expert", "expert-1", **EXPERT_CAF)
    assert (await kiosk.expect("call.peer_state"))["state"] == "back"
    renewed = await again.expect("call.connected")
    assert renewed["call"] == call and renewed["initiator"] is True
    assert (await kiosk.expect("call.connected"))["call"] == call


async def test_expert_lost_while_offered_next_expert_gets_the_call(connect: Connect) -> None:
    first = await available_expert(connect, "expert-1")
    kiosk = await connect("kiosk", "kiosk-1")
    queued = await kiosk.request(
        {"type": "call.request", "service": "caf", "beneficiary": "1234567"}
    )
    await first.expect("call.offered")
    second = await connect("expert", "expert-3", **EXPERT_CAF)
    await second.request({"type": "expert.status", "status": "available"})
    await first.close()
    offer = await second.expect("call.offered")
    assert offer["call"] == queued["call"]


async def test_kiosk_drop_and_resume_keeps_position(connect: Connect) -> None:
    await connect("expert", "expert-1", **EXPERT_CAF)
    ahead = await connect("kiosk", "kiosk-2")
    await ahead.request({"type": "call.request", "service": "caf", "beneficiary": "2222222"})
    kiosk = await connect("kiosk", "kiosk-1")
    queued = await kiosk.request(
        {"type": "call.request", "service": "caf", "beneficiary": "1234567"}
    )
    assert queued["position"] == 2
    await kiosk.close()
    back = await connect("kiosk", "kiosk-1")
    resumed = await back.expect("call.resumed")
    assert resumed == {
        "type": "call.resumed",
        "call": queued["call"],
        "service": "caf",
        "state": "waiting",
        "position": 2,
    }


async def test_kiosk_in_call_comes_back_to_the_same_expert(connect: Connect) -> None:
    kiosk, expert, call = await connected_call(connect)
    await kiosk.close()
    assert (await expert.expect("call.peer_state"))["state"] == "lost"
    back = await connect("kiosk", "kiosk-1")
    assert (await back.expect("call.resumed"))["state"] == "connected"
    renewed = await back.expect("call.connected")
    assert renewed["peer"]["id"] == "expert-1"
    assert (await expert.expect("call.peer_state"))["state"] == "back"
    assert (await expert.expect("call.connected"))["call"] == call


async def test_kiosk_gone_for_good_is_abandoned_after_grace(tmp_path: Path) -> None:
    running = await start_server(write_test_config(tmp_path, kiosk_grace_s=0.3))
    clients: list[JsonClient] = []
    try:
        expert = await JsonClient.connect(running.ws_url)
        admin = await JsonClient.connect(running.ws_url)
        kiosk = await JsonClient.connect(running.ws_url)
        clients += [expert, admin, kiosk]
        await expert.hello(running.token("expert", "expert-1", **EXPERT_CAF))
        await admin.hello(running.token("admin", "admin-1"))
        assert (await admin.request({"type": "queue.subscribe"}))["type"] == "ack"
        await kiosk.hello(running.token("kiosk", "kiosk-1"))
        queued = await kiosk.request(
            {"type": "call.request", "service": "caf", "beneficiary": "1234567"}
        )
        await kiosk.close()

        async with asyncio.timeout(5):
            while True:
                rows = await running.app[DESK].store.read_events()
                ended = [
                    r for r in rows if r["kind"] == "CallEnded" and r["call"] == queued["call"]
                ]
                if ended:
                    break
                await asyncio.sleep(0.05)
        final = await admin.expect("queue.status", timeout=5)
        assert next(r["waiting"] for r in final["services"] if r["service"] == "caf") == 0
        assert [(r["outcome"], r["reason"]) for r in ended] == [("abandoned", "kiosk_lost")]
    finally:
        for client in clients:
            await client.close()
        await running.stop()


async def test_restart_loses_no_accepted_event_and_kiosk_resumes(tmp_path: Path) -> None:
    config = write_test_config(tmp_path, backend="file")
    data = tmp_path / "data"
    first = await start_server(config)
    expert = await JsonClient.connect(first.ws_url)
    await expert.hello(first.token("expert", "expert-1", **EXPERT_CAF))
    kiosks = []
    calls = []
    for kiosk_id in ("kiosk-1", "kiosk-2", "kiosk-3"):
        kiosk = await JsonClient.connect(first.ws_url)
        await kiosk.hello(first.token("kiosk", kiosk_id))
        calls.append(
            (
                await kiosk.request(
                    {"type": "call.request", "service": "caf", "beneficiary": "1234567"}
                )
            )["call"]
        )
        kiosks.append(kiosk)
    before = (data / "events.jsonl").read_text().splitlines()
    port = int(first.url.rsplit(":", 1)[1])
    await first.stop()
    for client in (expert, *kiosks):
        await client.close()

    second = await start_server(config, port=port)
    try:
        after = (data / "events.jsonl").read_text().splitlines()
        assert after[: len(before)] == before, "the event log lost or changed rows"
        kinds = [json.loads(row)["kind"] for row in before]
        assert kinds.count("CallQueued") == 3
        back = await JsonClient.connect(second.ws_url)
        await back.hello(second.token("kiosk", "kiosk-2"))
        resumed = await back.expect("call.resumed")
        assert resumed["call"] == calls[1] and resumed["position"] == 2
        store = FileQueueStore(data)
        recovered = await store.load()
        await store.close()
        assert recovered.last_entry >= 5
        await back.close()
    finally:
        await second.stop()


async def test_wait_range_is_given_when_experts_serve(
    server: RunningServer, connect: Connect
) -> None:
    await available_expert(connect)
    kiosks = [await connect("kiosk", k) for k in ("kiosk-1", "kiosk-2", "kiosk-3")]
    replies = [
        await k.request({"type": "call.request", "service": "caf", "beneficiary": "1234567"})
        for k in kiosks
    ]
    assert replies[2]["position"] == 3
    # Callers arriving within a fraction of a second of each other get their range
    # with the reply or, when it is still being computed, in the next call.position.
    second, third = [
        reply if reply["wait_min_s"] is not None else await kiosk.expect("call.position")
        for kiosk, reply in zip(kiosks[1:], replies[1:], strict=True)
    ]
    assert third["wait_min_s"] is not None and third["wait_max_s"] > third["wait_min_s"]
    assert second["wait_max_s"] <= third["wait_max_s"]


async def test_console_reloaded_during_wrap_up_gets_the_reasons_again(connect: Connect) -> None:
    kiosk, expert, call = await connected_call(connect)
    await kiosk.request({"type": "call.hangup", "call": call})
    await expert.expect("wrapup.started")
    await expert.close()
    again = await connect("expert", "expert-1", **EXPERT_CAF)
    wrap = await again.expect("wrapup.started")
    assert wrap["call"] == call and wrap["reasons"] == ["Prestations", "Logement", "Autre"]
    done = await again.request({"type": "wrapup.done", "call": call, "reason": "Autre"})
    assert done["type"] == "ack"


async def test_heartbeat_detects_a_kiosk_that_stopped_answering(tmp_path: Path) -> None:
    running = await start_server(write_test_config(tmp_path, heartbeat_s=0.3))
    clients: list[JsonClient] = []
    try:
        expert = await JsonClient.connect(running.ws_url)
        # autoping off: this client reads frames but never answers the server's pings,
        # as a kiosk whose network vanished without closing its TCP connection.
        mute = await JsonClient.connect(running.ws_url, autoping=False)
        clients += [expert, mute]
        await expert.hello(running.token("expert", "expert-1", **EXPERT_CAF))
        await mute.hello(running.token("kiosk", "kiosk-1"))
        queued = await mute.request(
            {"type": "call.request", "service": "caf", "beneficiary": "1234567"}
        )
        async with asyncio.timeout(5):  # a few heartbeats, not the kiosk grace of 30 s
            while True:
                rows = await running.app[DESK].store.read_events()
                if any(r["kind"] == "PartyLost" and r["call"] == queued["call"] for r in rows):
                    break
                await asyncio.sleep(0.05)
        call = running.app[DESK].machine.call(queued["call"])
        assert call is not None and call.kiosk_lost_until is not None, "kept for the grace period"
    finally:
        for client in clients:
            await client.close()
        await running.stop()
