"""``visio-sim``: place real WebRTC calls through running visio-guichet servers.

Prints a summary for people, or with ``--json`` one JSON object on the last line (the
keys of ``SimRun.summary``); exits 0 only when every call connected, carried media both
ways and was wrapped up.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence

from visio_server.config import load_config

from .run import SimOptions, run_sim

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="visio-sim",
        description="Place real WebRTC calls (aiortc kiosks and experts) through visio-guichet.",
    )
    parser.add_argument(
        "--server",
        dest="servers",
        action="append",
        required=True,
        metavar="URL",
        help="server base URL, e.g. http://127.0.0.1:8080; repeat to spread clients over nodes",
    )
    parser.add_argument("--kiosks", type=_positive_int, default=1)
    parser.add_argument("--experts", type=_positive_int, default=1)
    parser.add_argument("--calls", type=_positive_int, default=1)
    parser.add_argument(
        "--media", type=float, default=2.0, metavar="SECONDS", help="media time of each call"
    )
    parser.add_argument(
        "--config", metavar="PATH", help="configuration the server runs with (identities, keys)"
    )
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object on the last line"
    )
    parser.add_argument("--timeout", type=float, default=120.0, metavar="S", help="whole run")
    parser.add_argument("--fps", type=_positive_int, default=30, help="frame rate of sent video")
    parser.add_argument(
        "--loopback-ice",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="offer only 127.0.0.1 as ICE host candidate (default: when all servers are loopback)",
    )
    parser.add_argument("--seed", type=int, help="seed for beneficiary numbers")
    return parser


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive integer")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    options = SimOptions(
        servers=tuple(args.servers),
        kiosks=args.kiosks,
        experts=args.experts,
        calls=args.calls,
        media_s=args.media,
        timeout_s=args.timeout,
        fps=args.fps,
        loopback_ice=args.loopback_ice,
        seed=args.seed,
    )
    try:
        config = load_config(args.config)
    except ValueError as exc:  # ConfigError says which key is at fault
        print(f"visio-sim: {exc}", file=sys.stderr)
        return 2
    run = asyncio.run(run_sim(options, config))
    summary = run.summary()
    if args.json:
        print(json.dumps(summary))
    else:
        for key, value in summary.items():
            if key != "errors":
                print(f"{key:36} {value}")
        for error in run.errors:
            print(f"error: {error}")
    return 0 if run.succeeded else 1
