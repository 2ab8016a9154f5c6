"""``visio-kiosk-agent``: the device agent of one kiosk, beside the kiosk's browser.

SANE and CUPS find their devices as they always do: ``SANE_CONFIG_DIR`` and
``CUPS_SERVER`` (or their configuration files) are honoured by the libraries. Exits 0
on SIGTERM or SIGINT once the commands in flight were stopped and told; finished scans
not uploaded yet stay in the spool for the next start.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from .agent import Agent, AgentSettings
from .journal import Journal
from .printer import Printer
from .scanner import OptionValue, Scanner, block_sigpipe, parse_option

__all__ = ["main"]

log = logging.getLogger("visio_agent")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="visio-kiosk-agent",
        description="Drive a kiosk's scanner (SANE) and printer (CUPS) for the expert of "
        "its calls.",
    )
    parser.add_argument("--server", required=True, metavar="URL", help="http://host:port")
    token = parser.add_mutually_exclusive_group(required=True)
    token.add_argument("--token", help="device token (role device, sub the kiosk id)")
    token.add_argument(
        "--token-file",
        type=Path,
        metavar="PATH",
        help="file holding the device token, "
        "read again at every connection (so it can be replaced)",
    )
    parser.add_argument("--scanner", metavar="NAME", help="SANE device (default: first found)")
    parser.add_argument(
        "--scanner-option",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra SANE option set before every scan; repeatable",
    )
    parser.add_argument("--printer", metavar="QUEUE", help="CUPS queue (default: CUPS default)")
    parser.add_argument(
        "--upload-kbps",
        type=int,
        metavar="KBPS",
        help="pace of scan uploads, overriding the server's (0: unpaced)",
    )
    parser.add_argument(
        "--upload-settle",
        type=float,
        default=1.0,
        metavar="S",
        help="wait between announcing a paced upload and sending it, for the kiosk page "
        "to lower its video first (default 1)",
    )
    parser.add_argument(
        "--spool-dir",
        type=Path,
        default=Path(os.environ.get("STATE_DIRECTORY", "/var/spool/visio-kiosk-agent")),
        metavar="PATH",
        help="where finished scans wait for their upload and command keys are kept "
        "(default: $STATE_DIRECTORY or /var/spool/visio-kiosk-agent)",
    )
    parser.add_argument("--health-interval", type=float, default=3.0, metavar="S")
    parser.add_argument("--print-timeout", type=float, default=180.0, metavar="S")
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    return parser


def _token_source(args: argparse.Namespace) -> Callable[[], str]:
    if args.token is not None:
        fixed = str(args.token).strip()
        return lambda: fixed
    path: Path = args.token_file

    def read() -> str:
        return path.read_text("utf-8").strip()

    read()  # unreadable at start: say so now, not at the first connection
    return read


async def _run(agent: Agent) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await agent.run(stop)
    finally:
        await agent.scanner.close()
        await agent.printer.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        token = _token_source(args)
        options: dict[str, OptionValue] = dict(parse_option(text) for text in args.scanner_option)
        journal = Journal(args.spool_dir)
    except (OSError, ValueError) as exc:
        print(f"visio-kiosk-agent: {exc}", file=sys.stderr)
        return 2
    settings = AgentSettings(
        server=args.server,
        token=token,
        upload_kbps=args.upload_kbps,
        upload_settle_s=args.upload_settle,
        health_interval_s=args.health_interval,
        print_timeout_s=args.print_timeout,
    )
    agent = Agent(
        settings,
        Scanner(args.scanner, options=options),
        Printer(args.printer),
        journal,
    )
    log.info("spool %s, %d command keys remembered", args.spool_dir, len(journal))
    block_sigpipe()  # before any thread starts: see scanner.py, rule 5
    asyncio.run(_run(agent))
    return 0


if __name__ == "__main__":
    sys.exit(main())
