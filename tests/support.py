"""Shared test helpers: an in-process server on a free loopback port, the protocol client
seen as JSON objects, and the simulator as a process."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, cast
from zoneinfo import ZoneInfo

import msgspec
from aiohttp import web
from prometheus_client import CollectorRegistry

from queueing import QueueStore
from signaling.messages import Message
from visio_client import Client, ServerError
from visio_server.app import create_app
from visio_server.auth import mint_token
from visio_server.config import Config, load_config

TEST_CONFIG = """
[server]
host = "127.0.0.1"
port = 0
rate_per_s = 200
rate_burst = 200
heartbeat_s = {heartbeat_s}
hello_timeout_s = {hello_timeout_s}
max_frame_bytes = 65536
outbound_queue = {outbound_queue}

[auth]
algorithms = ["HS256"]
hs256_secret = "test-secret-0123456789-abcdefghijklmnop"

[storage]
backend = "{backend}"
data_dir = "{data_dir}"

[queue]
kiosk_grace_s = {kiosk_grace_s}
expert_grace_s = {expert_grace_s}
restart_grace_s = 30
decline_cooldown_s = 30

[[services]]
id = "caf"
name = "CAF"
partner = "caf"
always_open = true
beneficiary_pattern = "^[0-9]{{7}}$"
beneficiary_hint = "7 chiffres"
visit_reasons = ["Prestations", "Logement", "Autre"]
offer_timeout_s = {offer_timeout_s}
interpreter = true
rtt_transcript = true

[[services]]
id = "cpam"
name = "CPAM"
partner = "cpam"
always_open = true
visit_reasons = ["Remboursements", "Autre"]

[[services]]
id = "france-travail"
name = "France Travail"
partner = "france-travail"
always_open = true
visit_reasons = ["Inscription", "Autre"]

[[services]]
id = "interpretes"
name = "Interprètes"
partner = "interpretes"
always_open = true
languages = ["lsf", "ar"]
interpreting = true
offer_timeout_s = {offer_timeout_s}
wrap_up_s = 30
visit_reasons = ["Interprétation"]

[[services]]
id = "ferme"
name = "Service fermé"
partner = "carsat"
hours = {{ {closed_day} = ["09:00-12:00"] }}
holidays = []

[[kiosks]]
id = "kiosk-1"
name = "Mairie de Test"
place = "Salle 1"
services = ["caf", "cpam", "france-travail", "ferme"]

[[kiosks]]
id = "kiosk-2"
name = "France Services Test"
place = "Accueil"
services = ["caf", "cpam"]

[[kiosks]]
id = "kiosk-3"
name = "Kiosque Test"
place = "Gare"
services = ["caf", "cpam"]

[[experts]]
id = "expert-1"
name = "Camille Expert"
partner = "caf"
services = ["caf"]

[[experts]]
id = "expert-2"
name = "Dominique Expert"
partner = "cpam"
services = ["cpam"]

[[experts]]
id = "interp-1"
name = "Léa Interprète"
partner = "interpretes"
services = ["interpretes"]
languages = ["lsf", "fr"]
role = "interpreter"

[[admins]]
id = "super-cpam"
name = "Superviseur CPAM"
role = "supervisor"
partner = "cpam"

[[admins]]
id = "admin-1"
name = "Admin"
role = "admin"

[[admins]]
id = "super-caf"
name = "Superviseur CAF"
role = "supervisor"
partner = "caf"
"""


def write_test_config(folder: Path, **overrides: Any) -> Path:
    # "ferme" opens three days from today only, so it is closed whenever a test runs.
    today = datetime.now(ZoneInfo("Europe/Paris")).weekday()
    values = {
        "closed_day": ("mon", "tue", "wed", "thu", "fri", "sat", "sun")[(today + 3) % 7],
        "backend": "memory",
        "data_dir": str(folder / "data"),
        "kiosk_grace_s": 30,
        "expert_grace_s": 2,
        "offer_timeout_s": 20,
        "hello_timeout_s": 5,
        "heartbeat_s": 2,
        "outbound_queue": 512,
        **overrides,
    }
    path = folder / "config.toml"
    path.write_text(TEST_CONFIG.format(**values), "utf-8")
    return path


@dataclass
class RunningServer:
    config: Config
    config_path: Path
    app: web.Application
    runner: web.AppRunner
    url: str
    registry: CollectorRegistry

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://") + "/ws"

    def token(self, role: str, sub: str, **claims: Any) -> str:
        return mint_token(self.config, role, sub, **claims)

    async def stop(self) -> None:
        await self.runner.cleanup()


async def start_server(
    config_path: Path, *, store: QueueStore | None = None, port: int = 0
) -> RunningServer:
    config = load_config(config_path)
    registry = CollectorRegistry()
    app = create_app(config, store=store, registry=registry)
    runner = web.AppRunner(app, shutdown_timeout=2)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    bound = runner.addresses[0][1]
    return RunningServer(config, config_path, app, runner, f"http://127.0.0.1:{bound}", registry)


def as_json(message: Message) -> dict[str, Any]:
    """A typed message as the JSON object it is on the wire (``type`` included)."""
    return cast(dict[str, Any], msgspec.to_builtins(message))


class JsonClient:
    """A ``visio_client.Client`` seen as JSON objects: requests are plain dicts sent as
    given (malformed ones too), replies and events come back as dicts, and an ``error``
    reply is returned, not raised, so a test asserts on exactly what the server said.
    Every frame is still decoded against the protocol on the way in."""

    def __init__(self, client: Client) -> None:
        self.client = client

    @classmethod
    async def connect(cls, ws_url: str, *, autoping: bool = True) -> JsonClient:
        return cls(await Client.connect(ws_url, autoping=autoping))

    async def hello(self, token: str) -> dict[str, Any]:
        try:
            return as_json(await self.client.hello(token))
        except ServerError as refused:
            return as_json(refused.to_message())

    async def request(self, message: dict[str, Any], timeout: float = 5) -> dict[str, Any]:
        """Send ``message`` with the next ``id``; its reply, ``error`` included."""
        try:
            return as_json(await self.client.request_raw(message, timeout_s=timeout))
        except ServerError as refused:
            return as_json(refused.to_message())

    async def send(self, message: dict[str, Any]) -> None:
        await self.client.send_raw(message)

    async def send_raw(self, frame: str | bytes) -> None:
        await self.client.send_raw(frame)

    async def expect(self, kind: str, timeout: float = 5, **match: Any) -> dict[str, Any]:
        """The next event of type ``kind`` (matching ``match``); skips others."""
        return as_json(await self.client.expect(kind, timeout_s=timeout, **match))

    async def next_event(self, timeout: float | None = None) -> dict[str, Any]:
        return as_json(await self.client.next_event(timeout_s=timeout))

    def take_events(self) -> list[dict[str, Any]]:
        """The events received and not read yet, without waiting."""
        return [as_json(event) for event in self.client.take_events()]

    @property
    def close_code(self) -> int | None:
        return self.client.close_code

    @property
    def closed(self) -> bool:
        return self.client.closed

    async def wait_closed(self, timeout: float = 5) -> int | None:
        return await self.client.wait_closed(timeout_s=timeout)

    async def close(self) -> None:
        await self.client.close()


EXPERT_CAF = {"services": ["caf"], "name": "Camille Expert", "partner": "caf"}


async def caf_parties(server: RunningServer) -> tuple[JsonClient, JsonClient]:
    """kiosk-1 signed in, and expert-1 of CAF signed in and available; the caller closes them."""
    expert = await JsonClient.connect(server.ws_url)
    await expert.hello(server.token("expert", "expert-1", **EXPERT_CAF))
    await expert.request({"type": "expert.status", "status": "available"})
    kiosk = await JsonClient.connect(server.ws_url)
    await kiosk.hello(server.token("kiosk", "kiosk-1"))
    return kiosk, expert


async def answered_call(server: RunningServer) -> tuple[JsonClient, JsonClient, str]:
    """A CAF call from kiosk-1 connected to expert-1; the caller closes both clients."""
    kiosk, expert = await caf_parties(server)
    queued = await kiosk.request(
        {"type": "call.request", "service": "caf", "beneficiary": "1234567"}
    )
    await expert.expect("call.offered", call=queued["call"])
    await expert.request({"type": "offer.accept", "call": queued["call"]})
    await kiosk.expect("call.connected")
    await expert.expect("call.connected")
    return kiosk, expert, str(queued["call"])


def assert_sim_calls_carried_media(summary: dict[str, Any], calls: int) -> None:
    """``visio-sim --json`` placed ``calls`` calls, all connected and completed, with
    media both ways: 2 s at 30 fps and 50 audio frames/s are well over these floors."""
    assert summary["errors"] == [], summary["errors"]
    assert summary["calls_requested"] == calls
    assert summary["calls_connected"] == calls
    assert summary["calls_completed"] == calls
    assert summary["calls_with_media_both_ways"] == calls
    for side in ("kiosks", "experts"):
        assert summary[f"video_frames_received_by_{side}"] >= calls * 20, summary
        assert summary[f"audio_frames_received_by_{side}"] >= calls * 40, summary


REPO = Path(__file__).resolve().parents[1]
SIM_TIMEOUT_S = 90.0


async def start_sim_process(*args: str) -> asyncio.subprocess.Process:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "visio_sim",
        *args,
        "--json",
        "--timeout",
        str(SIM_TIMEOUT_S),
        cwd=REPO,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def run_sim_process(*args: str) -> tuple[int, dict[str, Any], str]:
    """Run ``python -m visio_sim ARGS --json``; (exit code, last-line JSON, stderr)."""
    process = await start_sim_process(*args)
    try:
        async with asyncio.timeout(SIM_TIMEOUT_S + 30):
            stdout, stderr = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    last_line = stdout.decode().strip().splitlines()[-1]
    return process.returncode, json.loads(last_line), stderr.decode()
