"""The kiosk's scanner, through SANE (python-sane).

Rules this module keeps:

1. Every SANE call runs on one worker thread of its own, one at a time: SANE backends
   are not thread-safe, and a scan blocks for seconds. The only call made from another
   thread is ``sane_cancel``, which SANE allows at any time for exactly this purpose.
2. A scan is one page at a time: ``prepare`` sets the options of a command once, then
   each ``scan_page`` writes one page to a lossless file in the spool, so a long
   multi-page scan never holds every page in memory.
3. The expert's settings are mapped onto what the device offers: the nearest
   resolution, its own names for colour, grey, flatbed and feeder, an A4 scan area
   where the geometry allows it. What the device cannot do fails the command with a
   sentence, before anything is scanned.
4. SANE's errors become ``ScannerFailure`` with SANE's own words ("Document feeder out
   of documents") and the status they stand for: the feeder running empty ends a
   feeder batch, and is a failure only when not a single sheet was fed.
5. SIGPIPE stays ignored, as Python wants it, and SIGTERM and SIGINT stay with the
   handlers the agent set. libsane's thread helper sets SIGPIPE back to SIG_DFL at the
   end of every scan (it takes for granted that it was the one ignoring it), after
   which a write to a closed socket would kill the agent; its test backend's reader
   leaves SIGTERM at SIG_DFL too, after which a service manager's stop kills the agent
   instead of letting it stop its commands. The SANE thread, and the reader threads it
   starts, block SIGPIPE; after every SANE call the event loop's (main) thread puts
   all three back; the command line also blocks SIGPIPE in the main thread before any
   thread starts (``block_sigpipe``), which closes the gap.
"""

from __future__ import annotations

import asyncio
import logging
import math
import signal
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal, TypeVar

import sane

from signaling.messages import DevicePart, ScanSettings

from .errors import ScannerFailure

__all__ = [
    "A4_MM",
    "OptionValue",
    "ScannedPage",
    "Scanner",
    "block_sigpipe",
    "choose_mode",
    "choose_resolution",
    "choose_source",
    "parse_option",
]

log = logging.getLogger(__name__)

R = TypeVar("R")

A4_MM: Final = (210.0, 297.0)
"""Width and height of the scan area asked for, in millimetres."""

OptionValue = str | int | float | bool

# sane_strstatus() wording (sanei/sane_strstatus.c) -> the status it stands for. python-sane
# raises ``_sane.error`` with only this text; it compares the text itself, as we do.
_STATUS_BY_TEXT: Final = {
    "Operation not supported": "unsupported",
    "Operation was cancelled": "cancelled",
    "Device busy": "device_busy",
    "Invalid argument": "inval",
    "End of file reached": "eof",
    "Document feeder jammed": "jammed",
    "Document feeder out of documents": "no_docs",
    "Scanner cover is open": "cover_open",
    "Error during device I/O": "io_error",
    "Out of memory": "no_mem",
    "Access to resource has been denied": "access_denied",
}

# Names backends give their modes and sources, most usual first.
_COLOR_MODES: Final = ("Color", "Colour", "24bit Color", "RGB")
_GRAY_MODES: Final = ("Gray", "Grey", "Grayscale", "Greyscale", "8bit Gray")
_FEEDER_WORDS: Final = ("automatic document feeder", "adf", "feeder", "adf front", "document")


@dataclass(frozen=True)
class ScannedPage:
    """One page as scanned, kept as a lossless image file until the PDF is built."""

    path: Path
    width: int
    height: int
    dpi: float
    """The resolution the device actually used: it sets the page size in the PDF."""


def choose_mode(offered: Sequence[str] | None, color: Literal["color", "gray"]) -> str | None:
    """The device's name for colour or grey (None: it has no mode option). Raises when
    it offers neither."""
    if not offered:
        return None
    wanted = _COLOR_MODES if color == "color" else _GRAY_MODES
    for name in wanted:
        if name in offered:
            return name
    word = "col" if color == "color" else "gr"
    for name in offered:
        if name.lower().startswith(word):
            return name
    raise ScannerFailure(f"the scanner offers no {color} mode (it offers {', '.join(offered)})")


def choose_source(
    offered: Sequence[str] | None, source: Literal["flatbed", "feeder"]
) -> str | None:
    """The device's name for its flatbed or feeder (None: a flatbed-only device with no
    source option). Raises when asked for a feeder the device does not have."""
    if not offered:
        if source == "feeder":
            raise ScannerFailure("the scanner has no document feeder")
        return None
    lowered = {name.lower(): name for name in offered}
    if source == "flatbed":
        for name in offered:
            if "flatbed" in name.lower():
                return name
        raise ScannerFailure(f"the scanner has no flatbed (it offers {', '.join(offered)})")
    for word in _FEEDER_WORDS:
        if word in lowered:
            return lowered[word]
    for name in offered:
        if "adf" in name.lower() or "feeder" in name.lower():
            return name
    raise ScannerFailure("the scanner has no document feeder")


def choose_resolution(constraint: object, wanted: int) -> float:
    """The allowed resolution nearest to ``wanted`` (a range ``(min, max, step)`` or a
    list of values; no constraint: as asked)."""
    if isinstance(constraint, tuple) and len(constraint) == 3:
        low, high, step = (float(part) for part in constraint)
        value = min(max(float(wanted), low), high)
        if step > 0:
            value = low + round((value - low) / step) * step
        return min(value, high)
    if isinstance(constraint, list) and constraint:
        values = [float(item) for item in constraint if isinstance(item, int | float)]
        if values:
            return min(values, key=lambda value: (abs(value - wanted), -value))
    return float(wanted)


def parse_option(text: str) -> tuple[str, OptionValue]:
    """``name=value`` from the command line: ``read-delay=yes``, ``read-delay-duration=
    200000``. Booleans and numbers are recognised; anything else stays text."""
    name, sep, raw = text.partition("=")
    if not sep or not name.strip():
        raise ValueError(f"expected NAME=VALUE, got {text!r}")
    value: OptionValue
    lowered = raw.strip().lower()
    if lowered in ("yes", "true", "on"):
        value = True
    elif lowered in ("no", "false", "off"):
        value = False
    else:
        try:
            value = int(raw)
        except ValueError:
            try:
                value = float(raw)
            except ValueError:
                value = raw
    return name.strip().replace("-", "_"), value


def block_sigpipe() -> None:
    """Block SIGPIPE in the calling thread (and the threads it starts): a write to a
    closed socket or pipe then fails with EPIPE, whatever libsane did to the handler."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGPIPE})


def _restore_signals() -> None:
    """Put back what libsane may have reset (rule 5)."""
    # Only the main thread may set handlers; elsewhere the blocked mask protects.
    if threading.current_thread() is not threading.main_thread():
        return
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    for signum in (signal.SIGTERM, signal.SIGINT):
        # Python still holds the handler it installed; installing it again restores
        # the process's disposition, which libsane changed behind its back.
        handler = signal.getsignal(signum)
        if handler is not None:
            signal.signal(signum, handler)


def _failure(exc: BaseException) -> ScannerFailure:
    text = str(exc) or type(exc).__name__
    return ScannerFailure(text, status=_STATUS_BY_TEXT.get(text, ""))


class Scanner:
    """One SANE scanner: ``device`` is its SANE name (``test:0``, ``epson2:net:...``),
    None for the first one found. ``options`` are set on the device before every
    command (device-specific settings, a slow or jamming test backend...)."""

    def __init__(
        self, device: str | None = None, *, options: Mapping[str, OptionValue] | None = None
    ) -> None:
        self._wanted = device
        self._options = dict(options or {})
        self._thread = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="sane", initializer=block_sigpipe
        )
        self._initialised = False
        self._device: Any = None
        self._name: str | None = None
        self._busy = False
        self._closed = False
        self._last_problem = ""

    @property
    def name(self) -> str | None:
        """The SANE name of the device in use, once one was opened."""
        return self._name

    async def health(self) -> DevicePart:
        """Whether the scanner is there and free. During a scan it is not touched."""
        if self._busy:
            return DevicePart(present=True, ready=False, state="processing")
        return await self._run(self._health)

    async def prepare(self, settings: ScanSettings) -> None:
        """Set the options of one command: source, mode, resolution, A4 area."""
        self._busy = True
        try:
            await self._run(self._prepare, settings)
        except BaseException:
            self._busy = False
            raise

    async def scan_page(self, path: Path, *, feeder: bool = False) -> ScannedPage:
        """Scan one page, or the next sheet of the feeder, into ``path`` (PNG). Sheets of
        one feeder batch are read without cancelling between them (that would end the
        batch on many devices): ``end_batch`` ends it."""
        self._busy = True
        try:
            return await self._run(self._scan_page, path, feeder)
        except ScannerFailure as failure:
            if failure.status not in ("no_docs", "cancelled"):
                self._last_problem = failure.reason
            raise

    async def end_batch(self) -> None:
        """End a feeder batch (``sane_cancel``): the next ``scan_page`` starts afresh."""
        await self._run(self.cancel)

    def finish(self) -> None:
        """The command is over: health may look at the device again."""
        self._busy = False

    def cancel(self) -> None:
        """Break off the page being scanned (``sane_cancel``, safe from any thread); the
        waiting ``scan_page`` raises ``ScannerFailure`` with status ``cancelled``."""
        device = self._device
        if device is not None:
            try:
                device.cancel()
            except Exception as exc:  # the scan is being torn down either way
                log.debug("sane_cancel: %s", exc)

    async def close(self) -> None:
        """Close the device and SANE, then stop the worker thread (once)."""
        if self._closed:
            return
        self._closed = True
        try:
            await self._run(self._close)
        finally:
            self._thread.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------------ worker thread

    async def _run(self, function: Callable[..., R], *args: object) -> R:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._thread, function, *args)
        finally:
            _restore_signals()

    def _open(self) -> Any:
        if self._device is not None:
            return self._device
        try:
            if not self._initialised:
                sane.init()
                self._initialised = True
            name = self._wanted
            if name is None:
                devices = sane.get_devices()
                if not devices:
                    raise ScannerFailure("no scanner found")
                name = str(devices[0][0])
            self._device = sane.open(name)
        except ScannerFailure:
            raise
        except (sane._sane.error, RuntimeError) as exc:
            raise _failure(exc) from exc
        self._name = name
        log.info("scanner %s open", name)
        return self._device

    def _forget_device(self) -> None:
        device, self._device = self._device, None
        if device is not None:
            try:
                device.close()
            except Exception as exc:  # a device that went away may not close cleanly
                log.debug("closing scanner: %s", exc)

    def _health(self) -> DevicePart:
        try:
            self._open()
        except ScannerFailure as failure:
            return DevicePart(present=False, ready=False, state="offline", detail=failure.reason)
        return DevicePart(present=True, ready=True, state="idle", detail=self._last_problem)

    def _prepare(self, settings: ScanSettings) -> None:
        device = self._open()
        try:
            self._set_choice(
                device, "source", choose_source(self._choices(device, "source"), settings.source)
            )
            self._set_choice(
                device, "mode", choose_mode(self._choices(device, "mode"), settings.color)
            )
            if self._settable(device, "depth") and 8 in (device["depth"].constraint or []):
                device.depth = 8
            if self._settable(device, "resolution"):
                device.resolution = choose_resolution(
                    device["resolution"].constraint, settings.resolution
                )
            self._set_area(device)
            for name, value in self._options.items():
                setattr(device, name, value)
        except ScannerFailure:
            raise
        except (sane._sane.error, AttributeError, TypeError, ValueError) as exc:
            raise ScannerFailure(f"the scanner refused its settings: {exc}") from exc

    def _scan_page(self, path: Path, feeder: bool) -> ScannedPage:
        device = self._open()
        try:
            resolution = float(device.resolution) if self._active(device, "resolution") else 0.0
            device.start()
            image = device.snap(no_cancel=feeder)
        except (sane._sane.error, RuntimeError) as exc:
            failure = _failure(exc)
            self._after_failure(device, failure)
            raise failure from exc
        if image.mode not in ("L", "RGB"):
            image = image.convert("RGB")
        dpi = resolution or 72.0
        image.save(path, "PNG", compress_level=1, dpi=(dpi, dpi))
        return ScannedPage(path, image.width, image.height, dpi)

    def _after_failure(self, device: Any, failure: ScannerFailure) -> None:
        try:
            device.cancel()
        except Exception as exc:  # already stopped by the error itself
            log.debug("sane_cancel after %s: %s", failure.reason, exc)
        if failure.status in ("io_error", "access_denied", ""):
            # The handle may be dead (unplugged, powered off): open it again next time.
            self._forget_device()

    def _close(self) -> None:
        self._forget_device()
        if self._initialised:
            sane.exit()
            self._initialised = False

    # ------------------------------------------------------------------ options

    @staticmethod
    def _active(device: Any, name: str) -> bool:
        option = device.opt.get(name)
        return option is not None and bool(option.is_active())

    @classmethod
    def _settable(cls, device: Any, name: str) -> bool:
        option = device.opt.get(name)
        return cls._active(device, name) and bool(option.is_settable())

    @classmethod
    def _choices(cls, device: Any, name: str) -> list[str] | None:
        if not cls._settable(device, name):
            return None
        constraint = device[name].constraint
        if isinstance(constraint, list):
            return [str(item) for item in constraint]
        return None

    @staticmethod
    def _set_choice(device: Any, name: str, value: str | None) -> None:
        if value is not None:
            setattr(device, name, value)

    @classmethod
    def _set_area(cls, device: Any) -> None:
        """Top-left at the range's start, bottom-right at A4 or the largest the device
        allows; left alone where the device measures its area in anything but mm."""
        for corner, size in (
            ("tl_x", None),
            ("tl_y", None),
            ("br_x", A4_MM[0]),
            ("br_y", A4_MM[1]),
        ):
            if not cls._settable(device, corner):
                continue
            option = device[corner]
            if option.unit != sane._sane.UNIT_MM:
                continue
            constraint = option.constraint
            low, high = (0.0, math.inf)
            if isinstance(constraint, tuple) and len(constraint) == 3:
                low, high = float(constraint[0]), float(constraint[1])
            setattr(device, corner, low if size is None else min(size, high))
