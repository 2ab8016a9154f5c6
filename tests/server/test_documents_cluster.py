"""Documents across two nodes sharing a private Redis (case files, device registry, bus)
and one documents folder: what one node stores, the other lists, serves and commands."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.cluster_support import RedisServer
from tests.server.test_documents import (
    KEY,
    Http,
    documents_config,
    expert_token,
    pdf_bytes,
)
from tests.support import EXPERT_CAF, JsonClient, RunningServer, start_server


@pytest.fixture
async def two_nodes(
    tmp_path: Path, redis_server: RedisServer
) -> AsyncIterator[tuple[RunningServer, RunningServer]]:
    shared = tmp_path / "shared-documents"
    nodes = []
    for name in ("node-a", "node-b"):
        (tmp_path / name).mkdir()
        path = documents_config(tmp_path / name, shared_dir=str(shared), command_timeout_s=10)
        text = path.read_text("utf-8")
        redis = f'\n[redis]\nurl = "{redis_server.url}"\nnode_id = "{name}"\n'
        path.write_text(text + redis + "heartbeat_s = 0.5\nnode_cutoff_s = 2\n", "utf-8")
        nodes.append(await start_server(path))
    yield nodes[0], nodes[1]
    for node in nodes:
        await node.stop()


async def signed_in(node: RunningServer, role: str, sub: str, **claims: Any) -> JsonClient:
    client = await JsonClient.connect(node.ws_url)
    welcome = await client.hello(node.token(role, sub, **claims))
    assert welcome["type"] == "welcome", welcome
    return client


async def test_a_document_stored_through_one_node_is_listed_and_served_by_the_other(
    two_nodes: tuple[RunningServer, RunningServer],
) -> None:
    node_a, node_b = two_nodes
    kiosk = await signed_in(node_a, "kiosk", "kiosk-1")
    device = await signed_in(node_a, "device", "kiosk-1")
    expert = await signed_in(node_b, "expert", "expert-1", **EXPERT_CAF)
    clients = [kiosk, device, expert]
    try:
        health = {
            "type": "device.health",
            "scanner": {"present": True, "ready": True},
            "printer": {"present": True, "ready": True},
        }
        assert (await device.request(health))["type"] == "ack"
        await expert.request({"type": "expert.status", "status": "available"})
        queued = await kiosk.request(
            {"type": "call.request", "service": "caf", "beneficiary": "1234567"}
        )
        call = queued["call"]
        await expert.expect("call.offered", call=call, timeout=10)
        await expert.request({"type": "offer.accept", "call": call})
        file = await expert.expect("case.file", call=call, timeout=10)
        assert file["documents"] == []
        status = await expert.expect("device.status", timeout=10)
        assert status["health"]["online"] and status["health"]["scanner"]["present"]

        # The expert on node B drives the device held by node A.
        scan = {"type": "device.scan", "call": call, "key": KEY}
        assert (await expert.request(scan))["type"] == "ack"
        command = await device.expect("device.command", key=KEY, timeout=10)
        progress = {"type": "device.progress", "call": call, "key": KEY, "state": "scanning"}
        await device.request(progress)
        assert (await expert.expect("device.progress", key=KEY, timeout=10))["kind"] == "scan"

        async with aiohttp.ClientSession() as session:
            uploaded = pdf_bytes(2)
            status_code, document = await Http(node_a, session).upload(
                call, node_a.token("device", "kiosk-1"), uploaded, key=command["key"]
            )
            assert status_code == 201, document
            told = await expert.expect("case.document", call=call, timeout=10)
            while told["document"]["state"] != "received":
                told = await expert.expect("case.document", call=call, timeout=10)

            on_b = Http(node_b, session)
            status_code, listed = await on_b.case_file(call, expert_token(node_b))
            assert status_code == 200
            assert [d["id"] for d in listed["documents"]] == [document["id"]]
            status_code, body = await on_b.content(document["id"], expert_token(node_b))
            assert status_code == 200 and body == uploaded
            status_code, _ = await on_b.get(
                f"/api/documents/{document['id']}/pages/2.png?width=100", expert_token(node_b)
            )
            assert status_code == 200
            # Node B learns of node A's agents at its registry's next refresh.
            admin = node_b.token("admin", "admin-1")
            for _ in range(50):
                _, queues = await on_b.get("/api/admin/queues", admin)
                if any(d["online"] for d in queues["devices"]):
                    break
                await asyncio.sleep(0.2)
            assert [d["kiosk"] for d in queues["devices"] if d["online"]] == ["kiosk-1"]
    finally:
        for client in clients:
            await client.close()
