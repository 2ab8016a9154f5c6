"""What every bench shares: the --quick/--json flags, an in-process server, the report.

A bench prints a table for people and, with ``--json``, one JSON object on its last line
for scripts; ``--quick`` is a smoke run that finishes in under a minute.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

# A bench runs from a checkout (`python bench/NAME.py`) without the project installed.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiohttp import web

from visio_server.app import create_app
from visio_server.config import Config
from visio_server.sim import percentile

__all__ = ["bench_parser", "in_process_server", "ms", "percentile", "report"]


def bench_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="smoke run, under a minute")
    parser.add_argument(
        "--json", action="store_true", help="print the figures as one JSON object on the last line"
    )
    return parser


@asynccontextmanager
async def in_process_server(config: Config) -> AsyncIterator[str]:
    """Serve ``create_app(config)`` on a free loopback port; yields its base URL."""
    runner = web.AppRunner(create_app(config))
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


def report(
    title: str, rows: Sequence[tuple[str, str, str]], figures: dict[str, Any], as_json: bool
) -> None:
    """Print ``rows`` (name, measured, target) as a table, then the figures as JSON if asked."""
    width = max(len(name) for name, _, _ in rows)
    print(title)
    print(f"  {'':{width}}  {'measured':>12}  target")
    for name, measured, target in rows:
        print(f"  {name:{width}}  {measured:>12}  {target}")
    if as_json:
        print(json.dumps(figures))
