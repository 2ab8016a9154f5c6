"""Accepted documents reach the partner: as files with a metadata sidecar, or through a
real HTTP endpoint on the loopback that fails, loses answers, and sees the server
restart in between, and still ends with every document exactly once."""

from __future__ import annotations

import asyncio
import inspect
import itertools
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.server.test_documents import (
    Http,
    connected_caf_call,
    documents_config,
    expert_token,
    pdf_bytes,
)
from tests.support import JsonClient, RunningServer, start_server
from visio_server.config import DocumentsConfig
from visio_server.documents.exporter import ExportWork


@dataclass
class Receiver:
    """The partner's document system: answers 503 to the first ``failures`` attempts,
    then files each document once, and loses its answer to the first ``lost_answers``
    documents it files (the exporter cannot know they arrived)."""

    failures: int
    lost_answers: int = 1
    lost: list[str] = field(default_factory=list)
    attempts: list[str] = field(default_factory=list)
    stored: dict[str, tuple[dict[str, Any], bytes, str]] = field(default_factory=dict)

    async def handle(self, request: web.Request) -> web.Response:
        key = request.headers["Idempotency-Key"]
        self.attempts.append(key)
        if len(self.attempts) <= self.failures:
            return web.Response(status=503, text="maintenance")
        metadata: dict[str, Any] = {}
        data, file_name = b"", ""
        async for part in await request.multipart():
            assert isinstance(part, aiohttp.BodyPartReader)
            if part.name == "metadata":
                metadata = json.loads(await part.text())
            elif part.name == "file":
                data, file_name = bytes(await part.read()), part.filename or ""
        if key in self.stored:
            return web.json_response({"status": "already filed"})
        self.stored[key] = (metadata, data, file_name)
        if len(self.lost) < self.lost_answers:
            self.lost.append(key)
            return web.Response(status=502, text="the answer got lost on the way")
        return web.json_response({"status": "filed"}, status=201)


@pytest.fixture
async def receiver_url() -> AsyncIterator[tuple[Receiver, str]]:
    receiver = Receiver(failures=3)
    app = web.Application()
    app.router.add_post("/ged/documents", receiver.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield receiver, f"http://127.0.0.1:{port}/ged/documents"
    await runner.cleanup()


class Parties:
    def __init__(self, server: RunningServer) -> None:
        self.server = server
        self.clients: list[JsonClient] = []

    async def connect(
        self, role: str | None = None, sub: str | None = None, **claims: Any
    ) -> JsonClient:
        client = await JsonClient.connect(self.server.ws_url)
        self.clients.append(client)
        if role is not None and sub is not None:
            await client.hello(self.server.token(role, sub, **claims))
        return client

    async def close(self) -> None:
        for client in self.clients:
            await client.close()


async def accepted_uploads(
    server: RunningServer, count: int
) -> tuple[str, list[dict[str, Any]], list[bytes]]:
    """A CAF call in which the expert uploads and accepts ``count`` documents; the call,
    the documents and their bytes."""
    parties = Parties(server)
    try:
        _kiosk, expert, call = await connected_caf_call(parties.connect)
        documents, files = [], []
        async with aiohttp.ClientSession() as session:
            http = Http(server, session)
            for number in range(count):
                files.append(pdf_bytes(1 + number))
                status, document = await http.upload(
                    call, expert_token(server), files[-1], title=f"Pi%C3%A8ce%20{number}"
                )
                assert status == 201, document
                review = {
                    "type": "case.review",
                    "call": call,
                    "document": document["id"],
                    "verdict": "accepted",
                }
                assert (await expert.request(review))["type"] == "ack"
                documents.append(document)
        return call, documents, files
    finally:
        await parties.close()


async def case_documents(server: RunningServer, call: str) -> list[dict[str, Any]]:
    async with aiohttp.ClientSession() as session:
        status, listed = await Http(server, session).case_file(
            call, server.token("admin", "admin-1")
        )
    assert status == 200, listed
    documents: list[dict[str, Any]] = listed["documents"]
    return documents


async def until(check: Callable[[], bool | Awaitable[bool]], timeout: float) -> None:
    """Poll ``check`` (what a server or a receiver does, seen from outside) until true."""
    async with asyncio.timeout(timeout):
        for _ in itertools.count():
            result = check()
            if await result if inspect.isawaitable(result) else result:
                return
            await asyncio.sleep(0.05)


async def export_states(server: RunningServer, call: str, states: set[str]) -> bool:
    return all(d["state"] in states for d in await case_documents(server, call))


async def test_the_directory_exporter_writes_each_file_with_its_sidecar(tmp_path: Path) -> None:
    export = tmp_path / "export"
    server = await start_server(
        documents_config(tmp_path, export="directory", export_dir=str(export))
    )
    try:
        call, (document,), (uploaded,) = await accepted_uploads(server, 1)
        sidecar = export / "caf" / f"{document['id']}.json"
        await until(lambda: sidecar.exists(), 10)
        metadata = json.loads(sidecar.read_text("utf-8"))
        assert metadata["document"] == document["id"]
        assert metadata["service"] == "caf" and metadata["partner"] == "caf"
        assert metadata["beneficiary"] == "1234567" and metadata["call"] == call
        assert metadata["title"] == "Pièce 0" and metadata["type"] == "application/pdf"
        assert metadata["received_at"] > 0 and metadata["file"] == f"{document['id']}.pdf"
        exported = (export / "caf" / metadata["file"]).read_bytes()
        assert exported == uploaded
        await until(lambda: export_states(server, call, {"exported"}), 5)
        assert (await case_documents(server, call))[0]["exported"] is True
        assert sorted(p.name for p in (export / "caf").iterdir()) == sorted(
            [sidecar.name, metadata["file"]]
        ), "no temporary file is left behind"
    finally:
        await server.stop()


async def test_the_http_exporter_delivers_every_document_once_across_failures_and_a_restart(
    tmp_path: Path, receiver_url: tuple[Receiver, str]
) -> None:
    receiver, url = receiver_url
    config = documents_config(
        tmp_path,
        export="http",
        export_url=url,
        export_backoff_s=0.2,
        export_backoff_max_s=0.5,
        export_timeout_s=1.0,
    )
    text = config.read_text("utf-8").replace('backend = "memory"', 'backend = "file"')
    config.write_text(text, "utf-8")
    server = await start_server(config)
    try:
        call, documents, files = await accepted_uploads(server, 3)
        ids = [d["id"] for d in documents]
        await until(lambda: len(receiver.attempts) >= 2, 10)
    finally:
        await server.stop()
    delivered_before_restart = len(receiver.stored)

    server = await start_server(config)  # the same files: the case files are where they were
    try:
        await until(lambda: export_states(server, call, {"exported"}), 30)
        attempts = len(receiver.attempts)
        await asyncio.sleep(1.0)
        assert len(receiver.attempts) == attempts, "nothing is sent again once exported"
    finally:
        await server.stop()

    assert delivered_before_restart < len(ids), "the restarted server took over"
    assert sorted(receiver.stored) == sorted(ids)
    for doc, uploaded in zip(ids, files, strict=True):
        metadata, data, file_name = receiver.stored[doc]
        assert data == uploaded and file_name == f"{doc}.pdf"
        assert metadata["document"] == doc and metadata["beneficiary"] == "1234567"
    (lost,) = receiver.lost
    assert receiver.attempts.count(lost) >= 2, "a lost answer makes the exporter try again"


def test_the_backoff_doubles_with_jitter_up_to_its_ceiling() -> None:
    settings = DocumentsConfig(export_backoff_s=10.0, export_backoff_max_s=60.0)
    middle = ExportWork(None, None, None, settings, None, lambda: 0.0, None, lambda: 0.5)  # type: ignore[arg-type]
    assert [middle.backoff_s(n) for n in (1, 2, 3, 4, 5, 40)] == [10, 20, 40, 60, 60, 60]
    low = ExportWork(None, None, None, settings, None, lambda: 0.0, None, lambda: 0.0)  # type: ignore[arg-type]
    high = ExportWork(None, None, None, settings, None, lambda: 0.0, None, lambda: 0.999)  # type: ignore[arg-type]
    assert low.backoff_s(2) == 10 and 29 < high.backoff_s(2) < 30
