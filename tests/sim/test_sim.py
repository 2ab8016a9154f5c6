"""visio-sim: real aiortc kiosks and experts placing calls through a real server.

The server of the ``server`` fixture runs in this test's event loop, so the sim runs as
an asyncio subprocess: a blocking ``subprocess.run`` would stop the server it talks to.
The sim offers only 127.0.0.1 as ICE host candidate (the server URL is on loopback),
because aioice leaves 127.0.0.1 out on its own.
"""

from __future__ import annotations

import asyncio
import random
import re
from pathlib import Path
from typing import Any

import pytest

from signaling.messages import ServiceInfo
from tests.support import (
    assert_sim_calls_carried_media,
    run_sim_process,
    start_sim_process,
)
from visio_sim import SimOptions, beneficiary_for, run_sim

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.media
async def test_sim_calls_connect_and_carry_media_both_ways(server: Any) -> None:
    code, summary, stderr = await run_sim_process(
        "--server",
        server.url,
        "--config",
        str(server.config_path),
        "--kiosks",
        "2",
        "--experts",
        "2",
        "--calls",
        "4",
        "--media",
        "2",
    )
    assert summary["errors"] == [], stderr
    assert_sim_calls_carried_media(summary, 4)
    assert summary["setup_ms_p50"] is not None
    assert summary["connected_ms_p50"] <= summary["setup_ms_p50"]
    assert code == 0


@pytest.mark.media
async def test_sim_cleans_up_after_a_run_killed_mid_call(server: Any, connect: Any) -> None:
    # The server keeps a vanished kiosk's call and gives a returning expert its call back;
    # the next run must end those leftovers and still place every call of its own.
    server_args = ("--server", server.url, "--config", str(server.config_path))
    admin = await connect("admin", "admin-1")
    assert (await admin.request({"type": "queue.subscribe"}))["type"] == "ack"
    killed = await start_sim_process(*server_args, "--calls", "1", "--media", "60")
    try:
        async with asyncio.timeout(30):
            while not any(q["connected"] for q in (await admin.expect("queue.status"))["services"]):
                pass
    finally:
        killed.kill()
        await killed.communicate()

    code, summary, stderr = await run_sim_process(*server_args, "--calls", "2", "--media", "0.5")
    assert summary["errors"] == [], stderr
    assert summary["calls_placed"] == summary["calls_completed"] == 2
    assert code == 0


@pytest.mark.media
async def test_sim_reports_failure_when_no_server_answers(unused_tcp_port: int) -> None:
    code, summary, _ = await run_sim_process("--server", f"http://127.0.0.1:{unused_tcp_port}")
    assert code == 1
    assert summary["calls_connected"] == 0
    assert summary["errors"]


@pytest.mark.media
async def test_run_sim_in_process_records_each_call(server: Any) -> None:
    options = SimOptions(servers=(server.url,), calls=2, media_s=0.5)
    run = await run_sim(options, server.config)
    assert run.errors == []
    assert run.succeeded
    assert len(run.calls) == 2
    for record in run.calls.values():
        assert record.outcome == "answered"
        assert record.wrapped_up
        assert record.setup_ms is not None and record.connected_ms is not None
        assert 0 < record.connected_ms < record.setup_ms


@pytest.mark.parametrize(
    ("pattern", "hint"),
    [
        (r"^[0-9]{7}$", ""),
        (r"^[0-9A-Z]{8}$", ""),
        (r"^[0-9]{8,10}$", ""),
        (r"^\d{15}$", ""),
        (r"^(AB|CD)-[0-9]{4}$", "AB-1234"),
    ],
)
def test_beneficiary_numbers_match_their_pattern(pattern: str, hint: str) -> None:
    service = _service(pattern, hint)
    rng = random.Random(7)
    for _ in range(50):
        assert re.fullmatch(pattern, beneficiary_for(service, rng))


def test_beneficiary_without_pattern_is_short_text() -> None:
    number = beneficiary_for(_service(None, ""), random.Random(1))
    assert 0 < len(number) <= 32


def test_beneficiary_pattern_not_understood_is_an_error() -> None:
    with pytest.raises(ValueError, match="not understood"):
        beneficiary_for(_service(r"^(AB|CD)-[0-9]{4}$", ""), random.Random(1))


def _service(pattern: str | None, hint: str) -> ServiceInfo:
    return ServiceInfo(
        id="svc",
        name="Service",
        partner="partner",
        open=True,
        beneficiary_pattern=pattern,
        beneficiary_hint=hint,
    )
