"""Offer latency with a loaded queue, beside a bare WebSocket round trip.

With N calls waiting across four services and E experts connected (on break), measures:

- request -> offer: a kiosk asks for a fifth service that has free experts; time until
  the offer reaches one of them (the machine still walks the loaded queues);
- available -> offer: an expert of a loaded service goes available; time until the
  offer of that service's head call reaches it.

Both include two loopback hops (client -> server -> client), so the reference is a
bare aiohttp WebSocket echo round trip measured in the same run. The server runs in
its own process with the embedded default store (journal and event log on disk).
Target: p99 under 10 ms with 1,000 waiting and 200 experts.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp

from bench._common import bench_parser, ms, percentile, report
from visio_server.auth import mint_token
from visio_server.config import load_config

LOADED = ("alpha", "beta", "gamma", "delta")
PROBE = "probe"
SECRET = "bench-secret-0123456789-abcdefghijklmnop"

_ECHO_SERVER = """
import sys
from aiohttp import web
async def echo(request):
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    async for msg in ws:
        await ws.send_str(msg.data)
    return ws
app = web.Application()
app.router.add_get("/ws", echo)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None)
"""


def bench_config(waiting: int, experts: int, data_dir: Path) -> str:
    lines = [
        "[server]",
        'host = "127.0.0.1"',
        "rate_per_s = 1000",
        "rate_burst = 1000",
        "outbound_queue = 4096",
        "[auth]",
        f'hs256_secret = "{SECRET}"',
        "[storage]",
        'backend = "file"',
        f'data_dir = "{data_dir}"',
    ]
    for service in (*LOADED, PROBE):
        lines += [
            "[[services]]",
            f'id = "{service}"',
            f'name = "{service.title()}"',
            'partner = "bench"',
            "always_open = true",
            f"max_waiting = {waiting + 10}",
            "offer_timeout_s = 60",
        ]
    for index in range(waiting + 1):
        lines += [
            "[[kiosks]]",
            f'id = "kiosk-{index}"',
            f'name = "Kiosk {index}"',
            'place = "Bench"',
            f'services = ["{LOADED[index % len(LOADED)]}", "{PROBE}"]',
        ]
    return "\n".join(lines) + "\n"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@asynccontextmanager
async def subprocess_server(args: list[str], port: int) -> AsyncIterator[str]:
    process = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )
    try:
        async with asyncio.timeout(30):
            while True:
                try:
                    _, writer = await asyncio.open_connection("127.0.0.1", port)
                    writer.close()
                    break
                except OSError:
                    await asyncio.sleep(0.05)
        yield f"ws://127.0.0.1:{port}/ws"
    finally:
        process.terminate()
        await process.wait()


class Client:
    """A minimal protocol client: requests by id, one queue per awaited message type."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.next_id = 0
        self.waiters: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for frame in self.ws:
            message = json.loads(frame.data)
            key = message.get("id") or message["type"]
            waiter = self.waiters.pop(key, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(message)

    def expect(self, key: str) -> asyncio.Future[dict[str, Any]]:
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.waiters[key] = future
        return future

    async def request(self, message: dict[str, Any]) -> dict[str, Any]:
        self.next_id += 1
        key = str(self.next_id)
        reply = self.expect(key)
        await self.ws.send_str(json.dumps({**message, "id": key}))
        return await asyncio.wait_for(reply, 30)

    async def close(self) -> None:
        await self.ws.close()
        await self.reader


async def open_client(session: aiohttp.ClientSession, url: str, token: str) -> Client:
    client = Client(await session.ws_connect(url, max_msg_size=0))
    welcome = await client.request({"type": "hello", "token": token})
    assert welcome["type"] == "welcome", welcome
    return client


async def bare_roundtrips(session: aiohttp.ClientSession, url: str, count: int) -> list[float]:
    times = []
    async with session.ws_connect(url) as ws:
        payload = json.dumps({"type": "ping", "id": "x", "pad": "y" * 200})
        for _ in range(count):
            start = time.perf_counter()
            await ws.send_str(payload)
            await ws.receive()
            times.append((time.perf_counter() - start) * 1000)
    return times


async def measure(waiting: int, experts: int, samples: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        config_path = Path(folder) / "bench.toml"
        config_path.write_text(bench_config(waiting, experts, Path(folder) / "data"))
        config = load_config(config_path)
        port, echo_port = free_port(), free_port()
        server_args = [sys.executable, "-m", "visio_server.cli", "serve", "--quiet-tokens"]
        server_args += ["--config", str(config_path), "--port", str(port)]
        connector = aiohttp.TCPConnector(limit=0)
        async with (
            aiohttp.ClientSession(connector=connector) as session,
            subprocess_server(server_args, port) as url,
            subprocess_server(
                [sys.executable, "-c", _ECHO_SERVER, str(echo_port)], echo_port
            ) as echo_url,
        ):
            loaded_experts, probe_experts = [], []
            per_service = max((experts - 4) // len(LOADED), 1)
            for service in LOADED:
                for index in range(per_service):
                    token = mint_token(config, "expert", f"{service}-{index}", services=[service])
                    loaded_experts.append(await open_client(session, url, token))
            for index in range(experts - len(loaded_experts)):
                token = mint_token(config, "expert", f"probe-{index}", services=[PROBE])
                expert = await open_client(session, url, token)
                await expert.request({"type": "expert.status", "status": "available"})
                probe_experts.append(expert)

            kiosks = []
            for index in range(waiting):
                kiosk = await open_client(
                    session, url, mint_token(config, "kiosk", f"kiosk-{index}")
                )
                service = LOADED[index % len(LOADED)]
                queued = await kiosk.request(
                    {"type": "call.request", "service": service, "beneficiary": ""}
                )
                assert queued["type"] == "call.queued", queued
                kiosks.append(kiosk)

            probe = await open_client(session, url, mint_token(config, "kiosk", f"kiosk-{waiting}"))
            request_offer = []
            for _ in range(samples):
                offers = [expert.expect("call.offered") for expert in probe_experts]
                start = time.perf_counter()
                queued = await probe.request({"type": "call.request", "service": PROBE})
                await asyncio.wait(offers, return_when=asyncio.FIRST_COMPLETED)
                request_offer.append((time.perf_counter() - start) * 1000)
                for offer in offers:
                    offer.cancel()
                await probe.request({"type": "call.cancel", "call": queued["call"]})

            available_offer = []
            for index in range(samples):
                expert = loaded_experts[index % len(loaded_experts)]
                offer = expert.expect("call.offered")
                start = time.perf_counter()
                await expert.ws.send_str(
                    json.dumps({"type": "expert.status", "status": "available", "id": "go"})
                )
                await asyncio.wait_for(offer, 30)
                available_offer.append((time.perf_counter() - start) * 1000)
                await expert.request({"type": "expert.status", "status": "break"})

            bare = await bare_roundtrips(session, echo_url, samples * 2)
            for client in (*kiosks, probe, *loaded_experts, *probe_experts):
                await client.close()

    offers = request_offer + available_offer
    p50 = percentile(offers, 0.5)
    bare_p50 = percentile(bare, 0.5)
    return {
        "waiting": waiting,
        "experts": experts,
        "samples": samples,
        "offer_ms_p50": round(p50 or 0, 3),
        "offer_ms_p99": round(percentile(offers, 0.99) or 0, 3),
        "request_offer_ms_p50": round(percentile(request_offer, 0.5) or 0, 3),
        "request_offer_ms_p99": round(percentile(request_offer, 0.99) or 0, 3),
        "available_offer_ms_p50": round(percentile(available_offer, 0.5) or 0, 3),
        "available_offer_ms_p99": round(percentile(available_offer, 0.99) or 0, 3),
        "bare_roundtrip_ms_p50": round(bare_p50 or 0, 3),
        "bare_roundtrip_ms_p99": round(percentile(bare, 0.99) or 0, 3),
        "ratio_p50_to_bare": round((p50 or 0) / (bare_p50 or 1), 2),
    }


def main() -> int:
    parser = bench_parser(__doc__ or "")
    parser.add_argument("--waiting", type=int, help="calls waiting (default 1000; quick 200)")
    parser.add_argument("--experts", type=int, help="experts connected (default 200; quick 40)")
    args = parser.parse_args()
    waiting = args.waiting or (200 if args.quick else 1000)
    experts = args.experts or (40 if args.quick else 200)
    samples = 40 if args.quick else 300
    figures = asyncio.run(measure(waiting, experts, samples))
    rows = [
        ("request -> offer p50", ms(figures["request_offer_ms_p50"]), ""),
        ("request -> offer p99", ms(figures["request_offer_ms_p99"]), "< 10 ms"),
        ("available -> offer p50", ms(figures["available_offer_ms_p50"]), ""),
        ("available -> offer p99", ms(figures["available_offer_ms_p99"]), "< 10 ms"),
        ("both p50", ms(figures["offer_ms_p50"]), ""),
        ("both p99", ms(figures["offer_ms_p99"]), "< 10 ms"),
        ("bare WebSocket round trip p50", ms(figures["bare_roundtrip_ms_p50"]), "reference"),
        ("offer p50 / bare round trip p50", f"{figures['ratio_p50_to_bare']}x", ""),
    ]
    report(
        f"Dispatch with {waiting} calls waiting and {experts} experts ({samples} samples each)",
        rows,
        figures,
        args.json,
    )
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
