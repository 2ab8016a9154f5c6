"""Uploads and downloads of the agent against a small HTTP server of the test's own:
the pace of the token bucket, the headers an upload carries, and which answers are
tried again and which are final. The bucket itself is tested with explicit times."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from visio_agent.agent import backoff_delay
from visio_agent.errors import ServerRefused, TransferInterrupted
from visio_agent.pacing import CHUNK_BYTES, TokenBucket, paced_chunks
from visio_agent.transfer import download_document, safe_title, server_path, upload_scan

DOCUMENT = {
    "id": "d-0001",
    "case": "c-call",
    "title": "Scan",
    "origin": "scan",
    "mime": "application/pdf",
    "pages": 1,
    "bytes": 10,
    "state": "received",
    "created_at": 1.0,
    "updated_at": 1.0,
    "command": "scan-key-0001",
}


@dataclass
class Received:
    headers: dict[str, str]
    size: int
    seconds: float


@dataclass
class FakeServer:
    url: str
    received: list[Received] = field(default_factory=list)
    answers: list[tuple[int, Any]] = field(default_factory=list)
    """Given in order to the uploads; after them, 201 with DOCUMENT."""


@pytest.fixture
async def fake() -> AsyncIterator[FakeServer]:
    state = FakeServer("")

    async def upload(request: web.Request) -> web.Response:
        started = time.monotonic()
        body = await request.read()
        state.received.append(
            Received(dict(request.headers), len(body), time.monotonic() - started)
        )
        status, answer = state.answers.pop(0) if state.answers else (201, DOCUMENT)
        return web.json_response(answer, status=status)

    async def content(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != "Bearer device-token":
            return web.json_response({"code": "not_authenticated", "reason": "no"}, status=401)
        if request.match_info["doc"] == "gone":
            return web.json_response({"code": "purged", "reason": "purged"}, status=410)
        return web.Response(body=b"%PDF-1.4 tiny", content_type="application/pdf")

    app = web.Application()
    app.router.add_post("/api/calls/{call}/documents", upload)
    app.router.add_get("/api/documents/{doc}/content", content)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    state.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield state
    await runner.cleanup()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as opened:
        yield opened


async def send(
    session: aiohttp.ClientSession, fake: FakeServer, body: bytes, **options: Any
) -> Any:
    return await upload_scan(
        session,
        server_path(fake.url, "/api/calls/call-1/documents"),
        token="device-token",
        key="scan-key-0001",
        body=body,
        **options,
    )


def test_the_bucket_starts_empty_then_averages_the_rate_with_bursts() -> None:
    bucket = TokenBucket(rate_bytes_s=1000, burst_bytes=500, now=0.0)
    # No burst at the start: the first bytes wait for their tokens.
    assert bucket.delay(500, now=0.0) == pytest.approx(0.5)
    assert bucket.delay(250, now=0.5) == pytest.approx(0.25)
    # A second idle refills the bucket to its burst only: 500 bytes, 250 taken here.
    assert bucket.delay(250, now=1.5) == 0.0
    assert bucket.delay(1000, now=1.5) == pytest.approx(0.75)
    # Idle time refills no more than the burst.
    assert bucket.delay(600, now=100.0) == pytest.approx(0.1)


def test_the_bucket_for_a_link_speed() -> None:
    bucket = TokenBucket.for_kbps(160, now=0.0)
    assert bucket.rate == 20_000
    assert bucket.burst == 5_000
    assert TokenBucket.for_kbps(16, now=0.0).burst == CHUNK_BYTES


async def test_chunks_cover_the_body_in_order_and_unpaced_at_zero() -> None:
    body = bytes(range(256)) * 100
    chunks = [chunk async for chunk in paced_chunks(body, None, chunk_bytes=1000)]
    assert b"".join(chunks) == body and len(chunks) == 26
    assert [chunk async for chunk in paced_chunks(body, 0)] != []


async def test_an_upload_is_paced_and_carries_key_title_and_length(
    fake: FakeServer, session: aiohttp.ClientSession
) -> None:
    body = b"%PDF-" + bytes(60_000)
    started = time.monotonic()
    document = await send(session, fake, body, title="Avis d'impôt 2024/2025", kbps=320)
    took = time.monotonic() - started
    # 320 kbit/s is 40 KB/s with a 10 KB burst: 60 KB need about 1.25 s.
    assert 1.1 < took < 3.0
    assert document.id == "d-0001" and document.pages == 1
    [received] = fake.received
    assert received.size == len(body)
    assert received.headers["Content-Length"] == str(len(body))
    assert "Transfer-Encoding" not in received.headers
    assert received.headers["Idempotency-Key"] == "scan-key-0001"
    assert received.headers["Authorization"] == "Bearer device-token"
    assert received.headers["Content-Type"] == "application/pdf"
    assert received.headers["X-Document-Title"] == "Avis%20d%27imp%C3%B4t%202024-2025"


async def test_busy_or_failing_servers_are_tried_again_refusals_are_final(
    fake: FakeServer, session: aiohttp.ClientSession
) -> None:
    fake.answers = [
        (503, {"code": "unavailable", "reason": "restarting"}),
        (429, {"code": "rate_limited", "reason": "slow down"}),
        (401, {"code": "not_authenticated", "reason": "expired"}),
        (409, {"code": "invalid_command", "reason": "this scan is over (timed_out)"}),
        (200, DOCUMENT),
    ]
    for _ in range(3):
        with pytest.raises(TransferInterrupted):
            await send(session, fake, b"%PDF-")
    with pytest.raises(ServerRefused) as refused:
        await send(session, fake, b"%PDF-")
    assert (refused.value.status, refused.value.code) == (409, "invalid_command")
    assert "this scan is over (timed_out)" in refused.value.reason
    assert (await send(session, fake, b"%PDF-")).id == "d-0001"


async def test_an_upload_to_nowhere_is_interrupted(session: aiohttp.ClientSession) -> None:
    with pytest.raises(TransferInterrupted):
        await upload_scan(
            session,
            "http://127.0.0.1:9/api/calls/c/documents",
            token="t",
            key="scan-key-0001",
            body=b"%PDF-",
        )


async def test_a_download_for_printing(
    fake: FakeServer, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    dest = tmp_path / "doc.bin"
    url = server_path(fake.url, "/api/documents/d-1/content")
    size = await download_document(session, url, token="device-token", dest=dest, max_bytes=1000)
    assert size == 13 and dest.read_bytes() == b"%PDF-1.4 tiny"
    with pytest.raises(ServerRefused, match="larger than 5 bytes"):
        await download_document(session, url, token="device-token", dest=dest, max_bytes=5)
    gone = server_path(fake.url, "/api/documents/gone/content")
    with pytest.raises(ServerRefused) as refused:
        await download_document(session, gone, token="device-token", dest=dest, max_bytes=1000)
    assert refused.value.status == 410 and refused.value.code == "purged"
    with pytest.raises(TransferInterrupted):
        await download_document(session, url, token="wrong", dest=dest, max_bytes=1000)


def test_the_device_token_goes_to_our_server_only() -> None:
    base = "http://10.0.0.5:8080"
    assert server_path(base, "/api/calls/c1/documents") == (
        "http://10.0.0.5:8080/api/calls/c1/documents"
    )
    assert server_path(base + "/", "/api/x") == "http://10.0.0.5:8080/api/x"
    for elsewhere in ("https://evil.example/api", "//evil.example/api", "api/relative"):
        with pytest.raises(ServerRefused):
            server_path(base, elsewhere)


def test_titles_are_made_safe_for_the_server() -> None:
    assert safe_title("Avis 2024/2025") == "Avis 2024-2025"
    assert safe_title("..\\..\\etc") == ".-.-etc"
    assert safe_title("Ligne\nsuivante\x00") == "Ligne suivante"
    assert safe_title("  espaces   en   trop ") == "espaces en trop"
    assert len(safe_title("x" * 500)) == 120


def test_backoff_grows_to_its_ceiling_with_jitter() -> None:
    low = [backoff_delay(n, low_s=0.5, high_s=30, rand=lambda: 0.0) for n in range(10)]
    high = [backoff_delay(n, low_s=0.5, high_s=30, rand=lambda: 1.0) for n in range(10)]
    assert low[:4] == [0.25, 0.5, 1.0, 2.0]
    assert high[:4] == [0.5, 1.0, 2.0, 4.0]
    assert max(high) == 30 and max(low) == 15
    assert backoff_delay(10_000, low_s=0.5, high_s=30) <= 30
