"""What every bench shares: the --quick/--json flags, servers in-process or as processes,
protocol clients (``visio_client``) signed in, and the report.

A bench prints a table for people and, with ``--json``, one JSON object on its last line
for scripts; ``--quick`` is a smoke run that finishes in under a minute.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import json
import shutil
import signal
import socket
import sys
from collections.abc import AsyncIterator, Coroutine, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

# A bench runs from a checkout (`python bench/NAME.py`) without the project installed.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp
from aiohttp import web

from visio_client import Client, message_type
from visio_server.app import create_app
from visio_server.config import Config
from visio_sim import percentile

__all__ = [
    "SECRET",
    "Running",
    "bench_parser",
    "config_head",
    "die_with_parent",
    "free_port",
    "in_process_server",
    "kiosk_section",
    "ms",
    "node_args",
    "open_client",
    "percentile",
    "redis_server",
    "report",
    "run",
    "service_section",
    "subprocess_server",
]

T = TypeVar("T")

SECRET = "bench-secret-0123456789-abcdefghijklmnop"


def bench_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="smoke run, under a minute")
    parser.add_argument(
        "--json", action="store_true", help="print the figures as one JSON object on the last line"
    )
    return parser


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` that also unwinds on SIGTERM, so the servers a bench started stop."""

    terminated = False

    def terminate(task: asyncio.Task[T]) -> None:
        nonlocal terminated
        terminated = True
        task.cancel()

    async def guarded() -> T:
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, terminate, task)
        return await main

    try:
        return asyncio.run(guarded())
    except asyncio.CancelledError:
        if terminated:
            raise SystemExit(128 + signal.SIGTERM) from None
        raise


def config_head(storage: Sequence[str]) -> list[str]:
    """The first lines of a bench configuration: limits no bench client should reach,
    tokens signed with ``SECRET``, then the ``[storage]`` section's lines."""
    return [
        "[server]",
        'host = "127.0.0.1"',
        "rate_per_s = 1000",
        "rate_burst = 1000",
        "outbound_queue = 4096",
        "[auth]",
        f'hs256_secret = "{SECRET}"',
        "[storage]",
        *storage,
    ]


def service_section(service: str, *extra: str) -> list[str]:
    """An always-open service whose offers ring long enough never to time out in a bench."""
    return [
        "[[services]]",
        f'id = "{service}"',
        f'name = "{service.title()}"',
        'partner = "bench"',
        "always_open = true",
        "offer_timeout_s = 60",
        *extra,
    ]


def kiosk_section(kiosk: str, services: Sequence[str]) -> list[str]:
    return [
        "[[kiosks]]",
        f'id = "{kiosk}"',
        f'name = "Kiosk {kiosk}"',
        'place = "Bench"',
        f"services = {json.dumps(list(services))}",
    ]


@asynccontextmanager
async def in_process_server(
    config: Config, hosts: Sequence[str] = ("127.0.0.1",)
) -> AsyncIterator[str]:
    """Serve ``create_app(config)`` on a free port of each of ``hosts`` (the loopback, or
    addresses of the bench's own network namespaces); yields the first one's base URL."""
    runner = web.AppRunner(create_app(config))
    await runner.setup()
    try:
        site = web.TCPSite(runner, hosts[0], 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        for other in hosts[1:]:
            await web.TCPSite(runner, other, port).start()
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


# ---------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class Running:
    """A server process of the bench, listening on ``port`` of the loopback."""

    process: asyncio.subprocess.Process
    port: int

    @property
    def pid(self) -> int:
        return self.process.pid

    def url(self, scheme: str = "http", path: str = "") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"


def die_with_parent() -> None:
    # Even a bench killed with SIGKILL leaves no server behind (PR_SET_PDEATHSIG).
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)


@asynccontextmanager
async def subprocess_server(
    args: list[str], port: int, *, output: Path | None = None
) -> AsyncIterator[Running]:
    """Start ``args``, wait until ``port`` accepts connections, stop it on the way out."""
    sink = output.open("ab") if output is not None else asyncio.subprocess.DEVNULL
    try:
        process = await asyncio.create_subprocess_exec(
            *args, stdout=sink, stderr=sink, preexec_fn=die_with_parent
        )
    finally:
        if output is not None:
            sink.close()  # type: ignore[union-attr]
    try:
        async with asyncio.timeout(30):
            while True:
                if process.returncode is not None:
                    raise RuntimeError(f"{args[0]} exited with {process.returncode} on start")
                try:
                    _, writer = await asyncio.open_connection("127.0.0.1", port)
                    writer.close()
                    break
                except OSError:
                    await asyncio.sleep(0.05)
        yield Running(process, port)
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.kill()
                await process.wait()


@asynccontextmanager
async def redis_server() -> AsyncIterator[Running]:
    """A private redis-server on a free loopback port, keeping nothing on disk."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is needed (Debian package redis-server)")
    port = free_port()
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly"]
    async with subprocess_server([*args, "no"], port) as server:
        yield server


def node_args(
    config: Path, port: int, *, redis_url: str | None = None, node_id: str | None = None
) -> list[str]:
    """The command line of one server node."""
    args = [sys.executable, "-m", "visio_server.cli", "serve", "--quiet-tokens"]
    args += ["--config", str(config), "--port", str(port)]
    if redis_url:
        args += ["--redis-url", redis_url]
    if node_id:
        args += ["--node-id", node_id]
    return args


# ---------------------------------------------------------------------- protocol client


async def open_client(
    session: aiohttp.ClientSession, url: str, token: str, kept: Sequence[str] = ()
) -> Client:
    """A client signed in with ``token`` that queues only events of the ``kept`` types:
    a closed-loop client finds each of those whatever order they arrive in, and the
    events nobody reads do not pile up over a long run."""
    wanted = frozenset(kept)
    return await Client.connect(
        url,
        session=session,
        token=token,
        keep=lambda message: message_type(message) in wanted,
        reply_timeout_s=30,
        max_frame_bytes=0,
    )


# ---------------------------------------------------------------------- report


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


def report(
    title: str,
    rows: Sequence[Sequence[str]],
    figures: dict[str, Any],
    as_json: bool,
    columns: Sequence[str] = ("measured",),
) -> None:
    """Print ``rows`` (name, one value per column, target) as a table, then the figures
    as JSON if asked."""
    width = max(len(row[0]) for row in rows)
    print(title)
    print(f"  {'':{width}}  " + "".join(f"{c:>12}  " for c in columns) + "target")
    for name, *values, target in rows:
        print(f"  {name:{width}}  " + "".join(f"{v:>12}  " for v in values) + target)
    if as_json:
        print(json.dumps(figures))
