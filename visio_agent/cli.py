"""``visio-kiosk-agent``: the device agent of one kiosk, beside the kiosk's browser.

SANE and CUPS find their devices as they always do: ``SANE_CONFIG_DIR`` and
``CUPS_SERVER`` (or their configuration files) are honoured by the libraries. Exits 0
on SIGTERM or SIGINT once the commands in flight were stopped and told; finished scans
not uploaded yet stay in the spool for the next start.

``--trial-devices DIR`` is for trying the agent on a machine with neither: SANE's test
scanner and a private cupsd whose printer writes to ``DIR/printed/`` (``trial.py``),
started before connecting and stopped at exit. The kiosk is the token's.
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
from .trial import TrialDevices, TrialDevicesError

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
        "--trial-devices",
        type=Path,
        metavar="DIR",
        help="for a try without devices: SANE's test scanner and a private cupsd with a "
        "file printer, set up under DIR and stopped at exit (printed pages land in "
        "DIR/printed/); not for a real kiosk",
    )
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
        "to lower its video first (default 1; at most a quarter of the upload's time)",
    )
    parser.add_argument(
        "--spool-dir",
        type=Path,
        metavar="PATH",
        help="where finished scans wait for their upload and command keys are kept "
        "(default: DIR/spool with --trial-devices, else $STATE_DIRECTORY or "
        "/var/spool/visio-kiosk-agent)",
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


def _spool_dir(args: argparse.Namespace) -> Path:
    if args.spool_dir is not None:
        return Path(args.spool_dir)
    if args.trial_devices is not None:
        return Path(args.trial_devices) / "spool"
    return Path(os.environ.get("STATE_DIRECTORY", "/var/spool/visio-kiosk-agent"))


def _start_trial_devices(folder: Path) -> TrialDevices:
    """Start them and point SANE and CUPS at them, for this process and its threads
    (before any of them initialises either library)."""
    devices = TrialDevices.start(folder)
    os.environ.update(devices.environ())
    log.info(
        "trial devices under %s: scanner %s (SANE test backend), printer %s on a private "
        "cupsd (pid %s, files in %s) at %s",
        devices.folder,
        devices.scanner,
        devices.printer,
        devices.cups.process.pid if devices.cups.process else "?",
        devices.cups.folder,
        devices.cups.server,
    )
    log.info("printed pages land in %s (PostScript, each job replaces it)", devices.printed)
    return devices


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        token = _token_source(args)
        options: dict[str, OptionValue] = dict(parse_option(text) for text in args.scanner_option)
    except (OSError, ValueError) as exc:
        print(f"visio-kiosk-agent: {exc}", file=sys.stderr)
        return 2
    trial: TrialDevices | None = None
    if args.trial_devices is not None:
        try:
            # Before the spool, which may lie under the same folder (trial.py, rule 4).
            trial = _start_trial_devices(args.trial_devices)
        except (OSError, TrialDevicesError) as exc:
            print(f"visio-kiosk-agent: trial devices: {exc}", file=sys.stderr)
            return 2
    try:
        spool_dir = _spool_dir(args)
        try:
            journal = Journal(spool_dir)
        except (OSError, ValueError) as exc:
            print(f"visio-kiosk-agent: {exc}", file=sys.stderr)
            return 2
        return _serve(args, token, options, journal, spool_dir, trial)
    finally:
        if trial is not None:
            trial.stop()
            log.info("trial devices stopped")


def _serve(
    args: argparse.Namespace,
    token: Callable[[], str],
    options: dict[str, OptionValue],
    journal: Journal,
    spool_dir: Path,
    trial: TrialDevices | None,
) -> int:
    settings = AgentSettings(
        server=args.server,
        token=token,
        upload_kbps=args.upload_kbps,
        upload_settle_s=args.upload_settle,
        health_interval_s=args.health_interval,
        print_timeout_s=args.print_timeout,
    )
    if trial is None:
        scanner, printer = Scanner(args.scanner, options=options), Printer(args.printer)
    else:
        scanner = Scanner(args.scanner or trial.scanner, options=options)
        printer = Printer(args.printer or trial.printer, server=trial.cups.server)
    agent = Agent(settings, scanner, printer, journal)
    log.info("spool %s, %d command keys remembered", spool_dir, len(journal))
    block_sigpipe()  # before any thread starts: see scanner.py, rule 5
    asyncio.run(_run(agent))
    return 0


if __name__ == "__main__":
    sys.exit(main())
