"""The device agent: one WebSocket to the server, the kiosk's scanner and printer, and
the commands of the expert in between.

Rules this module keeps:

1. The connection comes and goes; the commands do not. Commands run in the agent's
   own task group, beside the connection loop, so a scan goes on while the agent
   reconnects (with backoff and jitter, forever), and its upload waits for the server
   to come back.
2. A command key is run once (``journal``): delivered twice, it is acknowledged with
   the state it reached and not run again.
3. Every state of a command is told as ``device.progress``. Only the latest state of a
   command matters, so while disconnected only that is kept, and told again after a
   reconnect; a final state is asked with an ``id`` and counts as told only when the
   server acknowledged it.
4. A scan is uploaded before it is ``done``: the document is in the case file once the
   server answered the upload (which is idempotent by key), whatever happens to the
   WebSocket in between.
5. ``device.cancel`` interrupts whatever the command waits for (SANE, the citizen,
   the upload, CUPS) and the command ends ``cancelled``; nothing of it is uploaded.
6. Health is polled every few seconds and sent when it changes (and on every
   connection); in between, an application ``ping`` proves the connection alive, since
   a dead network may never close the socket.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Final, TypeVar
from urllib.parse import quote

import aiohttp
import msgspec

from signaling import not_cancelled
from signaling.messages import (
    DeviceCancel,
    DeviceCommand,
    DeviceHealthReport,
    DevicePage,
    DeviceProgress,
    DeviceProgressState,
    ErrorMessage,
    Ping,
    Pong,
    ScanSettings,
    ServerMessage,
)
from visio_client import NEW_ID, Client, ClientError, ServerError

from .errors import (
    CommandCancelled,
    DeviceFailure,
    ScannerFailure,
    TransferInterrupted,
)
from .journal import Entry, Journal, valid_key
from .pdf import build_pdf
from .printer import JobStatus, Printer
from .scanner import ScannedPage, Scanner
from .transfer import download_document, server_path, upload_scan

__all__ = ["Agent", "AgentSettings", "backoff_delay"]

log = logging.getLogger(__name__)

T = TypeVar("T")

_STOPPED_REASON: Final = "the device agent stopped during the command"
_RESTARTED_REASON: Final = "the device agent restarted during the command"


def backoff_delay(
    attempt: int, *, low_s: float, high_s: float, rand: Callable[[], float] = random.random
) -> float:
    """Exponential backoff with jitter: between half and all of ``low_s * 2**attempt``
    (capped at ``high_s``), so that kiosks cut off together do not come back together."""
    base = min(high_s, low_s * 2.0 ** min(attempt, 30))
    return base / 2 + rand() * base / 2


@dataclass(frozen=True)
class AgentSettings:
    """How the agent runs; the defaults suit a kiosk."""

    server: str
    """Base URL of the server: ``http://host:port``."""
    token: Callable[[], str]
    """The device token, asked again at every connection and upload (a token file may
    be replaced by a fresh one)."""
    upload_kbps: int | None = None
    """Overrides ``device.command.upload_kbps`` (0: unpaced)."""
    upload_settle_s: float = 1.0
    """Between telling "uploading" and the first byte of a paced upload: time for the
    kiosk page to lower its video so the upload does not queue in front of the audio."""
    health_interval_s: float = 3.0
    ping_interval_s: float = 15.0
    reply_timeout_s: float = 10.0
    reconnect_low_s: float = 0.5
    reconnect_high_s: float = 30.0
    retry_high_s: float = 30.0
    """Longest pause between two tries of an upload or download."""
    keepalive_s: float = 30.0
    """A command with no news for this long is told again (the server's command
    timeout is longer)."""
    page_wait_s: float = 300.0
    """How long a multi-page scan waits for the citizen's next page (holding the
    scanner: another scan waits behind it)."""
    print_timeout_s: float = 180.0
    download_attempts: int = 5
    max_pages: int = 100
    max_print_bytes: int = 64 * 1024 * 1024
    keep_keys_s: float = 7 * 24 * 3600
    """How long a finished command's key is remembered."""
    stop_report_s: float = 2.0
    """On SIGTERM, how long to try telling the server how the commands ended."""


@dataclass
class _Running:
    """A command being run: how to reach it from the receive loop."""

    entry: Entry
    pages: asyncio.Queue[bool] = field(default_factory=asyncio.Queue)
    """The citizen's answers (``device.page.more``) for a multi-page scan."""
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None


class _Disconnected(Exception):
    """The server's event stream ended: the connection is over."""


class Agent:
    """The agent: ``await Agent(settings, scanner, printer, journal).run(stop)`` runs
    until ``stop`` is set."""

    def __init__(
        self, settings: AgentSettings, scanner: Scanner, printer: Printer, journal: Journal
    ) -> None:
        self.settings = settings
        self.scanner = scanner
        self.printer = printer
        self.journal = journal
        self.connections = 0
        """How many times the agent said hello successfully (tests watch reconnects)."""
        self._client: Client | None = None
        self._connected = asyncio.Event()
        self._http: aiohttp.ClientSession | None = None
        self._group: asyncio.TaskGroup | None = None
        self._running: dict[str, _Running] = {}
        self._untold: dict[str, DeviceProgress] = {}
        self._scanner_turn = asyncio.Lock()
        self._printer_turn = asyncio.Lock()
        self._last_error = ""

    @property
    def connected(self) -> asyncio.Event:
        """Set while a connection is up (tests wait on it)."""
        return self._connected

    # ------------------------------------------------------------------ lifetime

    async def run(self, stop: asyncio.Event) -> None:
        self.journal.prune(time.time(), self.settings.keep_keys_s)
        async with aiohttp.ClientSession() as http, asyncio.TaskGroup() as group:
            self._http = http
            self._group = group
            self._resume()
            connection = group.create_task(self._stay_connected(), name="connection")
            await stop.wait()
            log.info("stopping")
            await self._stop_commands()
            await self._tell_untold(self.settings.stop_report_s)
            connection.cancel()

    def _resume(self) -> None:
        """After a restart: upload the scans waiting in the spool, follow the print jobs
        already in CUPS; anything else cut short has failed."""
        for entry in self.journal:
            if entry.finished:
                if not entry.reported:
                    self._untold[entry.key] = self._progress_of(entry)
                continue
            if (
                entry.kind == "scan"
                and entry.spooled
                and self.journal.scan_path(entry.key).exists()
            ):
                self._start(entry, self._finish_upload)
            elif entry.kind == "print" and entry.job:
                self._start(entry, self._follow_print)
            else:
                self.journal.drop_pages(entry.key)
                self._end(entry, "failed", reason=_RESTARTED_REASON)

    async def _stop_commands(self) -> None:
        tasks = [running.task for running in self._running.values() if running.task]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # ------------------------------------------------------------------ connection

    async def _stay_connected(self) -> None:
        attempt = 0
        while not_cancelled():
            try:
                client = await Client.connect(
                    self.settings.server,
                    token=self.settings.token(),
                    session=self._http,
                    label="device agent",
                    reply_timeout_s=self.settings.reply_timeout_s,
                )
            except (ClientError, TimeoutError, OSError) as exc:
                delay = backoff_delay(
                    attempt,
                    low_s=self.settings.reconnect_low_s,
                    high_s=self.settings.reconnect_high_s,
                )
                attempt += 1
                log.warning("cannot connect (%s); again in %.1f s", exc, delay)
                await asyncio.sleep(delay)
                continue
            attempt = 0
            self.connections += 1
            log.info("connected to %s", self.settings.server)
            try:
                await self._serve(client)
            except* (_Disconnected, ClientError, TimeoutError) as lost:
                log.warning("connection lost: %s", lost.exceptions[0])
            except* Exception as broken:
                # A fault of ours must not end the agent: log it and connect afresh.
                log.error("connection dropped after an error", exc_info=broken.exceptions[0])
            finally:
                self._client = None
                self._connected.clear()
                await client.close()
            await asyncio.sleep(
                backoff_delay(
                    0, low_s=self.settings.reconnect_low_s, high_s=self.settings.reconnect_high_s
                )
            )

    async def _serve(self, client: Client) -> None:
        """Two pumps under one group: health (and pings) out, events in. The receiving
        pump is the group's body: on 3.11 a child failing while ``__aexit__`` waits
        leaves the parent task cancelling for ever, and this loop must go round again."""
        self._client = client
        self._connected.set()
        async with asyncio.TaskGroup() as pumps:
            pumps.create_task(self._keep_health(client))
            await self._tell_untold(self.settings.reply_timeout_s)
            await self._receive(client)

    async def _receive(self, client: Client) -> None:
        async for message in client.events():
            self._dispatch(message)
        raise _Disconnected(f"closed by the server (code {client.close_code})")

    def _dispatch(self, message: ServerMessage) -> None:
        match message:
            case DeviceCommand():
                self._accept(message)
            case DevicePage(key=key, more=more):
                running = self._running.get(key)
                if running is None:
                    log.info("device.page for %s, which is not running", key)
                else:
                    running.pages.put_nowait(more)
            case DeviceCancel(key=key):
                self._cancel(key)
            case ErrorMessage():
                log.warning("server error: %s %s", message.code, message.reason)
            case _:
                log.debug("ignored %s", type(message).__name__)

    async def _keep_health(self, client: Client) -> None:
        told: DeviceHealthReport | None = None
        told_at = 0.0
        loop = asyncio.get_running_loop()
        while not_cancelled():
            scanner, printer = await asyncio.gather(self.scanner.health(), self.printer.health())
            report = DeviceHealthReport(
                scanner=scanner, printer=printer, last_error=self._last_error[:500]
            )
            if report != told:
                try:
                    await client.request(msgspec.structs.replace(report, id=NEW_ID))
                except ServerError as refused:
                    log.error("device.health refused: %s", refused)
                told, told_at = report, loop.time()
            elif loop.time() - told_at >= self.settings.ping_interval_s:
                await client.request(Ping(id=NEW_ID), Pong)
                told_at = loop.time()
            await self._tell_untold(self.settings.reply_timeout_s)
            await self._keep_commands_alive()
            await asyncio.sleep(self.settings.health_interval_s)

    # ------------------------------------------------------------------ telling progress

    def _progress_of(self, entry: Entry) -> DeviceProgress:
        return DeviceProgress(
            call=entry.call,
            key=entry.key,
            state=entry.state,
            page=min(entry.page, 500),
            pages=min(entry.pages, 500),
            reason=entry.reason[:500],
            document=entry.document if entry.state == "done" or entry.kind == "print" else "",
            upload_kbps=self._upload_pace(entry) if entry.state == "uploading" else 0,
        )

    def _upload_pace(self, entry: Entry) -> int:
        """The pace of a scan's upload: the command line's, else the server's (0: unpaced)."""
        kbps = self.settings.upload_kbps
        return entry.upload_kbps if kbps is None else kbps

    async def _tell(self, entry: Entry) -> None:
        """Tell the server the state ``entry`` is in; kept for later when disconnected."""
        progress = self._progress_of(entry)
        self._untold[entry.key] = progress
        await self._send_progress(progress, self.settings.reply_timeout_s)

    async def _send_progress(self, progress: DeviceProgress, timeout_s: float) -> None:
        client = self._client
        if client is None:
            return
        entry = self.journal.get(progress.key)
        final = entry is not None and entry.finished
        try:
            if final:
                await client.request(
                    msgspec.structs.replace(progress, id=NEW_ID), timeout_s=timeout_s
                )
            else:
                await client.send(progress)
        except ServerError as refused:
            # The server heard it and will not take it (the command timed out there...):
            # telling it again cannot help.
            log.warning("progress %s %s refused: %s", progress.key, progress.state, refused)
        except (ClientError, TimeoutError) as exc:
            log.info("progress %s %s not told yet: %s", progress.key, progress.state, exc)
            return
        if self._untold.get(progress.key) == progress:
            del self._untold[progress.key]
        if final and entry is not None and not entry.reported:
            entry.reported = True
            self.journal.put(entry)

    async def _tell_untold(self, timeout_s: float) -> None:
        for progress in list(self._untold.values()):
            if self._client is None:
                return
            await self._send_progress(progress, timeout_s)

    async def _keep_commands_alive(self) -> None:
        """The server gives up on a command that has had no news for a while; one that
        waits (for the citizen's next page, the upload, the printer) says again where
        it stands before it looks dead."""
        now = time.time()
        for running in list(self._running.values()):
            entry = running.entry
            if not entry.finished and now - entry.updated_at >= self.settings.keepalive_s:
                entry.updated_at = now
                await self._tell(entry)

    def _end(
        self, entry: Entry, state: DeviceProgressState, *, reason: str = "", document: str = ""
    ) -> None:
        """Record how a command ended (told by the caller, or after a reconnect)."""
        entry.state = state
        entry.reason = reason
        if document:
            entry.document = document
        entry.spooled = False
        entry.reported = False
        entry.updated_at = time.time()
        self.journal.put(entry)
        self._untold[entry.key] = self._progress_of(entry)
        if state == "failed":
            self._last_error = reason
        elif state == "done":
            self._last_error = ""

    async def _move(
        self,
        entry: Entry,
        state: DeviceProgressState,
        *,
        page: int = 0,
        pages: int = 0,
        reason: str = "",
    ) -> None:
        entry.state = state
        entry.page = page
        entry.pages = pages
        entry.reason = reason
        entry.updated_at = time.time()
        self.journal.put(entry)
        await self._tell(entry)

    # ------------------------------------------------------------------ commands

    def _accept(self, command: DeviceCommand) -> None:
        if not valid_key(command.key):
            log.error("device.command with an unusable key %r: ignored", command.key)
            return
        known = self.journal.get(command.key)
        if known is not None:
            log.info("command %s delivered again (%s): not run again", command.key, known.state)
            if command.key not in self._running:
                # Told again by the health pump, which flushes untold progress.
                self._untold[known.key] = self._progress_of(known)
            return
        self.journal.prune(time.time(), self.settings.keep_keys_s)
        entry = Entry(
            key=command.key,
            call=command.call,
            kind=command.kind,
            state="queued",
            updated_at=time.time(),
            upload_url=command.upload_url,
            upload_kbps=command.upload_kbps,
            title=command.title,
            document=command.document,
            copies=max(1, command.copies),
        )
        self.journal.put(entry)
        if command.kind == "scan":
            settings = command.settings or ScanSettings()
            self._start(entry, lambda running: self._run_scan(running, settings))
        else:
            self._start(entry, self._run_print)

    def _start(self, entry: Entry, work: Callable[[_Running], Awaitable[None]]) -> None:
        assert self._group is not None, "commands run inside Agent.run"
        running = _Running(entry)
        self._running[entry.key] = running
        running.task = self._group.create_task(self._guard(running, work), name=entry.key)

    async def _guard(self, running: _Running, work: Callable[[_Running], Awaitable[None]]) -> None:
        """Run one command to its end, whatever that is, and tell it."""
        entry = running.entry
        try:
            await work(running)
        except CommandCancelled:
            log.info("command %s cancelled", entry.key)
            self.journal.drop_pages(entry.key)
            self.journal.scan_path(entry.key).unlink(missing_ok=True)
            self._end(entry, "cancelled")
        except DeviceFailure as failure:
            log.warning("command %s failed: %s", entry.key, failure.reason)
            self.journal.scan_path(entry.key).unlink(missing_ok=True)
            self._end(entry, "failed", reason=failure.reason)
        except asyncio.CancelledError:
            if not entry.spooled and not (entry.kind == "print" and entry.job):
                # Cut short by SIGTERM: this command cannot be taken up again.
                self._end(entry, "failed", reason=_STOPPED_REASON)
            raise
        except Exception as exc:
            # A fault of ours (a full disk...): the command fails, the agent goes on.
            log.exception("command %s broke", entry.key)
            self._end(entry, "failed", reason=f"the device agent failed: {exc}")
        finally:
            self.journal.drop_pages(entry.key)
            self.journal.print_path(entry.key).unlink(missing_ok=True)
            self._running.pop(entry.key, None)
        await self._send_progress(
            self._untold.get(entry.key) or self._progress_of(entry), self.settings.reply_timeout_s
        )

    def _cancel(self, key: str) -> None:
        running = self._running.get(key)
        if running is None:
            log.info("device.cancel for %s, which is not running", key)
            return
        running.cancelled.set()
        if running.entry.kind == "scan" and running.entry.state == "scanning":
            self.scanner.cancel()

    async def _unless_cancelled(self, running: _Running, work: Awaitable[T]) -> T:
        """Await ``work``, or raise ``CommandCancelled`` as soon as the expert cancels."""
        if running.cancelled.is_set():
            if asyncio.iscoroutine(work):
                work.close()
            raise CommandCancelled
        task = asyncio.ensure_future(work)
        cancelled = asyncio.ensure_future(running.cancelled.wait())
        try:
            await asyncio.wait({task, cancelled}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            cancelled.cancel()
            if not task.done():
                task.cancel()
            await asyncio.gather(task, cancelled, return_exceptions=True)
        if running.cancelled.is_set() and (task.cancelled() or task.exception() is not None):
            raise CommandCancelled
        return task.result()

    # ------------------------------------------------------------------ scan

    async def _run_scan(self, running: _Running, settings: ScanSettings) -> None:
        entry = running.entry
        await self._tell(entry)  # queued
        async with self._scanner_turn:
            try:
                pages = await self._scan_pages(running, settings)
                if running.cancelled.is_set():
                    raise CommandCancelled
                await asyncio.to_thread(
                    build_pdf, pages, self.journal.scan_path(entry.key), title=entry.title
                )
            finally:
                self.scanner.finish()
        self.journal.drop_pages(entry.key)
        entry.spooled = True
        entry.pages = len(pages)
        self.journal.put(entry)
        await self._finish_upload(running)

    async def _scan_pages(self, running: _Running, settings: ScanSettings) -> list[ScannedPage]:
        entry = running.entry
        await self._unless_cancelled(running, self.scanner.prepare(settings))
        pages: list[ScannedPage] = []
        feeder = settings.source == "feeder"
        known_total = 0 if settings.multipage else 1
        while True:
            if feeder:
                empty = await self._scan_feeder(running, pages, settings.multipage)
            else:
                await self._scan_one(running, pages, known_total, feeder=False)
                empty = ""
            if not settings.multipage or len(pages) >= self.settings.max_pages:
                return pages
            await self._move(entry, "waiting_page", page=len(pages), reason=empty)
            if not await self._next_page(running):
                return pages

    async def _scan_one(
        self, running: _Running, pages: list[ScannedPage], total: int, *, feeder: bool
    ) -> None:
        number = len(pages) + 1
        await self._move(running.entry, "scanning", page=number, pages=total)
        path = self.journal.page_path(running.entry.key, number)
        try:
            page = await self._unless_cancelled(
                running, self.scanner.scan_page(path, feeder=feeder)
            )
        except ScannerFailure as failure:
            if failure.status == "cancelled" and running.cancelled.is_set():
                raise CommandCancelled from failure
            raise
        pages.append(page)

    async def _scan_feeder(
        self, running: _Running, pages: list[ScannedPage], multipage: bool
    ) -> str:
        """Sheets from the feeder: one, or (multipage) until it runs empty. The feeder
        empty before the first sheet fails the command; before the first sheet of a
        later batch, it is said to the citizen (the returned words) who may load more."""
        fed = 0
        try:
            while True:
                try:
                    await self._scan_one(running, pages, 0 if multipage else 1, feeder=True)
                except ScannerFailure as failure:
                    if failure.status != "no_docs":
                        raise
                    if fed == 0 and not pages:
                        raise
                    return failure.reason if fed == 0 else ""
                fed += 1
                if not multipage or len(pages) >= self.settings.max_pages:
                    return ""
        finally:
            await self.scanner.end_batch()

    async def _next_page(self, running: _Running) -> bool:
        try:
            async with asyncio.timeout(self.settings.page_wait_s):
                return await self._unless_cancelled(running, running.pages.get())
        except TimeoutError as exc:
            raise DeviceFailure(
                f"no answer from the kiosk about the next page in {self.settings.page_wait_s:.0f} s"
            ) from exc

    async def _finish_upload(self, running: _Running) -> None:
        """Send the spooled scan until the server has it, then ``done``."""
        entry = running.entry
        path = self.journal.scan_path(entry.key)
        body = await asyncio.to_thread(path.read_bytes)
        await self._move(entry, "uploading", page=entry.pages, pages=entry.pages)
        kbps = self._upload_pace(entry)
        if kbps:
            # The kiosk page lowers its video when told "uploading"; bytes sent before
            # the encoder has followed would queue in front of the call's audio. A
            # short upload (a fast link) waits no more than a quarter of its own time.
            lasts_s = len(body) * 8 / (kbps * 1000)
            settle_s = min(self.settings.upload_settle_s, lasts_s / 4)
            await self._unless_cancelled(running, asyncio.sleep(settle_s))
        url = server_path(self.settings.server, entry.upload_url)
        # Paced at kbps, the body needs size*8/kbps ms; allow twice that and a margin.
        timeout_s = (len(body) * 8 / (kbps * 1000) * 2 if kbps else 0) + 60
        attempt = 0
        assert self._http is not None
        while not_cancelled():
            try:
                document = await self._unless_cancelled(
                    running,
                    upload_scan(
                        self._http,
                        url,
                        token=self.settings.token(),
                        key=entry.key,
                        body=body,
                        title=entry.title,
                        kbps=kbps,
                        timeout_s=timeout_s,
                    ),
                )
                break
            except TransferInterrupted as exc:
                delay = backoff_delay(attempt, low_s=1.0, high_s=self.settings.retry_high_s)
                attempt += 1
                log.warning("scan %s: %s; again in %.1f s", entry.key, exc, delay)
                await self._unless_cancelled(running, asyncio.sleep(delay))
        log.info("scan %s is document %s (%d pages)", entry.key, document.id, document.pages)
        path.unlink(missing_ok=True)
        entry.page = entry.pages = document.pages or entry.pages
        self._end(entry, "done", document=document.id)

    # ------------------------------------------------------------------ print

    async def _run_print(self, running: _Running) -> None:
        entry = running.entry
        await self._tell(entry)  # queued
        async with self._printer_turn:
            path = self.journal.print_path(entry.key)
            await self._download(running)
            await self._move(entry, "printing")
            job = await self._unless_cancelled(
                running,
                self.printer.submit(path, title=entry.title or entry.document, copies=entry.copies),
            )
            entry.job = job
            self.journal.put(entry)
            await self._follow_print(running)

    async def _download(self, running: _Running) -> None:
        entry = running.entry
        assert self._http is not None
        document = quote(entry.document, safe="")
        url = server_path(self.settings.server, f"/api/documents/{document}/content")
        for attempt in range(self.settings.download_attempts):
            try:
                await self._unless_cancelled(
                    running,
                    download_document(
                        self._http,
                        url,
                        token=self.settings.token(),
                        dest=self.journal.print_path(entry.key),
                        max_bytes=self.settings.max_print_bytes,
                        timeout_s=120,
                    ),
                )
                return
            except TransferInterrupted as exc:
                if attempt + 1 == self.settings.download_attempts:
                    raise DeviceFailure(f"the document could not be fetched: {exc}") from exc
                delay = backoff_delay(attempt, low_s=1.0, high_s=self.settings.retry_high_s)
                log.warning("print %s: %s; again in %.1f s", entry.key, exc, delay)
                await self._unless_cancelled(running, asyncio.sleep(delay))

    async def _follow_print(self, running: _Running) -> None:
        entry = running.entry

        async def printed(status: JobStatus) -> None:
            await self._move(entry, "printing", page=status.impressions)

        try:
            status = await self._unless_cancelled(
                running,
                self.printer.wait(
                    entry.job, timeout_s=self.settings.print_timeout_s, on_progress=printed
                ),
            )
        except CommandCancelled:
            await self.printer.cancel(entry.job)
            raise
        entry.page = entry.pages = status.impressions
        self._end(entry, "done", document=entry.document)
