"""Helpers for multi-node tests: a private redis-server and server nodes as processes.

Both listen on free loopback ports; whatever a test starts, it stops (the fixtures in
``tests/conftest.py`` make sure of it even when the test fails).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from visio_server.auth import mint_token
from visio_server.config import Config, load_config

__all__ = [
    "Node",
    "RedisServer",
    "cluster_config",
    "free_port",
]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def _wait_for_port(port: int, process: asyncio.subprocess.Process, what: str) -> None:
    async with asyncio.timeout(30):
        while True:
            if process.returncode is not None:
                raise RuntimeError(f"{what} exited with {process.returncode} while starting")
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                return
            except OSError:
                await asyncio.sleep(0.05)


@dataclass
class RedisServer:
    """A redis-server of the test's own, on a non-default port, restartable in place."""

    folder: Path
    port: int = field(default_factory=free_port)
    persistence: bool = False
    process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is installed by scripts/test.sh (Debian package redis-server)"
        self.folder.mkdir(parents=True, exist_ok=True)
        args = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder)]
        args += ["--save", "", "--protected-mode", "no"]
        if self.persistence:
            args += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            args += ["--appendonly", "no"]
        self.process = await asyncio.create_subprocess_exec(
            *args, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
        )
        await _wait_for_port(self.port, self.process, "redis-server")

    async def stop(self, sig: int = signal.SIGKILL) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(sig)
            await self.process.wait()
        self.process = None


def cluster_config(
    folder: Path,
    *,
    kiosks: int = 4,
    experts: int = 2,
    priority_kiosks: int = 0,
    offer_timeout_s: float = 20,
    kiosk_grace_s: float = 30,
    expert_grace_s: float = 5,
    node_cutoff_s: float = 2.0,
) -> Path:
    """A configuration with one always-open CAF service, ``kiosks`` kiosks named
    ``kiosk-001``... (the first ``priority_kiosks`` with priority 1) and ``experts``
    CAF experts named ``expert-01``..."""
    lines = [
        "[server]",
        'host = "127.0.0.1"',
        "rate_per_s = 500",
        "rate_burst = 500",
        "heartbeat_s = 2",
        "[auth]",
        'algorithms = ["HS256"]',
        'hs256_secret = "test-secret-0123456789-abcdefghijklmnop"',
        "[storage]",
        'backend = "memory"',
        "[redis]",
        "heartbeat_s = 0.5",
        f"node_cutoff_s = {node_cutoff_s}",
        "[queue]",
        f"kiosk_grace_s = {kiosk_grace_s}",
        f"expert_grace_s = {expert_grace_s}",
        "restart_grace_s = 30",
        "decline_cooldown_s = 30",
        "[[services]]",
        'id = "caf"',
        'name = "CAF"',
        'partner = "caf"',
        "always_open = true",
        "max_waiting = 2000",
        f"offer_timeout_s = {offer_timeout_s}",
        'visit_reasons = ["Prestations", "Autre"]',
    ]
    for number in range(1, kiosks + 1):
        lines += [
            "[[kiosks]]",
            f'id = "kiosk-{number:03d}"',
            f'name = "Borne {number}"',
            'place = "Accueil"',
            'services = ["caf"]',
            f"priority = {1 if number <= priority_kiosks else 0}",
        ]
    for number in range(1, experts + 1):
        lines += [
            "[[experts]]",
            f'id = "expert-{number:02d}"',
            f'name = "Expert {number}"',
            'partner = "caf"',
            'services = ["caf"]',
        ]
    path = folder / "cluster.toml"
    path.write_text("\n".join(lines) + "\n", "utf-8")
    return path


@dataclass
class Node:
    """One ``visio-server serve`` process of a cluster."""

    name: str
    config_path: Path
    redis_url: str
    log_path: Path
    port: int = field(default_factory=free_port)
    process: asyncio.subprocess.Process | None = None
    config: Config | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def token(self, role: str, sub: str, **claims: Any) -> str:
        if self.config is None:
            self.config = load_config(self.config_path)
        return mint_token(self.config, role, sub, **claims)

    async def start(self) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with self.log_path.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "visio_server.cli",
                "serve",
                "--config",
                str(self.config_path),
                "--port",
                str(self.port),
                "--redis-url",
                self.redis_url,
                "--node-id",
                self.name,
                "--quiet-tokens",
                stdout=log,
                stderr=log,
                env=env,
            )
        await _wait_for_port(self.port, self.process, f"node {self.name}")
        await self.wait_ready()

    async def wait_ready(self, timeout: float = 30) -> None:
        async with aiohttp.ClientSession() as session, asyncio.timeout(timeout):
            while True:
                try:
                    async with session.get(self.url + "/readyz") as response:
                        if response.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)

    async def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(sig)
            try:
                await asyncio.wait_for(self.process.wait(), 10)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        self.process = None

    async def kill(self) -> None:
        """SIGKILL: the node has no chance to say goodbye to anyone."""
        await self.stop(signal.SIGKILL)

    def log(self) -> str:
        return self.log_path.read_text("utf-8", errors="replace") if self.log_path.exists() else ""
