"""The real device agent (SANE test backend, private cupsd) against an in-process
server: the expert's commands end as documents in the case file or as CUPS jobs, once
each, through lost connections and restarts.

The expert and the kiosk are played by the protocol client, as in
``tests/server/test_documents.py`` whose helpers these tests share; the agent reaches
the server through a relay the tests can cut (``proxy.CuttableLink``).
"""

from __future__ import annotations

import asyncio
import io
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pypdfium2 as pdfium
import pytest

from signaling import address
from signaling.messages import DeviceCommand, ScanSettings
from tests.agent.agents import RunningAgent, fast_settings, run_agent
from tests.agent.conftest import BROKEN_PRINTER, KIOSK_PRINTER
from tests.agent.proxy import CuttableLink
from tests.server.test_documents import (
    Http,
    connected_caf_call,
    documents_server,
    expert_token,
    pdf_bytes,
    stored_files,
)
from tests.support import JsonClient, RunningServer
from visio_agent.printer import Printer
from visio_agent.scanner import OptionValue
from visio_agent.trial import PrivateCups
from visio_server.keys import DOCUMENTS

pytestmark = pytest.mark.devices

Connect = Callable[..., Awaitable[JsonClient]]
StartAgent = Callable[..., Awaitable[RunningAgent]]

KEY = "agent-scan-0001"
SLOW_SCANNER: dict[str, OptionValue] = {"read_delay": True, "read_delay_duration": 100000}
"""About 2 s for an A4 page at 150 dpi: time to cut the link in the middle."""


@pytest.fixture
async def server(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[RunningServer]:
    """Uploads unpaced by default (the agent's own pace is set where a test needs it);
    commands time out after 60 s, or what ``@pytest.mark.command_timeout(s)`` says."""
    marker = request.node.get_closest_marker("command_timeout")
    timeout = marker.args[0] if marker else 60
    running = await documents_server(tmp_path, upload_kbps=100_000, command_timeout_s=timeout)
    yield running
    await running.stop()


@pytest.fixture
async def http(server: RunningServer) -> AsyncIterator[Http]:
    async with aiohttp.ClientSession() as session:
        yield Http(server, session)


@pytest.fixture
async def link(server: RunningServer) -> AsyncIterator[CuttableLink]:
    relay = await CuttableLink.open(int(server.url.rsplit(":", 1)[1]))
    yield relay
    await relay.close()


@pytest.fixture
async def start_agent(
    server: RunningServer,
    tmp_path: Path,
    sane_config: Path,
    cups_server: PrivateCups,
    kiosk_printer: str,
) -> AsyncIterator[StartAgent]:
    """Start kiosk-1's agent: ``await start_agent(url=..., spool=..., **settings)``."""
    started: list[RunningAgent] = []

    async def start(
        url: str | None = None,
        *,
        spool: Path | None = None,
        scanner_options: dict[str, OptionValue] | None = None,
        printer: str = kiosk_printer,
        **settings: Any,
    ) -> RunningAgent:
        token = server.token("device", "kiosk-1")
        running = await run_agent(
            fast_settings(url or server.url, token, **settings),
            spool or tmp_path / "spool",
            printer=Printer(printer, server=cups_server.server),
            scanner_options=scanner_options,
        )
        started.append(running)
        return running

    yield start
    for running in started:
        await running.halt()


async def devices_ready(party: JsonClient, timeout: float = 10) -> dict[str, Any]:
    """Wait for a ``device.status`` with scanner and printer ready."""
    async with asyncio.timeout(timeout):
        while True:
            health: dict[str, Any] = (await party.expect("device.status"))["health"]
            if health["scanner"].get("ready") and health["printer"].get("ready"):
                return health


async def progress_until(
    party: JsonClient, key: str, last: str, timeout: float = 20
) -> list[dict[str, Any]]:
    """Every ``device.progress`` of ``key`` up to the first in state ``last``."""
    seen: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout):
        while not seen or seen[-1]["state"] != last:
            # A retried upload may be silent for a while (its backoff, then the
            # upload itself): only the overall timeout bounds the wait.
            seen.append(await party.expect("device.progress", timeout=timeout, key=key))
    return seen


async def scan(
    expert: JsonClient, call: str, key: str = KEY, title: str = "", **settings: Any
) -> None:
    reply = await expert.request(
        {"type": "device.scan", "call": call, "key": key, "title": title, "settings": settings}
    )
    assert reply["type"] == "ack", reply


async def documents_of(http: Http, server: RunningServer, call: str) -> list[dict[str, Any]]:
    status, listed = await http.case_file(call, expert_token(server))
    assert status == 200, listed
    return list(listed["documents"])


async def until(condition: Callable[[], bool], timeout: float = 10) -> None:
    for _ in range(int(timeout / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise TimeoutError(f"still false after {timeout} s")


# ---------------------------------------------------------------------- scans


async def test_a_scan_command_ends_as_an_a4_document_in_the_case_file(
    server: RunningServer, connect: Connect, http: Http, start_agent: StartAgent
) -> None:
    running = await start_agent()
    kiosk, expert, call = await connected_caf_call(connect)
    health = await devices_ready(expert)
    assert health["online"] and health["printer"]["media"] == "ok"

    await scan(expert, call, title="Avis d’imposition 2024", color="gray", resolution=150)
    progress = await progress_until(expert, KEY, "done")
    states = [p["state"] for p in progress]
    assert states[0] == "queued" and states[-1] == "done"
    assert {"scanning", "uploading"} <= set(states)
    scanning = next(p for p in progress if p["state"] == "scanning")
    assert (scanning["page"], scanning["pages"], scanning["kind"]) == (1, 1, "scan")
    document_id = progress[-1]["document"]
    assert document_id
    await progress_until(kiosk, KEY, "done")

    [document] = await documents_of(http, server, call)
    assert document["id"] == document_id
    assert (document["origin"], document["state"], document["pages"]) == ("scan", "received", 1)
    assert document["command"] == KEY and document["mime"] == "application/pdf"
    assert document["title"] == "Avis d’imposition 2024"
    status, body = await http.content(document_id, expert_token(server))
    assert status == 200
    pdf = pdfium.PdfDocument(io.BytesIO(body))
    width, height = pdf[0].get_size()
    assert (round(width), round(height)) == (595, 841)
    assert running.scanner.pages_scanned == 1
    assert not list((running.agent.journal.spool / "scans").iterdir())


async def test_a_multipage_scan_waits_for_the_citizen_between_pages(
    server: RunningServer, connect: Connect, http: Http, start_agent: StartAgent
) -> None:
    running = await start_agent()
    kiosk, expert, call = await connected_caf_call(connect)
    await devices_ready(expert)
    await scan(expert, call, multipage=True, resolution=75)

    for page in (1, 2):
        waiting = (await progress_until(kiosk, KEY, "waiting_page"))[-1]
        assert waiting["page"] == page
        more = page < 2
        reply = await kiosk.request({"type": "device.page", "call": call, "key": KEY, "more": more})
        assert reply["type"] == "ack", reply
    done = (await progress_until(expert, KEY, "done"))[-1]
    [document] = await documents_of(http, server, call)
    assert document["id"] == done["document"] and document["pages"] == 2
    assert running.scanner.pages_scanned == 2


async def test_the_same_command_twice_scans_once(
    server: RunningServer, connect: Connect, http: Http, start_agent: StartAgent
) -> None:
    running = await start_agent()
    _kiosk, expert, call = await connected_caf_call(connect)
    await devices_ready(expert)
    await scan(expert, call, resolution=75)
    await scan(expert, call, resolution=75)  # the console's retry: same key
    await progress_until(expert, KEY, "done")

    # The same command delivered to the agent again, as a second server node might.
    again = DeviceCommand(
        call=call,
        key=KEY,
        kind="scan",
        upload_url=f"/api/calls/{call}/documents",
        upload_kbps=100_000,
        settings=ScanSettings(resolution=75),
    )
    assert await server.app[DOCUMENTS].bus.publish(address("device", "kiosk-1"), again) == 1
    told = await expert.expect("device.progress", key=KEY)  # told again, not run again
    assert told["state"] == "done"
    await asyncio.sleep(0.5)
    assert running.scanner.pages_scanned == 1
    assert len(await documents_of(http, server, call)) == 1


async def test_a_link_lost_during_a_scan_delivers_the_document_once_it_is_back(
    server: RunningServer,
    connect: Connect,
    http: Http,
    start_agent: StartAgent,
    link: CuttableLink,
) -> None:
    running = await start_agent(link.url, scanner_options=SLOW_SCANNER)
    _kiosk, expert, call = await connected_caf_call(connect)
    await devices_ready(expert)
    await scan(expert, call, resolution=150)
    await progress_until(expert, KEY, "scanning")

    link.cut()
    # The scan goes on without the server and waits in the spool.
    journal = running.agent.journal
    await until(lambda: (entry := journal.get(KEY)) is not None and entry.spooled)
    assert journal.scan_path(KEY).exists()
    await asyncio.sleep(0.5)  # an upload or two refused
    assert not running.agent.connected.is_set()
    link.restore()

    done = (await progress_until(expert, KEY, "done"))[-1]
    [document] = await documents_of(http, server, call)
    assert document["id"] == done["document"] and document["pages"] == 1
    await until(lambda: running.agent.connections >= 2)
    assert running.scanner.pages_scanned == 1
    await until(lambda: journal.get(KEY) is not None and journal.get(KEY).reported)  # type: ignore[union-attr]
    assert not journal.scan_path(KEY).exists()


async def test_a_link_lost_during_the_upload_stores_nothing_until_the_whole_scan_arrives(
    server: RunningServer,
    connect: Connect,
    http: Http,
    start_agent: StartAgent,
    link: CuttableLink,
) -> None:
    # A grid compresses poorly (about 50 KB at 75 dpi): at 128 kbit/s, some 3 s of upload.
    await start_agent(link.url, upload_kbps=128, scanner_options={"test_picture": "Grid"})
    _kiosk, expert, call = await connected_caf_call(connect)
    await devices_ready(expert)
    await scan(expert, call, resolution=75)
    await progress_until(expert, KEY, "uploading")
    sent = link.bytes_up
    await until(lambda: link.bytes_up > sent + 8000)
    link.cut()
    await asyncio.sleep(0.3)
    assert [d["state"] for d in await documents_of(http, server, call)] == ["scanned"]
    assert stored_files(Path(server.config.documents.shared_dir)) == []  # no half file
    link.restore()

    done = (await progress_until(expert, KEY, "done", timeout=30))[-1]
    [document] = await documents_of(http, server, call)
    assert document["id"] == done["document"] and document["state"] == "received"


async def test_a_scan_waiting_in_the_spool_is_uploaded_after_a_restart(
    server: RunningServer,
    connect: Connect,
    http: Http,
    start_agent: StartAgent,
    link: CuttableLink,
    tmp_path: Path,
) -> None:
    spool = tmp_path / "kiosk-spool"
    first = await start_agent(link.url, spool=spool)
    _kiosk, expert, call = await connected_caf_call(connect)
    await devices_ready(expert)
    await scan(expert, call, resolution=75)
    await progress_until(expert, KEY, "scanning")
    link.cut()
    await until(lambda: (entry := first.agent.journal.get(KEY)) is not None and entry.spooled)
    await first.halt()  # SIGTERM while the scan waits for the server

    second = await start_agent(server.url, spool=spool)
    done = (await progress_until(expert, KEY, "done"))[-1]
    [document] = await documents_of(http, server, call)
    assert document["id"] == done["document"]
    assert second.scanner.pages_scanned == 0  # uploaded from the spool, not scanned again
    assert not second.agent.journal.scan_path(KEY).exists()


async def test_an_empty_feeder_fails_the_scan_in_the_devices_words(
    server: RunningServer, connect: Connect, http: Http, start_agent: StartAgent
) -> None:
    await start_agent(scanner_options={"read_return_value": "SANE_STATUS_NO_DOCS"})
    kiosk, expert, call = await connected_caf_call(connect)
    await devices_ready(expert)
    await scan(expert, call, source="feeder")
    failed = (await progress_until(expert, KEY, "failed"))[-1]
    assert failed["reason"] == "Document feeder out of documents"
    await progress_until(kiosk, KEY, "failed")
    async with asyncio.timeout(5):
        while True:
            health = (await expert.expect("device.status"))["health"]
            if health["last_error"] == "Document feeder out of documents":
                break
    assert all(d["state"] != "received" for d in await documents_of(http, server, call))


async def test_a_cancel_stops_a_multipage_scan_and_nothing_is_uploaded(
    server: RunningServer, connect: Connect, http: Http, start_agent: StartAgent
) -> None:
    running = await start_agent()
    kiosk, expert, call = await connected_caf_call(connect)
    await devices_ready(expert)
    await scan(expert, call, multipage=True, resolution=75)
    await progress_until(kiosk, KEY, "waiting_page")
    reply = await expert.request({"type": "device.cancel", "call": call, "key": KEY})
    assert reply["type"] == "ack", reply
    await progress_until(expert, KEY, "cancelled")
    assert all(d["state"] != "received" for d in await documents_of(http, server, call))
    assert running.agent.journal.get(KEY).state == "cancelled"  # type: ignore[union-attr]
    assert not list((running.agent.journal.spool / "pages").iterdir())


# ---------------------------------------------------------------------- printing and health


async def test_a_print_command_prints_every_copy_of_the_document(
    server: RunningServer,
    connect: Connect,
    http: Http,
    start_agent: StartAgent,
    cups_server: PrivateCups,
) -> None:
    await start_agent()
    kiosk, expert, call = await connected_caf_call(connect)
    await devices_ready(expert)
    status, uploaded = await http.upload(call, expert_token(server), pdf_bytes(2), key="to-print-1")
    assert status == 201, uploaded

    reply = await expert.request(
        {
            "type": "device.print",
            "call": call,
            "key": "agent-print-0001",
            "document": uploaded["id"],
            "copies": 2,
        }
    )
    assert reply["type"] == "ack", reply
    progress = await progress_until(expert, "agent-print-0001", "done")
    assert "printing" in [p["state"] for p in progress]
    assert progress[-1]["document"] == uploaded["id"] and progress[-1]["pages"] == 4
    await progress_until(kiosk, "agent-print-0001", "done")
    assert KIOSK_PRINTER in cups_server.completed_jobs()
    async with asyncio.timeout(5):
        while True:
            changed = await expert.expect("case.document", call=call)
            if changed["document"]["printed_copies"] == 2:
                break


async def test_a_print_the_printer_cannot_finish_is_cancelled_and_fails(
    server: RunningServer, connect: Connect, http: Http, start_agent: StartAgent
) -> None:
    # kiosk-broken cannot write its output: CUPS stops the job and would keep it.
    await start_agent(printer=BROKEN_PRINTER, print_timeout_s=1.5)
    _kiosk, expert, call = await connected_caf_call(connect)
    await devices_ready(expert)
    status, uploaded = await http.upload(call, expert_token(server), pdf_bytes(1), key="to-print-2")
    assert status == 201, uploaded
    key = "agent-print-0002"
    request = {"type": "device.print", "call": call, "key": key, "document": uploaded["id"]}
    assert (await expert.request(request))["type"] == "ack"
    failed = (await progress_until(expert, key, "failed"))[-1]
    assert "did not finish the job" in failed["reason"]


@pytest.mark.command_timeout(1.0)
async def test_a_command_waiting_for_the_citizen_stays_alive_past_the_server_timeout(
    server: RunningServer, connect: Connect, http: Http, start_agent: StartAgent
) -> None:
    await start_agent(keepalive_s=0.3)
    kiosk, expert, call = await connected_caf_call(connect)
    await devices_ready(expert)
    await scan(expert, call, multipage=True, resolution=75)
    await progress_until(kiosk, KEY, "waiting_page")
    await asyncio.sleep(2.5)  # the citizen takes her time; the server gives up after 1 s
    reply = await kiosk.request({"type": "device.page", "call": call, "key": KEY, "more": False})
    assert reply["type"] == "ack", reply
    states = [p["state"] for p in await progress_until(expert, KEY, "done")]
    assert "timed_out" not in states
    [document] = await documents_of(http, server, call)
    assert document["state"] == "received"


async def test_the_printers_health_reaches_the_call(
    server: RunningServer,
    connect: Connect,
    start_agent: StartAgent,
    cups_server: PrivateCups,
) -> None:
    await start_agent()
    _kiosk, expert, _call = await connected_caf_call(connect)
    await devices_ready(expert)
    cups_server.set_reasons(KIOSK_PRINTER, "media-empty-error")
    async with asyncio.timeout(5):
        while True:
            printer = (await expert.expect("device.status"))["health"]["printer"]
            if printer.get("media") == "empty":
                break
    assert not printer.get("ready") and "media-empty-error" in printer["detail"]
    cups_server.set_reasons(KIOSK_PRINTER)
    await devices_ready(expert)


# ---------------------------------------------------------------------- the command line


async def test_the_command_line_agent_connects_and_stops_cleanly_on_sigterm(
    server: RunningServer,
    connect: Connect,
    tmp_path: Path,
    sane_config: Path,
    cups_server: PrivateCups,
    kiosk_printer: str,
) -> None:
    token_file = tmp_path / "device.jwt"
    token_file.write_text(server.token("device", "kiosk-1") + "\n", "utf-8")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "visio_agent.cli",
        "--server",
        server.url,
        "--token-file",
        str(token_file),
        "--scanner",
        "test:0",
        "--printer",
        kiosk_printer,
        "--spool-dir",
        str(tmp_path / "spool"),
        "--health-interval",
        "0.2",
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "CUPS_SERVER": cups_server.server},
    )
    try:
        _kiosk, expert, _call = await connected_caf_call(connect)
        await devices_ready(expert, timeout=20)
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(15):
            code = await process.wait()
        assert code == 0
        assert process.stderr is not None
        log = (await process.stderr.read()).decode()
        assert "connected to" in log and "stopping" in log
        assert "Traceback" not in log
        offline = (await expert.expect("device.status"))["health"]
        assert not offline["online"]
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
