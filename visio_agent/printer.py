"""The kiosk's printer, through CUPS (pycups).

Rules this module keeps:

1. Every CUPS call runs on one worker thread of its own (libcups keeps its server and
   its errors per thread), on a connection opened for that call: a restarted cupsd is
   simply found again.
2. A job is followed until CUPS says it is over: ``completed`` is done, ``aborted`` and
   ``canceled`` fail with the printer's own words. A job that does not end in
   ``timeout_s`` (out of paper, printer stopped) is cancelled and fails the same way,
   so it never comes out of the printer at a later citizen's visit.
3. Health is CUPS's view: ``printer-state``, ``printer-state-reasons`` (the IPP
   keywords, ``media-empty-error``, ``toner-low-warning``...) and whether the queue
   accepts jobs; marker levels fill in the toner where the driver reports them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal, TypeVar

import cups

from signaling import not_cancelled
from signaling.messages import DevicePart

from .errors import PrinterFailure

__all__ = ["A4_MEDIA", "JobStatus", "Printer", "printer_part"]

log = logging.getLogger(__name__)

R = TypeVar("R")

A4_MEDIA: Final = "iso_a4_210x297mm"
"""Asked for on every job: a generic driver defaults to Letter otherwise."""

_PRINTER_STATES: Final = {3: "idle", 4: "processing", 5: "stopped"}
_JOB_OVER: Final = {
    cups.IPP_JOB_COMPLETED: "completed",
    cups.IPP_JOB_ABORTED: "aborted",
    cups.IPP_JOB_CANCELED: "canceled",
}
_HEALTH_ATTRIBUTES: Final = [
    "printer-state",
    "printer-state-reasons",
    "printer-state-message",
    "printer-is-accepting-jobs",
    "marker-levels",
    "marker-low-levels",
    "marker-types",
]
_JOB_STATES: Final = {3: "pending", 4: "held", 5: "processing", 6: "stopped"}
_JOB_ATTRIBUTES: Final = [
    "job-state",
    "job-state-reasons",
    "job-printer-state-message",
    "job-printer-state-reasons",
    "job-impressions-completed",
]
_DETAIL_MAX: Final = 500
Level = Literal["", "ok", "low", "empty"]


@dataclass(frozen=True)
class JobStatus:
    """A CUPS job as last seen."""

    job: int
    state: int
    """IPP job state: 3 pending ... 9 completed."""
    impressions: int
    """Sides printed so far, every copy counted."""
    reason: str
    """The printer's words at the job's end or stop (state message or reasons)."""

    @property
    def over(self) -> bool:
        return bool(self.state in _JOB_OVER)

    @property
    def completed(self) -> bool:
        return bool(self.state == cups.IPP_JOB_COMPLETED)


def _reasons(attributes: Mapping[str, Any], key: str) -> list[str]:
    value = attributes.get(key) or []
    items = [value] if isinstance(value, str) else list(value)
    return [str(item) for item in items if item and item != "none"]


def _stem(reason: str) -> str:
    """``media-empty-error`` -> ``media-empty``: IPP adds a severity suffix or not."""
    for suffix in ("-error", "-warning", "-report"):
        if reason.endswith(suffix):
            return reason[: -len(suffix)]
    return reason


def _level_from_reasons(stems: set[str], prefixes: Sequence[str]) -> Level:
    if any(f"{prefix}-empty" in stems for prefix in prefixes) or (
        "media" in prefixes and "media-needed" in stems
    ):
        return "empty"
    if any(f"{prefix}-low" in stems for prefix in prefixes):
        return "low"
    return ""


def _toner_from_markers(attributes: Mapping[str, Any]) -> Level:
    levels = attributes.get("marker-levels")
    if not levels:
        return ""
    levels = [levels] if isinstance(levels, int) else list(levels)
    lows = attributes.get("marker-low-levels") or []
    lows = [lows] if isinstance(lows, int) else list(lows)
    known = [
        (int(level), int(lows[i]) if i < len(lows) else 10)
        for i, level in enumerate(levels)
        if isinstance(level, int) and level >= 0
    ]
    if not known:
        return ""  # -1/-2/-3: the driver cannot tell
    if any(level == 0 for level, _ in known):
        return "empty"
    if any(level <= low for level, low in known):
        return "low"
    return "ok"


def printer_part(attributes: Mapping[str, Any]) -> DevicePart:
    """A printer's health from its CUPS attributes."""
    state = _PRINTER_STATES.get(int(attributes.get("printer-state", 0) or 0), "unknown")
    reasons = _reasons(attributes, "printer-state-reasons")
    stems = {_stem(reason) for reason in reasons}
    accepting = bool(attributes.get("printer-is-accepting-jobs", True))
    if "offline" in stems:
        state = "offline"
    media = _level_from_reasons(stems, ("media",)) or "ok"
    toner = _level_from_reasons(stems, ("toner", "marker-supply", "marker-waste-full")) or (
        _toner_from_markers(attributes)
    )
    errors = [reason for reason in reasons if not reason.endswith(("-warning", "-report"))]
    ready = state in ("idle", "processing") and accepting and not errors
    words = list(reasons)
    if not accepting:
        words.append("not accepting jobs")
    message = str(attributes.get("printer-state-message") or "").strip()
    if message:
        words.append(message)
    detail = ", ".join(words)[:_DETAIL_MAX]
    return DevicePart(
        present=True, ready=ready, state=state, detail=detail, media=media, toner=toner
    )


class Printer:
    """One CUPS queue: ``queue`` is its name, None for the CUPS default (or the only
    queue). ``server`` (``host:port``) overrides ``CUPS_SERVER``/client.conf."""

    def __init__(self, queue: str | None = None, *, server: str | None = None) -> None:
        self._wanted = queue
        self._server = server
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cups")
        self._queue: str | None = None

    @property
    def queue(self) -> str | None:
        """The queue in use, once found."""
        return self._queue

    async def health(self) -> DevicePart:
        return await self._run(self._health)

    async def submit(self, path: Path, *, title: str, copies: int) -> int:
        """Queue ``path`` for printing in A4; the CUPS job id."""
        return await self._run(self._submit, path, title, copies)

    async def status(self, job: int) -> JobStatus:
        return await self._run(self._status, job)

    async def cancel(self, job: int) -> None:
        await self._run(self._cancel, job)

    async def wait(
        self,
        job: int,
        *,
        timeout_s: float,
        poll_s: float = 0.25,
        on_progress: Callable[[JobStatus], Awaitable[None]] | None = None,
    ) -> JobStatus:
        """Follow ``job`` until it is over; a completed job's status. Fails with the
        printer's words when it is aborted or cancelled, or not over in ``timeout_s``
        (then it is cancelled first)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        last_impressions = -1
        while True:
            not_cancelled()  # a cancelled wait never goes round again (see signaling.bus)
            status = await self.status(job)
            if status.completed:
                return status
            if status.over:
                words = f"the print job was {_JOB_OVER[status.state]}"
                raise PrinterFailure(f"{words}: {status.reason}" if status.reason else words)
            if on_progress is not None and status.impressions != last_impressions:
                last_impressions = status.impressions
                await on_progress(status)
            if loop.time() >= deadline:
                await self.cancel(job)
                state = _JOB_STATES.get(status.state, "unfinished")
                words = f"the printer did not finish the job in {timeout_s:.0f} s ({state})"
                raise PrinterFailure(f"{words}: {status.reason}" if status.reason else words)
            await asyncio.sleep(poll_s)

    async def close(self) -> None:
        self._thread.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------------ worker thread

    async def _run(self, function: Callable[..., R], *args: object) -> R:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, function, *args)

    def _connect(self) -> Any:
        try:
            if self._server is None:
                return cups.Connection()
            host, _, port = self._server.rpartition(":")
            if not host:
                return cups.Connection(host=self._server)
            return cups.Connection(host=host, port=int(port))
        except RuntimeError as exc:  # pycups: "failed to connect to server"
            raise PrinterFailure(f"CUPS is not reachable: {exc}") from exc

    def _resolve(self, connection: Any) -> str:
        if self._wanted is not None:
            self._queue = self._wanted
            return self._wanted
        queue = connection.getDefault()
        if not queue:
            queues = sorted(connection.getPrinters())
            if len(queues) != 1:
                raise PrinterFailure(
                    "no default printer in CUPS" if queues else "no printer in CUPS"
                )
            queue = queues[0]
        self._queue = str(queue)
        return self._queue

    def _health(self) -> DevicePart:
        try:
            connection = self._connect()
            queue = self._resolve(connection)
            attributes = connection.getPrinterAttributes(
                queue, requested_attributes=_HEALTH_ATTRIBUTES
            )
        except PrinterFailure as failure:
            return DevicePart(present=False, state="offline", detail=failure.reason)
        except cups.IPPError as exc:
            return DevicePart(present=False, state="offline", detail=_ipp_words(exc))
        return printer_part(attributes)

    def _submit(self, path: Path, title: str, copies: int) -> int:
        connection = self._connect()
        queue = self._resolve(connection)
        options = {"copies": str(copies), "media": A4_MEDIA}
        try:
            job = connection.printFile(queue, str(path), title or path.name, options)
        except cups.IPPError as exc:
            raise PrinterFailure(_ipp_words(exc)) from exc
        log.info("job %s on %s: %s, %d copies", job, queue, title, copies)
        return int(job)

    def _status(self, job: int) -> JobStatus:
        connection = self._connect()
        try:
            attributes = connection.getJobAttributes(job, requested_attributes=_JOB_ATTRIBUTES)
        except cups.IPPError as exc:
            raise PrinterFailure(_ipp_words(exc)) from exc
        reasons = [
            *_reasons(attributes, "job-printer-state-reasons"),
            *(
                reason
                for reason in _reasons(attributes, "job-state-reasons")
                if reason not in ("job-completed-successfully", "job-printing", "job-incoming")
            ),
        ]
        message = str(attributes.get("job-printer-state-message") or "").strip()
        reason = "; ".join(part for part in (message, ", ".join(reasons)) if part)
        return JobStatus(
            job=job,
            state=int(attributes.get("job-state", 0) or 0),
            impressions=int(attributes.get("job-impressions-completed", 0) or 0),
            reason=reason[:_DETAIL_MAX],
        )

    def _cancel(self, job: int) -> None:
        connection = self._connect()
        try:
            connection.cancelJob(job, purge_job=False)
        except cups.IPPError as exc:
            # Already over: nothing left to stop.
            log.info("cancelling job %s: %s", job, _ipp_words(exc))


def _ipp_words(exc: BaseException) -> str:
    """pycups raises ``IPPError(status, message)``: CUPS's own message."""
    args = exc.args
    if len(args) >= 2 and args[1]:
        return str(args[1])
    return str(exc) or type(exc).__name__
