"""The /metrics endpoint: accepted by promtool, and it tells the truth about the queue."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import Awaitable, Callable

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from tests.server.test_security import connected_call
from tests.support import EXPERT_CAF, JsonClient, RunningServer

Connect = Callable[..., Awaitable[JsonClient]]


async def scrape(server: RunningServer) -> str:
    async with aiohttp.ClientSession() as session, session.get(f"{server.url}/metrics") as reply:
        assert reply.status == 200
        return await reply.text()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


async def test_promtool_accepts_the_metrics(server: RunningServer, connect: Connect) -> None:
    kiosk, _expert, call = await connected_call(connect)
    await kiosk.request({"type": "call.hangup", "call": call})
    text = await scrape(server)
    promtool = shutil.which("promtool")
    assert promtool, "promtool is installed by scripts/test.sh (Debian package prometheus)"
    checked = await asyncio.to_thread(
        subprocess.run,
        [promtool, "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


async def test_metrics_follow_the_queue(server: RunningServer, connect: Connect) -> None:
    expert = await connect("expert", "expert-1", **EXPERT_CAF)
    kiosk = await connect("kiosk", "kiosk-1")
    await kiosk.request({"type": "call.request", "service": "caf", "beneficiary": "1234567"})
    before = samples(await scrape(server))
    assert before[("visio_queue_waiting_calls", (("service", "caf"),))] == 1
    assert before[("visio_experts", (("service", "caf"), ("state", "break")))] == 1
    assert before[("visio_connections", (("role", "kiosk"),))] == 1
    assert before[("visio_service_open", (("service", "ferme"),))] == 0

    await expert.request({"type": "expert.status", "status": "available"})
    offer = await expert.expect("call.offered")
    await expert.request({"type": "offer.accept", "call": offer["call"]})
    await kiosk.expect("call.connected")
    after = samples(await scrape(server))
    assert after[("visio_queue_waiting_calls", (("service", "caf"),))] == 0
    assert after[("visio_queue_connected_calls", (("service", "caf"),))] == 1
    assert after[("visio_experts", (("service", "caf"), ("state", "in_call")))] == 1
    assert after[("visio_offers_total", (("result", "accepted"), ("service", "caf")))] == 1
    answered = (("outcome", "answered"), ("service", "caf"))
    assert after[("visio_call_wait_seconds_count", answered)] == 1
    bucket = ("visio_call_wait_seconds_bucket", (("le", "120.0"), *answered))
    assert after[bucket] == 1, "a bucket sits at the service-level threshold"


async def test_refused_calls_are_counted_by_outcome(
    server: RunningServer, connect: Connect
) -> None:
    await connect("expert", "expert-1", **EXPERT_CAF)
    kiosk = await connect("kiosk", "kiosk-1")
    closed = await kiosk.request({"type": "call.request", "service": "ferme"})
    assert closed["code"] == "service_closed" and closed["details"]["next_opening"] > 0
    nobody = await kiosk.request({"type": "call.request", "service": "cpam"})
    assert nobody["code"] == "no_expert"
    found = samples(await scrape(server))
    assert found[("visio_calls_total", (("outcome", "closed"), ("service", "ferme")))] == 1
    assert found[("visio_calls_total", (("outcome", "no_expert"), ("service", "cpam")))] == 1
