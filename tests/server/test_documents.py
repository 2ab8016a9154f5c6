"""Documents over WebSockets and HTTP with an in-process server: who may command a
kiosk's devices and read its documents, uploads checked and bounded, the review, print
and consent flows, deadlines and purges. The device agent is played by the typed
client (``visio_client``); the real agent with SANE and CUPS is tested in
``tests/agent``.

The helpers at the top are shared with ``test_exporter.py`` and
``test_documents_cluster.py``."""

from __future__ import annotations

import asyncio
import io
import json
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pytest
from PIL import Image

from tests.server.test_metrics import samples, scrape
from tests.support import EXPERT_CAF, JsonClient, RunningServer, start_server, write_test_config
from visio_server.cli import _sample_tokens
from visio_server.config import load_config
from visio_server.keys import DOCUMENTS

Connect = Callable[..., Awaitable[JsonClient]]

KEY = "scan-key-0001"


def documents_config(folder: Path, *, per_beneficiary: bool = False, **documents: Any) -> Path:
    """The test configuration with a ``[documents]`` section (TOML values as given)."""
    path = write_test_config(folder)
    text = path.read_text("utf-8")
    if per_beneficiary:
        text = text.replace(
            'id = "cpam"\nname = "CPAM"\n',
            'id = "cpam"\nname = "CPAM"\ncase_per_beneficiary = true\n',
        )
    settings = {"shared_dir": str(folder / "blobs"), "export": "none", **documents}
    lines = ["", "[documents]"] + [f"{k} = {json.dumps(v)}" for k, v in settings.items()]
    path.write_text(text + "\n".join(lines) + "\n", "utf-8")
    return path


async def documents_server(folder: Path, **documents: Any) -> RunningServer:
    return await start_server(documents_config(folder, **documents))


# ---------------------------------------------------------------------- files


def pdf_bytes(pages: int = 2) -> bytes:
    images = [Image.new("RGB", (200, 280), c) for c in ("white", "red", "blue", "green")[:pages]]
    out = io.BytesIO()
    images[0].save(out, "PDF", save_all=True, append_images=images[1:])
    return out.getvalue()


def image_bytes(kind: str, size: tuple[int, int] = (120, 80), frames: int = 1) -> bytes:
    images = [Image.new("RGB", size, c) for c in ("white", "red", "blue")[:frames]]
    out = io.BytesIO()
    images[0].save(out, kind, save_all=frames > 1, append_images=images[1:])
    return out.getvalue()


def stored_files(folder: Path) -> list[str]:
    """Every file in the blob folder, temporary ones included."""
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# ---------------------------------------------------------------------- parties


def expert_token(server: RunningServer, expert: str = "expert-1") -> str:
    claims = EXPERT_CAF if expert == "expert-1" else {}
    return server.token("expert", expert, **claims)


async def device_agent(
    connect: Connect, kiosk: str = "kiosk-1", *, scanner: bool = True, printer: bool = True
) -> JsonClient:
    """The kiosk's device agent, played by the typed client: signed in, health told."""
    device = await connect("device", kiosk)
    reply = await device.request(
        {
            "type": "device.health",
            "scanner": {"present": scanner, "ready": scanner, "state": "idle"},
            "printer": {"present": printer, "ready": printer, "state": "idle"},
        }
    )
    assert reply["type"] == "ack", reply
    return device


async def connected_caf_call(connect: Connect) -> tuple[JsonClient, JsonClient, str]:
    """kiosk-1 in a CAF call answered by expert-1; both have had ``case.file``."""
    expert = await connect("expert", "expert-1", **EXPERT_CAF)
    await expert.request({"type": "expert.status", "status": "available"})
    kiosk = await connect("kiosk", "kiosk-1")
    queued = await kiosk.request(
        {"type": "call.request", "service": "caf", "beneficiary": "1234567"}
    )
    call = str(queued["call"])
    await expert.expect("call.offered", call=call)
    await expert.request({"type": "offer.accept", "call": call})
    await kiosk.expect("call.connected")
    await expert.expect("call.connected")
    await kiosk.expect("case.file", call=call)
    await expert.expect("case.file", call=call)
    return kiosk, expert, call


async def scan_command(
    expert: JsonClient, device: JsonClient, call: str, key: str = KEY, title: str = ""
) -> dict[str, Any]:
    """The expert asks for a scan; the ``device.command`` the agent receives."""
    reply = await expert.request({"type": "device.scan", "call": call, "key": key, "title": title})
    assert reply["type"] == "ack", reply
    return await device.expect("device.command", key=key)


# ---------------------------------------------------------------------- HTTP


class Http:
    """HTTP calls to one server; each returns (status, JSON body or bytes)."""

    def __init__(self, server: RunningServer, session: aiohttp.ClientSession) -> None:
        self.server = server
        self.session = session

    @staticmethod
    def _headers(token: str | None, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return {**headers, **(extra or {})}

    async def post(
        self, path: str, token: str | None, data: Any, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        async with self.session.post(
            self.server.url + path, data=data, headers=self._headers(token, headers)
        ) as response:
            return response.status, await _body(response)

    async def get(self, path: str, token: str | None) -> tuple[int, Any]:
        async with self.session.get(
            self.server.url + path, headers=self._headers(token)
        ) as response:
            return response.status, await _body(response)

    async def upload(
        self, call: str, token: str, data: bytes, key: str = "", title: str = ""
    ) -> tuple[int, Any]:
        headers = {}
        if key:
            headers["Idempotency-Key"] = key
        if title:
            headers["X-Document-Title"] = title
        return await self.post(f"/api/calls/{call}/documents", token, data, headers)

    async def case_file(self, call: str, token: str) -> tuple[int, Any]:
        return await self.get(f"/api/calls/{call}/documents", token)

    async def content(self, doc: str, token: str) -> tuple[int, Any]:
        return await self.get(f"/api/documents/{doc}/content", token)


async def _body(response: aiohttp.ClientResponse) -> Any:
    data = await response.read()
    if response.content_type == "application/json":
        return json.loads(data)
    return data


# ---------------------------------------------------------------------- fixtures


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[RunningServer]:
    """The server of these tests: documents of at most 64 KiB, commands that time out
    after 2 s, blobs in ``tmp_path / "blobs"``, no export."""
    running = await documents_server(tmp_path, max_bytes=65536, command_timeout_s=2)
    yield running
    await running.stop()


@pytest.fixture
async def http(server: RunningServer) -> AsyncIterator[Http]:
    async with aiohttp.ClientSession() as session:
        yield Http(server, session)


async def health_told(
    client: JsonClient, wanted: Callable[[dict[str, Any]], bool], timeout: float = 5
) -> dict[str, Any]:
    """The first ``device.status`` whose health is ``wanted`` (earlier ones skipped)."""
    async with asyncio.timeout(timeout):
        while True:
            health: dict[str, Any] = (await client.expect("device.status"))["health"]
            if wanted(health):
                return health


async def nothing_more(client: JsonClient, kind: str, wait_s: float = 0.5) -> bool:
    try:
        await client.expect(kind, timeout=wait_s)
    except TimeoutError:
        return True
    return False


async def scanned_document(
    connect: Connect, http: Http
) -> tuple[JsonClient, JsonClient, JsonClient, str, dict[str, Any]]:
    """A connected CAF call with kiosk-1's agent, and one scan received; (kiosk,
    expert, device, call, the document)."""
    kiosk, expert, call = await connected_caf_call(connect)
    device = await device_agent(connect)
    command = await scan_command(expert, device, call)
    token = http.server.token("device", "kiosk-1")
    status, document = await http.upload(call, token, pdf_bytes(), key=command["key"])
    assert status == 201, document
    await expert.expect("case.document", call=call)  # requested
    return kiosk, expert, device, call, document


# ---------------------------------------------------------------------- the scan round trip


async def test_a_scan_goes_from_the_expert_to_the_kiosk_device_and_back(
    server: RunningServer, connect: Connect, http: Http
) -> None:
    kiosk, expert, call = await connected_caf_call(connect)
    device = await device_agent(connect)
    health = await health_told(expert, lambda h: h["scanner"].get("ready", False))
    assert health["kiosk"] == "kiosk-1" and health["online"]
    command = await scan_command(expert, device, call, title="Avis d'imposition")
    assert command["kind"] == "scan" and command["call"] == call
    assert command["upload_url"] == f"/api/calls/{call}/documents"
    assert command["upload_kbps"] == 160 and command["settings"]["resolution"] == 150
    for party in (kiosk, expert):
        requested = await party.expect("case.document", call=call)
        assert requested["document"]["state"] == "requested"
        assert requested["document"]["title"] == "Avis d'imposition"

    await device.request(
        {"type": "device.progress", "call": call, "key": KEY, "state": "scanning", "page": 1}
    )
    for party in (kiosk, expert):
        progress = await party.expect("device.progress", key=KEY)
        assert (progress["kind"], progress["state"], progress["page"]) == ("scan", "scanning", 1)
    uploading = {"type": "device.progress", "call": call, "key": KEY, "state": "uploading"}
    await device.request({**uploading, "upload_kbps": 160})
    for party in (kiosk, expert):
        progress = await party.expect("device.progress", key=KEY)
        assert (progress["state"], progress["upload_kbps"]) == ("uploading", 160)
        scanned = await party.expect("case.document", call=call)
        assert scanned["document"]["state"] == "scanned"

    token = server.token("device", "kiosk-1")
    status_code, document = await http.upload(call, token, pdf_bytes(3), key=KEY)
    assert status_code == 201, document
    assert (document["state"], document["mime"], document["pages"]) == (
        "received",
        "application/pdf",
        3,
    )
    assert document["origin"] == "scan" and document["command"] == KEY
    done = await expert.expect("device.progress", key=KEY, state="done")
    assert done["document"] == document["id"]
    received = await kiosk.expect("case.document", call=call)
    assert received["document"]["state"] == "received"

    again, same = await http.upload(call, token, pdf_bytes(3), key=KEY)
    assert again == 200 and same["id"] == document["id"]
    assert len(stored_files(Path(server.config.documents.shared_dir))) == 1

    reader = expert_token(server)
    status_code, body = await http.content(document["id"], reader)
    assert status_code == 200 and body.startswith(b"%PDF-") and len(body) == document["bytes"]
    viewed = await kiosk.expect("case.document", call=call)
    assert viewed["document"]["state"] == "viewed"
    status_code, png = await http.get(
        f"/api/documents/{document['id']}/pages/2.png?width=300", reader
    )
    assert status_code == 200 and Image.open(io.BytesIO(png)).size == (300, 420)
    status_code, refusal = await http.get(f"/api/documents/{document['id']}/pages/4.png", reader)
    assert status_code == 404 and refusal["code"] == "unknown_page"

    review = {"type": "case.review", "call": call, "document": document["id"]}
    assert (await expert.request({**review, "verdict": "accepted"}))["type"] == "ack"
    accepted = await kiosk.expect("case.document", call=call)
    assert accepted["document"]["state"] == "accepted"
    status_code, listed = await http.case_file(call, reader)
    assert status_code == 200 and listed["case"] == f"c-{call}"
    assert [(d["id"], d["state"]) for d in listed["documents"]] == [(document["id"], "accepted")]


async def test_a_page_shown_in_the_console_viewer_marks_the_document_viewed(
    server: RunningServer, connect: Connect, http: Http
) -> None:
    kiosk, _, _, call, document = await scanned_document(connect, http)
    page = f"/api/documents/{document['id']}/pages/1.png?width=200"
    status_code, _ = await http.get(page, server.token("device", "kiosk-1"))
    assert status_code == 200  # the device reads, but only the expert's reading counts
    status_code, _ = await http.get(page, expert_token(server))
    assert status_code == 200
    viewed = await kiosk.expect("case.document", call=call, timeout=5)
    while viewed["document"]["state"] != "viewed":
        viewed = await kiosk.expect("case.document", call=call, timeout=5)
    assert viewed["document"]["id"] == document["id"]


async def test_the_case_file_and_the_devices_follow_call_connected(
    server: RunningServer, connect: Connect
) -> None:
    await device_agent(connect, printer=False)
    expert = await connect("expert", "expert-1", **EXPERT_CAF)
    await expert.request({"type": "expert.status", "status": "available"})
    kiosk = await connect("kiosk", "kiosk-1")
    queued = await kiosk.request(
        {"type": "call.request", "service": "caf", "beneficiary": "1234567"}
    )
    await expert.expect("call.offered")
    await expert.request({"type": "offer.accept", "call": queued["call"]})
    for party in (kiosk, expert):
        await party.expect("call.connected")
        file = await party.expect("case.file")
        assert file == {
            "type": "case.file",
            "call": queued["call"],
            "case": f"c-{queued['call']}",
            "documents": [],
            "consent": False,
            "share_code": "",
        }
        health = (await party.expect("device.status"))["health"]
        assert health["online"] and health["scanner"]["present"]
        assert not health["printer"]["present"]


async def test_device_health_changes_are_told_to_the_call(
    server: RunningServer, connect: Connect
) -> None:
    kiosk, expert, _call = await connected_caf_call(connect)
    device = await device_agent(connect)
    for party in (kiosk, expert):
        await health_told(party, lambda h: h["online"] and h["scanner"]["present"])
    jammed = {"present": True, "ready": False, "state": "stopped", "detail": "media-jam"}
    await device.request({"type": "device.health", "scanner": {"present": True}, "printer": jammed})
    for party in (kiosk, expert):
        status = await party.expect("device.status")
        assert status["health"]["printer"]["detail"] == "media-jam"
    # The same report again is no news.
    await device.request({"type": "device.health", "scanner": {"present": True}, "printer": jammed})
    assert await nothing_more(expert, "device.status")
    await device.close()
    for party in (kiosk, expert):
        gone = await party.expect("device.status")
        assert gone["health"]["online"] is False


async def test_a_newer_agent_of_the_same_kiosk_replaces_the_older(
    server: RunningServer, connect: Connect
) -> None:
    first = await device_agent(connect)
    second = await device_agent(connect)
    assert await first.wait_closed() == 4000
    assert (await second.request({"type": "ping"}))["type"] == "pong"


async def test_device_tokens_name_a_configured_kiosk(
    server: RunningServer, connect: Connect
) -> None:
    stranger = await connect()
    refused = await stranger.hello(server.token("device", "kiosk-nowhere"))
    assert refused["code"] == "not_authenticated"


# ---------------------------------------------------------------------- who may command


async def test_commands_outside_a_connected_call_are_refused(
    server: RunningServer, connect: Connect
) -> None:
    kiosk, expert, call = await connected_caf_call(connect)
    await device_agent(connect)
    scan = {"type": "device.scan", "call": "0123456789abcdef", "key": KEY}
    assert (await expert.request(scan))["code"] == "not_in_call"
    await expert.request({"type": "call.hangup", "call": call})
    await kiosk.expect("call.ended")
    refused = await expert.request({**scan, "call": call})
    assert refused["code"] == "not_in_call" and refused["details"]["call"] == call
    page = {"type": "device.page", "call": call, "key": KEY, "more": True}
    assert (await kiosk.request(page))["code"] == "not_in_call"


async def test_another_expert_cannot_drive_the_kiosk(
    server: RunningServer, connect: Connect
) -> None:
    _kiosk, _expert, call = await connected_caf_call(connect)
    device = await device_agent(connect)
    other = await connect("expert", "expert-2", services=["cpam"], partner="cpam")
    for message in (
        {"type": "device.scan", "call": call, "key": KEY},
        {"type": "device.print", "call": call, "key": KEY, "document": "d-1"},
        {"type": "device.cancel", "call": call, "key": KEY},
        {"type": "case.review", "call": call, "document": "d-1", "verdict": "accepted"},
    ):
        refused = await other.request(message)
        assert refused["code"] == "not_your_call", (message, refused)
    assert await nothing_more(device, "device.command")


async def test_another_kiosk_and_its_device_are_refused(
    server: RunningServer, connect: Connect, http: Http
) -> None:
    _kiosk, expert, call = await connected_caf_call(connect)
    device = await device_agent(connect)
    await scan_command(expert, device, call)
    intruder = await connect("kiosk", "kiosk-2")
    for message in (
        {"type": "device.page", "call": call, "key": KEY, "more": False},
        {"type": "case.consent", "call": call, "share": True},
        {"type": "case.share", "call": call, "code": "ABCDEFGH"},
    ):
        assert (await intruder.request(message))["code"] == "not_your_call", message
    foreign = await device_agent(connect, "kiosk-2")
    progress = {"type": "device.progress", "call": call, "key": KEY, "state": "scanning"}
    assert (await foreign.request(progress))["code"] == "not_your_call"
    token = server.token("device", "kiosk-2")
    status, refusal = await http.upload(call, token, pdf_bytes(), key=KEY)
    assert status == 403 and refusal["code"] == "not_your_call"
    status, refusal = await http.case_file(call, token)
    assert status == 403
    assert stored_files(Path(server.config.documents.shared_dir)) == []


async def test_a_device_may_not_say_what_only_the_server_says(
    server: RunningServer, connect: Connect
) -> None:
    _kiosk, expert, call = await connected_caf_call(connect)
    device = await device_agent(connect)
    await scan_command(expert, device, call)
    report = {"type": "device.progress", "call": call, "key": KEY, "state": "timed_out"}
    assert (await device.request(report))["code"] == "invalid_command"
    unknown = {"type": "device.progress", "call": call, "key": "nope-nope-1", "state": "queued"}
    assert (await device.request(unknown))["code"] == "unknown_command"


async def test_a_kiosk_without_agent_scanner_or_printer_is_device_unavailable(
    server: RunningServer, connect: Connect, http: Http
) -> None:
    _kiosk, expert, call = await connected_caf_call(connect)
    refused = await expert.request({"type": "device.scan", "call": call, "key": KEY})
    assert refused["code"] == "device_unavailable"
    assert refused["details"] == {"kiosk": "kiosk-1", "part": "scanner"}
    await device_agent(connect, printer=False)
    status, document = await http.upload(call, expert_token(server), pdf_bytes(1))
    assert status == 201 and document["origin"] == "upload"
    printing = {
        "type": "device.print",
        "call": call,
        "key": "print-key-1",
        "document": document["id"],
    }
    refused = await expert.request(printing)
    assert refused["code"] == "device_unavailable" and refused["details"]["part"] == "printer"


async def test_a_repeated_key_sends_the_command_once(
    server: RunningServer, connect: Connect
) -> None:
    _kiosk, expert, call = await connected_caf_call(connect)
    device = await device_agent(connect)
    await scan_command(expert, device, call)
    again = await expert.request({"type": "device.scan", "call": call, "key": KEY})
    assert again["type"] == "ack"
    assert await nothing_more(device, "device.command")


async def test_the_kiosk_turns_pages_and_the_expert_cancels(
    server: RunningServer, connect: Connect
) -> None:
    kiosk, expert, call = await connected_caf_call(connect)
    device = await device_agent(connect)
    await scan_command(expert, device, call)
    page = {"type": "device.page", "call": call, "key": KEY, "more": True}
    assert (await kiosk.request(page))["type"] == "ack"
    relayed = await device.expect("device.page", key=KEY)
    assert relayed["more"] is True and relayed["sender"] == "kiosk:kiosk-1"
    cancel = {"type": "device.cancel", "call": call, "key": KEY}
    assert (await expert.request(cancel))["type"] == "ack"
    assert (await device.expect("device.cancel", key=KEY))["call"] == call
    await device.request(
        {"type": "device.progress", "call": call, "key": KEY, "state": "cancelled"}
    )
    for party in (kiosk, expert):
        assert (await party.expect("device.progress", key=KEY))["state"] == "cancelled"
    refused = await kiosk.request(page)
    assert refused["code"] == "invalid_command"


async def test_a_silent_device_times_out_and_its_late_upload_is_refused(
    server: RunningServer, connect: Connect, http: Http
) -> None:
    kiosk, expert, call = await connected_caf_call(connect)
    device = await device_agent(connect)
    await scan_command(expert, device, call)
    for party in (kiosk, expert):
        timed_out = await party.expect("device.progress", key=KEY, timeout=6)
        assert (timed_out["state"], timed_out["kind"]) == ("timed_out", "scan")
    # The agent is told to stop, so a slow scanner does not go on for nobody.
    assert (await device.expect("device.cancel", key=KEY))["call"] == call
    # An agent that was away and reports on it later is told again.
    late = await device.request(
        {"type": "device.progress", "call": call, "key": KEY, "state": "waiting_page", "page": 1}
    )
    assert late["type"] == "ack"
    assert (await device.expect("device.cancel", key=KEY))["call"] == call
    status, refusal = await http.upload(
        call, server.token("device", "kiosk-1"), pdf_bytes(), key=KEY
    )
    assert status == 409 and refusal["code"] == "invalid_command"
    _, listed = await http.case_file(call, expert_token(server))
    assert listed["documents"] == []


# ---------------------------------------------------------------------- uploads


async def test_uploads_refused_store_nothing(
    server: RunningServer, connect: Connect, http: Http
) -> None:
    _kiosk, _expert, call = await connected_caf_call(connect)
    token = expert_token(server)
    blobs = Path(server.config.documents.shared_dir)

    status, refusal = await http.upload(call, token, b"MZ\x90\x00 not a document" * 40)
    assert (status, refusal["code"]) == (415, "unsupported_type")
    fake = b"%PDF-1.7\n" + b"garbage" * 100
    status, refusal = await http.upload(call, token, fake)
    assert (status, refusal["code"]) == (415, "unsupported_type")
    broken_png = image_bytes("PNG")[:60]
    status, refusal = await http.upload(call, token, broken_png)
    assert (status, refusal["code"]) == (415, "unsupported_type")
    status, refusal = await http.upload(call, token, b"\0" * 70_000)
    assert (status, refusal["code"]) == (413, "too_large")
    for title in ("..%2F..%2Fetc%2Fpasswd", "a%2Fb", "dossier%5Cx", "bell%07"):
        status, refusal = await http.upload(call, token, pdf_bytes(1), title=title)
        assert (status, refusal["code"]) == (400, "invalid_title"), title

    async def chunks() -> AsyncIterator[bytes]:
        yield pdf_bytes(1)

    status, refusal = await http.post(f"/api/calls/{call}/documents", token, chunks())
    assert (status, refusal["code"]) == (411, "length_required")

    def refused() -> float:
        value = server.registry.get_sample_value("visio_documents_total", {"outcome": "refused"})
        return value or 0.0

    refused_before = refused()
    _reader, writer = await asyncio.open_connection("127.0.0.1", int(server.url.rsplit(":", 1)[1]))
    head = (
        f"POST /api/calls/{call}/documents HTTP/1.1\r\nHost: test\r\n"
        f"Authorization: Bearer {token}\r\nContent-Length: 5000\r\n\r\n"
    )
    writer.write(head.encode() + pdf_bytes(1)[:1000])
    await writer.drain()
    writer.close()
    await writer.wait_closed()
    for _ in range(100):  # until the server has noticed the cut
        if refused() > refused_before:
            break
        await asyncio.sleep(0.05)
    assert refused() == refused_before + 1

    status, listed = await http.case_file(call, token)
    assert status == 200 and listed["documents"] == []
    assert stored_files(blobs) == []


@pytest.mark.parametrize(
    ("kind", "mime", "pages"),
    [("JPEG", "image/jpeg", 1), ("PNG", "image/png", 1), ("TIFF", "image/tiff", 3)],
)
async def test_images_are_taken_and_drawn(
    server: RunningServer, connect: Connect, http: Http, kind: str, mime: str, pages: int
) -> None:
    _kiosk, _expert, call = await connected_caf_call(connect)
    token = expert_token(server)
    data = image_bytes(kind, (60, 40), frames=pages)
    status, document = await http.upload(call, token, data, title="Pi%C3%A8ce%20jointe")
    assert status == 201, document
    assert (document["mime"], document["pages"], document["title"]) == (mime, pages, "Pièce jointe")
    status, png = await http.get(
        f"/api/documents/{document['id']}/pages/{pages}.png?width=30", token
    )
    assert status == 200 and Image.open(io.BytesIO(png)).size == (30, 20)
    status, body = await http.content(document["id"], token)
    assert status == 200 and body == data


async def test_an_expert_upload_with_a_key_is_stored_once(
    server: RunningServer, connect: Connect, http: Http
) -> None:
    _kiosk, _expert, call = await connected_caf_call(connect)
    token = expert_token(server)
    first, document = await http.upload(call, token, pdf_bytes(1), key="upload-0001")
    again, same = await http.upload(call, token, pdf_bytes(1), key="upload-0001")
    assert (first, again) == (201, 200) and same["id"] == document["id"]
    assert len(stored_files(Path(server.config.documents.shared_dir))) == 1
    status, refusal = await http.upload(call, token, pdf_bytes(1), key="short")
    assert (status, refusal["code"]) == (400, "invalid_key")


# ---------------------------------------------------------------------- reading


async def test_who_may_read_a_case_file_and_its_documents(
    server: RunningServer, connect: Connect, http: Http
) -> None:
    _kiosk, _expert, _device, call, document = await scanned_document(connect, http)
    doc = document["id"]
    readers = {
        "the call's kiosk": (server.token("kiosk", "kiosk-1"), 200),
        "the call's expert": (expert_token(server), 200),
        "the kiosk's device": (server.token("device", "kiosk-1"), 200),
        "an admin": (server.token("admin", "admin-1"), 200),
        "a supervisor of the partner": (
            server.token("supervisor", "super-caf", partner="caf"),
            200,
        ),
        "a supervisor of another partner": (
            server.token("supervisor", "super-cpam", partner="cpam"),
            403,
        ),
        "another kiosk": (server.token("kiosk", "kiosk-2"), 403),
        "another kiosk's device": (server.token("device", "kiosk-2"), 403),
        "another expert": (server.token("expert", "expert-2", services=["cpam"]), 403),
    }
    for who, (token, expected) in readers.items():
        listed, _ = await http.case_file(call, token)
        read, _ = await http.content(doc, token)
        drawn, _ = await http.get(f"/api/documents/{doc}/pages/1.png", token)
        assert (listed, read, drawn) == (expected,) * 3, who
    for path in (f"/api/calls/{call}/documents", f"/api/documents/{doc}/content"):
        status, refusal = await http.get(path, None)
        assert (status, refusal["code"]) == (401, "not_authenticated")
    status, refusal = await http.content("d-000000000000000000000000", expert_token(server))
    assert (status, refusal["code"]) == (404, "unknown_document")


async def test_a_requested_document_has_no_content_yet(
    server: RunningServer, connect: Connect, http: Http
) -> None:
    _kiosk, expert, call = await connected_caf_call(connect)
    device = await device_agent(connect)
    await scan_command(expert, device, call)
    requested = await expert.expect("case.document", call=call)
    status, refusal = await http.content(requested["document"]["id"], expert_token(server))
    assert (status, refusal["code"]) == (409, "not_received")


# ---------------------------------------------------------------------- review and print


async def test_review_needs_a_reason_to_reject_and_a_rejected_document_is_not_printed(
    server: RunningServer, connect: Connect, http: Http
) -> None:
    kiosk, expert, _device, call, document = await scanned_document(connect, http)
    review = {"type": "case.review", "call": call, "document": document["id"]}
    refused = await expert.request({**review, "verdict": "rejected", "reason": "  "})
    assert refused["code"] == "invalid_command"
    rejected = {**review, "verdict": "rejected", "reason": "illisible, à refaire"}
    assert (await expert.request(rejected))["type"] == "ack"
    told = await kiosk.expect("case.document", call=call, timeout=5)
    while told["document"]["state"] != "rejected":
        told = await kiosk.expect("case.document", call=call)
    assert told["document"]["reason"] == "illisible, à refaire"
    late = await expert.request({**review, "verdict": "accepted"})
    assert late["code"] == "invalid_state"
    printing = {
        "type": "device.print",
        "call": call,
        "key": "print-0001",
        "document": document["id"],
    }
    assert (await expert.request(printing))["code"] == "invalid_command"
    unknown = {**review, "document": "d-000000000000000000000000", "verdict": "accepted"}
    assert (await expert.request(unknown))["code"] == "unknown_document"


async def test_a_document_is_printed_at_the_kiosk(
    server: RunningServer, connect: Connect, http: Http
) -> None:
    kiosk, expert, call = await connected_caf_call(connect)
    device = await device_agent(connect)
    status, document = await http.upload(
        call, expert_token(server), pdf_bytes(1), title="Attestation"
    )
    assert status == 201
    printing = {
        "type": "device.print",
        "call": call,
        "key": "print-0001",
        "document": document["id"],
        "copies": 2,
    }
    assert (await expert.request(printing))["type"] == "ack"
    command = await device.expect("device.command", key="print-0001")
    assert (command["kind"], command["document"], command["copies"]) == ("print", document["id"], 2)
    status, body = await http.content(document["id"], server.token("device", "kiosk-1"))
    assert status == 200 and body.startswith(b"%PDF-")
    for state in ("printing", "done"):
        report = {"type": "device.progress", "call": call, "key": "print-0001", "state": state}
        assert (await device.request(report))["type"] == "ack"
        progress = await kiosk.expect("device.progress", key="print-0001")
        assert (progress["state"], progress["kind"]) == (state, "print")
    printed = await expert.expect("case.document", call=call)
    while printed["document"].get("printed_copies", 0) == 0:
        printed = await expert.expect("case.document", call=call)
    assert printed["document"]["printed_copies"] == 2


# ---------------------------------------------------------------------- consent


async def test_consent_shares_accepted_documents_with_a_later_call_until_withdrawn(
    server: RunningServer, connect: Connect, http: Http
) -> None:
    kiosk, expert, _device, call, document = await scanned_document(connect, http)
    review = {
        "type": "case.review",
        "call": call,
        "document": document["id"],
        "verdict": "accepted",
    }
    assert (await expert.request(review))["type"] == "ack"
    consented = await kiosk.request({"type": "case.consent", "call": call, "share": True})
    assert consented["type"] == "case.consented" and consented["share"] is True
    code = consented["code"]
    assert len(code) == 8 and not set(code) & set("IO01")
    again = await kiosk.request({"type": "case.consent", "call": call, "share": True})
    assert again["code"] == code, "tell it once: the same call keeps its code"
    await expert.request({"type": "call.hangup", "call": call})

    # A later call, at another kiosk, with another partner's expert.
    other_expert = await connect("expert", "expert-2", services=["cpam"], partner="cpam", name="D")
    await other_expert.request({"type": "expert.status", "status": "available"})
    other_kiosk = await connect("kiosk", "kiosk-2")
    queued = await other_kiosk.request({"type": "call.request", "service": "cpam"})
    later = queued["call"]
    await other_expert.expect("call.offered", call=later)
    await other_expert.request({"type": "offer.accept", "call": later})
    assert (await other_expert.expect("case.file", call=later))["documents"] == []
    wrong = await other_kiosk.request({"type": "case.share", "call": later, "code": "ZZZZZZZZ"})
    assert wrong["code"] == "unknown_share_code"
    shared = await other_kiosk.request({"type": "case.share", "call": later, "code": code.lower()})
    assert shared["type"] == "ack"
    file = await other_expert.expect("case.file", call=later)
    assert [(d["id"], d["origin"], d["from_partner"]) for d in file["documents"]] == [
        (document["id"], "shared", "caf")
    ]
    reader = server.token("expert", "expert-2", services=["cpam"])
    status, body = await http.content(document["id"], reader)
    assert status == 200 and body.startswith(b"%PDF-")

    withdrawn = await kiosk.request({"type": "case.withdraw", "code": code})
    assert withdrawn["type"] == "ack"
    status, _ = await http.content(document["id"], reader)
    assert status == 403
    _, listed = await http.case_file(later, reader)
    assert listed["documents"] == []
    refused = await other_kiosk.request({"type": "case.share", "call": later, "code": code})
    assert refused["code"] == "unknown_share_code"


# ---------------------------------------------------------------------- watchers


async def test_devices_appear_in_queue_status_for_those_who_may_see_them(
    server: RunningServer, connect: Connect, http: Http
) -> None:
    await device_agent(connect)
    status, queues = await http.get("/api/admin/queues", server.token("admin", "admin-1"))
    assert status == 200
    # Every kiosk is listed: those without an agent as not connected.
    assert [(d["kiosk"], d["name"], d["online"]) for d in queues["devices"]] == [
        ("kiosk-1", "Mairie de Test", True),
        ("kiosk-2", "France Services Test", False),
        ("kiosk-3", "Kiosque Test", False),
    ]
    supervisor = server.token("supervisor", "super-caf", partner="caf")
    _, queues = await http.get("/api/admin/queues", supervisor)
    assert [d["kiosk"] for d in queues["devices"]] == ["kiosk-1", "kiosk-2", "kiosk-3"]
    elsewhere = server.token("supervisor", "super-x", partner="interpretes")
    _, queues = await http.get("/api/admin/queues", elsewhere)
    assert queues["devices"] == []  # no kiosk calls the interpreting services


# ---------------------------------------------------------------------- cases kept per beneficiary


async def test_a_service_may_keep_one_case_file_per_beneficiary(
    tmp_path: Path,
) -> None:
    running = await documents_server(tmp_path, per_beneficiary=True)
    clients: list[JsonClient] = []

    async def party(role: str, sub: str, **claims: Any) -> JsonClient:
        client = await JsonClient.connect(running.ws_url)
        clients.append(client)
        await client.hello(running.token(role, sub, **claims))
        return client

    try:
        async with aiohttp.ClientSession() as session:
            http = Http(running, session)
            expert = await party("expert", "expert-2", services=["cpam"], partner="cpam", name="D")
            await expert.request({"type": "expert.status", "status": "available"})
            cases = []
            documents = []
            for kiosk_id in ("kiosk-1", "kiosk-2"):
                kiosk = await party("kiosk", kiosk_id)
                queued = await kiosk.request(
                    {"type": "call.request", "service": "cpam", "beneficiary": "185057800608436"}
                )
                call = queued["call"]
                await expert.expect("call.offered", call=call)
                await expert.request({"type": "offer.accept", "call": call})
                file = await expert.expect("case.file", call=call)
                cases.append(file["case"])
                documents.append([d["id"] for d in file["documents"]])
                token = running.token("expert", "expert-2", services=["cpam"])
                status, _document = await http.upload(call, token, pdf_bytes(1))
                assert status == 201
                await expert.request({"type": "call.hangup", "call": call})
                await expert.expect("wrapup.started", call=call)
                await expert.request({"type": "wrapup.done", "call": call, "reason": "Autre"})
            assert cases[0] == cases[1] and cases[0].startswith("b-")
            assert documents[0] == [] and len(documents[1]) == 1
    finally:
        for client in clients:
            await client.close()
        await running.stop()


# ---------------------------------------------------------------------- retention


async def test_documents_are_purged_at_the_end_of_their_retention(tmp_path: Path) -> None:
    running = await documents_server(tmp_path, retention_days=1.5 / 86400)
    clients: list[JsonClient] = []

    async def connect(role: str | None = None, sub: str | None = None, **claims: Any) -> JsonClient:
        client = await JsonClient.connect(running.ws_url)
        clients.append(client)
        if role is not None and sub is not None:
            await client.hello(running.token(role, sub, **claims))
        return client

    try:
        async with aiohttp.ClientSession() as session:
            http = Http(running, session)
            _kiosk, expert, call = await connected_caf_call(connect)
            token = expert_token(running)
            status, document = await http.upload(call, token, pdf_bytes(1))
            assert status == 201
            purged = await expert.expect("case.document", call=call, timeout=6)
            while purged["document"]["state"] != "purged":
                purged = await expert.expect("case.document", call=call, timeout=6)
            status, refusal = await http.content(document["id"], token)
            assert (status, refusal["code"]) == (410, "purged")
            assert stored_files(Path(running.config.documents.shared_dir)) == []
            audit = await running.app[DOCUMENTS].book.store.read_audit()
            assert [r["document"] for r in audit if r["action"] == "document_purged"] == [
                document["id"]
            ]
    finally:
        for client in clients:
            await client.close()
        await running.stop()


# ---------------------------------------------------------------------- the command line


def test_the_command_line_mints_device_tokens_and_serve_prints_one(tmp_path: Path) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "visio_server.cli", *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=tmp_path)

    minted = cli("token", "--role", "device", "--sub", "borne-argenton")
    assert minted.returncode == 0 and minted.stderr == "", minted.stderr
    claims = jwt.decode(minted.stdout.strip(), options={"verify_signature": False})
    assert (claims["role"], claims["sub"]) == ("device", "borne-argenton")
    stray = cli("token", "--role", "device", "--sub", "borne-nulle-part")
    assert stray.returncode == 0 and "not in the configuration" in stray.stderr
    labels = [label for label, _ in _sample_tokens(load_config())]
    assert any(label.startswith("device agent of borne-argenton") for label in labels)


# ---------------------------------------------------------------------- metrics


async def test_documents_and_commands_are_counted_and_promtool_accepts_them(
    server: RunningServer, connect: Connect, http: Http
) -> None:
    _kiosk, expert, _device, call, document = await scanned_document(connect, http)
    await expert.request({"type": "device.scan", "call": call, "key": KEY})  # a repeat
    review = {"type": "case.review", "call": call, "document": document["id"]}
    await expert.request({**review, "verdict": "accepted"})
    await http.upload(call, expert_token(server), b"not a document at all")
    found = samples(await scrape(server))
    assert found[("visio_documents_total", (("outcome", "received"),))] == 1
    assert found[("visio_documents_total", (("outcome", "accepted"),))] == 1
    assert found[("visio_documents_total", (("outcome", "refused"),))] == 1
    assert found[("visio_document_upload_bytes_total", ())] == document["bytes"]
    for outcome in ("sent", "done", "duplicate"):
        assert found[("visio_device_commands_total", (("kind", "scan"), ("outcome", outcome)))] == 1
    assert found[("visio_device_agents", ())] == 1
    assert found[("visio_device_parts_ready", (("part", "printer"),))] == 1
    promtool = shutil.which("promtool")
    assert promtool, "promtool is installed by scripts/test.sh (Debian package prometheus)"
    checked = await asyncio.to_thread(
        subprocess.run,
        [promtool, "check", "metrics"],
        input=await scrape(server),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
