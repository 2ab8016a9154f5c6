"""The ``visio-server`` command: check-config, token, queue show, serve."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import jwt
from redis.asyncio import Redis

from queueing.stores.redis import RedisQueueStore
from tests.cluster_support import RedisServer
from tests.support import EXPERT_CAF, JsonClient, RunningServer, write_test_config

Connect = Callable[..., Awaitable[JsonClient]]


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "visio_server.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def test_check_config_prints_the_effective_configuration_without_secrets() -> None:
    done = cli("check-config")
    assert done.returncode == 0, done.stderr
    effective = json.loads(done.stdout)
    assert effective["auth"]["hs256_secret"] == "***"
    assert {s["id"] for s in effective["services"]} >= {"caf", "cpam", "france-travail"}
    assert "configuration OK" in done.stderr


def test_unknown_key_is_refused_with_its_path(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[server]\nprot = 80\n[auth]\nhs256_secret = "x"\n')
    done = cli("check-config", "--config", str(config))
    assert done.returncode == 2
    assert "unknown field `prot`" in done.stderr and "$.server" in done.stderr


def test_environment_overlay_overrides_the_file() -> None:
    import os

    env = {**os.environ, "VISIO_SERVER__PORT": "9123", "VISIO_STORAGE__BACKEND": "memory"}
    effective = json.loads(cli("check-config", env=env).stdout)
    assert effective["server"]["port"] == 9123 and effective["storage"]["backend"] == "memory"


def test_token_mints_a_verifiable_expert_token() -> None:
    done = cli("token", "--role", "expert", "--sub", "camille-martin")
    assert done.returncode == 0, done.stderr
    claims = jwt.decode(done.stdout.strip(), options={"verify_signature": False})
    assert claims["role"] == "expert" and claims["sub"] == "camille-martin"
    assert claims["services"] == ["caf", "accueil"] and claims["name"] == "Camille Martin"


async def test_queue_show_prints_each_service_like_a_telephony_queue(
    server: RunningServer, connect: Connect
) -> None:
    await connect("expert", "expert-1", **EXPERT_CAF)
    kiosk = await connect("kiosk", "kiosk-1")
    await kiosk.request({"type": "call.request", "service": "caf", "beneficiary": "1234567"})
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "visio_server.cli",
        "queue",
        "show",
        "--config",
        str(server.config_path),
        "--server",
        server.url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, err.decode()
    text = out.decode()
    assert "caf (CAF) has 1 calls (max 200) in 'longest-idle' strategy" in text
    assert "0 idle, 1 on break" in text


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_serve_starts_on_the_embedded_default_and_serves_the_pages(tmp_path: Path) -> None:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "visio_server.cli",
        "serve",
        "--port",
        str(port),
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        assert process.stdout is not None
        banner = b""
        async with asyncio.timeout(30):
            while b"admin" not in banner or b"eyJ" not in banner:
                banner += await process.stdout.readline()
        assert f"http://127.0.0.1:{port}/kiosk".encode() in banner
        async with aiohttp.ClientSession() as session:
            async with asyncio.timeout(30):
                while True:
                    try:
                        async with session.get(f"http://127.0.0.1:{port}/readyz") as ready:
                            if ready.status == 200:
                                break
                    except aiohttp.ClientConnectionError:
                        pass
                    await asyncio.sleep(0.1)
            for page in ("/kiosk", "/expert", "/admin"):
                async with session.get(f"http://127.0.0.1:{port}{page}") as reply:
                    assert reply.status == 200 and "text/html" in reply.content_type
        assert (tmp_path / "var" / "visio" / "journal.jsonl").exists()
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), 30)


async def test_events_prints_the_event_log_of_a_shared_redis_within_a_window(
    redis_server: RedisServer,
) -> None:
    client = Redis.from_url(redis_server.url)
    store = RedisQueueStore(client)
    await store.load()
    for entry, at in enumerate((1_700_000_000.0, 1_700_086_400.0, 1_700_172_800.0), start=1):
        await store.append(
            entry, {"kind": "Timer", "at": at}, [{"kind": "CallQueued", "at": at, "call": str(at)}]
        )
    await client.aclose()

    done = await asyncio.to_thread(
        cli,
        "events",
        "--redis-url",
        redis_server.url,
        "--since",
        "2023-11-15T22:13:20+00:00",
        "--until",
        "2023-11-16T22:13:20Z",
    )

    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert rows == [{"kind": "CallQueued", "at": 1_700_086_400.0, "call": "1700086400.0"}]


def test_events_reads_the_file_store_and_refuses_a_bad_date(tmp_path: Path) -> None:
    path = write_test_config(tmp_path, backend="file")
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "events.jsonl").write_text(
        '{"n":1,"kind":"CallQueued","at":1700000000.0,"call":"a"}\n', "utf-8"
    )

    done = cli("events", "--config", str(path))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"kind": "CallQueued", "at": 1700000000.0, "call": "a"}

    refused = cli("events", "--config", str(path), "--since", "yesterday")
    assert refused.returncode == 2
    assert "--since: not an ISO 8601 date or time" in refused.stderr


async def test_events_says_when_redis_cannot_be_reached(tmp_path: Path) -> None:
    done = await asyncio.to_thread(
        cli, "events", "--redis-url", f"redis://127.0.0.1:{free_port()}/0"
    )
    assert done.returncode == 1
    assert "cannot read the event log" in done.stderr
