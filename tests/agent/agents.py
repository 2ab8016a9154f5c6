"""The real device agent run inside a test: its own task, its real scanner (SANE test
backend) and printer (the private cupsd), stopped as SIGTERM would stop it."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from visio_agent.agent import Agent, AgentSettings
from visio_agent.journal import Journal
from visio_agent.printer import Printer
from visio_agent.scanner import OptionValue, ScannedPage, Scanner

__all__ = ["CountingScanner", "RunningAgent", "fast_settings", "run_agent"]


class CountingScanner(Scanner):
    """The SANE scanner, counting the pages it really scanned."""

    def __init__(self, device: str, *, options: dict[str, OptionValue] | None = None) -> None:
        super().__init__(device, options=options)
        self.pages_scanned = 0

    async def scan_page(self, path: Path, *, feeder: bool = False) -> ScannedPage:
        page = await super().scan_page(path, feeder=feeder)
        self.pages_scanned += 1
        return page


def fast_settings(server: str, token: str, **overrides: Any) -> AgentSettings:
    """Settings for tests: health every 0.2 s, reconnects and retries within a second."""
    settings = AgentSettings(
        server=server,
        token=lambda: token,
        health_interval_s=0.2,
        ping_interval_s=2.0,
        reply_timeout_s=5.0,
        reconnect_low_s=0.05,
        reconnect_high_s=0.5,
        retry_high_s=0.5,
        print_timeout_s=30.0,
    )
    return replace(settings, **overrides)


@dataclass
class RunningAgent:
    agent: Agent
    task: asyncio.Task[None]
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def scanner(self) -> CountingScanner:
        assert isinstance(self.agent.scanner, CountingScanner)
        return self.agent.scanner

    async def halt(self) -> None:
        """Stop as on SIGTERM, and close the devices."""
        if not self.task.done():
            self.stop.set()
            await asyncio.wait_for(self.task, 15)
        await self.agent.scanner.close()
        await self.agent.printer.close()


async def run_agent(
    settings: AgentSettings,
    spool: Path,
    *,
    printer: Printer,
    scanner_options: dict[str, OptionValue] | None = None,
    wait_connected: bool = True,
) -> RunningAgent:
    agent = Agent(
        settings, CountingScanner("test:0", options=scanner_options), printer, Journal(spool)
    )
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop), name="device agent")
    running = RunningAgent(agent, task, stop)
    if wait_connected:
        await asyncio.wait_for(agent.connected.wait(), 10)
    return running
