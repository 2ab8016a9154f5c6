"""The server when its store fails, when consoles reload, when tokens run out, after a restart."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

from queueing.stores import MemoryQueueStore
from tests.server.test_security import connected_call
from tests.support import (
    EXPERT_CAF,
    JsonClient,
    answered_call,
    caf_parties,
    start_server,
    write_test_config,
)
from visio_server.keys import DESK

Connect = Callable[..., Awaitable[JsonClient]]


class FailingStore(MemoryQueueStore):
    """A real in-memory store whose next writes fail, as a full disk would."""

    def __init__(self) -> None:
        super().__init__()
        self.failures = 0

    async def append(
        self, entry: int, command: dict[str, Any], events: list[dict[str, Any]]
    ) -> None:
        if self.failures:
            self.failures -= 1
            raise OSError(28, "No space left on device")
        await super().append(entry, command, events)


async def test_a_failed_write_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    store = FailingStore()
    running = await start_server(write_test_config(tmp_path), store=store)
    kiosk, expert = await caf_parties(running)
    try:
        store.failures = 1
        refused = await kiosk.request(
            {"type": "call.request", "service": "caf", "beneficiary": "1234567"}
        )
        assert refused["type"] == "error" and refused["code"] == "service_unavailable"
        desk = running.app[DESK]
        assert desk.machine.kiosk_call("kiosk-1") is None
        assert desk.ready

        queued = await kiosk.request(
            {"type": "call.request", "service": "caf", "beneficiary": "1234567"}
        )
        assert queued["type"] == "call.queued"
        assert (await expert.expect("call.offered"))["call"] == queued["call"]
        entries = [n for n, _ in store._journal]
        assert entries == sorted(set(entries)) == list(range(1, len(entries) + 1))
    finally:
        await kiosk.close()
        await expert.close()
        await running.stop()


async def test_timers_keep_firing_after_a_failed_timer_write(tmp_path: Path) -> None:
    store = FailingStore()
    running = await start_server(write_test_config(tmp_path, offer_timeout_s=0.3), store=store)
    kiosk, expert = await caf_parties(running)
    try:
        await kiosk.request({"type": "call.request", "service": "caf", "beneficiary": "1234567"})
        await expert.expect("call.offered")
        store.failures = 1  # the offer timeout's write fails once
        withdrawn = await expert.expect("offer.withdrawn", timeout=5)
        assert withdrawn["reason"] == "timeout"
        state = await expert.expect("expert.state", reason="offer_timeout")
        assert state["status"] == "break"
    finally:
        await kiosk.close()
        await expert.close()
        await running.stop()


async def test_console_reloaded_while_ringing_rings_again(connect: Connect) -> None:
    expert = await connect("expert", "expert-1", **EXPERT_CAF)
    await expert.request({"type": "expert.status", "status": "available"})
    kiosk = await connect("kiosk", "kiosk-1")
    queued = await kiosk.request(
        {"type": "call.request", "service": "caf", "beneficiary": "1234567"}
    )
    await expert.expect("call.offered")
    reloaded = await connect("expert", "expert-1", **EXPERT_CAF)
    again = await reloaded.expect("call.offered")
    assert again["call"] == queued["call"] and 0 < again["expires_in_s"] <= 20
    assert (await reloaded.request({"type": "offer.accept", "call": queued["call"]}))[
        "type"
    ] == "ack"
    assert (await kiosk.expect("call.connected"))["call"] == queued["call"]


async def test_an_expert_named_like_a_kiosk_cannot_end_its_call(connect: Connect) -> None:
    kiosk, _expert, call = await connected_call(connect)
    impostor = await connect("expert", "kiosk-1", services=["cpam"], partner="cpam")
    for kind in ("call.hangup", "call.media_failed"):
        reply = await impostor.request({"type": kind, "call": call})
        assert reply["code"] == "not_your_call"
    assert (await kiosk.request({"type": "ping"}))["type"] == "pong"


async def test_a_silent_connection_is_closed_when_its_token_expires(tmp_path: Path) -> None:
    running = await start_server(write_test_config(tmp_path))
    admin = await JsonClient.connect(running.ws_url)
    try:
        leeway = running.config.auth.leeway_s
        token = running.token("admin", "admin-1", exp=int(time.time() - leeway + 1.5))
        await admin.hello(token)
        assert (await admin.request({"type": "queue.subscribe"}))["type"] == "ack"
        expired = await admin.expect("error", timeout=5)
        assert expired["code"] == "not_authenticated" and "expired" in expired["reason"]
        assert await admin.wait_closed() == aiohttp.WSCloseCode.POLICY_VIOLATION
    finally:
        await admin.close()
        await running.stop()


async def test_a_restart_does_not_count_past_calls_again(tmp_path: Path) -> None:
    config = write_test_config(tmp_path, backend="file")
    first = await start_server(config)
    kiosk, expert, call = await answered_call(first)
    await kiosk.request({"type": "call.hangup", "call": call})
    await expert.close()
    await kiosk.close()
    await first.stop()

    second = await start_server(config)
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{second.url}/metrics") as reply,
        ):
            text = await reply.text()
        assert 'visio_calls_total{outcome="answered",service="caf"}' not in text
        assert 'visio_offers_total{result="accepted",service="caf"}' not in text
    finally:
        await second.stop()
