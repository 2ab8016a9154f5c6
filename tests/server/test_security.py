"""Authorisation and hostile input over real WebSockets: typed errors or a clean close."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import jwt
import pytest

from tests.support import EXPERT_CAF, JsonClient, RunningServer, start_server, write_test_config
from visio_server.keys import DESK

Connect = Callable[..., Awaitable[JsonClient]]


async def connected_call(connect: Connect) -> tuple[JsonClient, JsonClient, str]:
    expert = await connect("expert", "expert-1", **EXPERT_CAF)
    await expert.request({"type": "expert.status", "status": "available"})
    kiosk = await connect("kiosk", "kiosk-1")
    queued = await kiosk.request(
        {"type": "call.request", "service": "caf", "beneficiary": "7654321"}
    )
    call = queued["call"]
    await expert.expect("call.offered", call=call)
    await expert.request({"type": "offer.accept", "call": call})
    await kiosk.expect("call.connected")
    await expert.expect("call.connected")
    return kiosk, expert, call


async def nothing_of_type(client: JsonClient, kind: str, wait_s: float = 0.5) -> bool:
    try:
        await client.expect(kind, timeout=wait_s)
    except TimeoutError:
        return True
    return False


async def test_kiosk_cannot_send_sdp_outside_its_own_call(connect: Connect) -> None:
    _kiosk, expert, call = await connected_call(connect)
    intruder = await connect("kiosk", "kiosk-2")
    reply = await intruder.request(
        {"type": "rtc.sdp", "call": call, "description": {"type": "offer", "sdp": "v=0"}}
    )
    assert reply["type"] == "error" and reply["code"] == "not_your_call"
    assert await nothing_of_type(expert, "rtc.sdp")


async def test_sdp_before_the_call_is_connected_is_refused(connect: Connect) -> None:
    kiosk = await connect("kiosk", "kiosk-1")
    await connect("expert", "expert-1", **EXPERT_CAF)
    queued = await kiosk.request(
        {"type": "call.request", "service": "caf", "beneficiary": "1111111"}
    )
    reply = await kiosk.request({"type": "rtc.ice", "call": queued["call"], "candidate": None})
    assert reply["code"] == "not_in_call"


async def test_expert_never_receives_another_services_offer(connect: Connect) -> None:
    cpam_expert = await connect("expert", "expert-2", services=["cpam"], partner="cpam")
    await cpam_expert.request({"type": "expert.status", "status": "available"})
    caf_expert = await connect("expert", "expert-1", **EXPERT_CAF)
    await caf_expert.request({"type": "expert.status", "status": "available"})
    kiosk = await connect("kiosk", "kiosk-1")
    queued = await kiosk.request(
        {"type": "call.request", "service": "caf", "beneficiary": "1234567"}
    )
    assert (await caf_expert.expect("call.offered"))["call"] == queued["call"]
    assert await nothing_of_type(cpam_expert, "call.offered")


async def test_kiosk_may_not_call_a_service_outside_its_catalogue(connect: Connect) -> None:
    await connect("expert", "expert-1", **EXPERT_CAF)
    kiosk = await connect("kiosk", "kiosk-2")
    reply = await kiosk.request({"type": "call.request", "service": "france-travail"})
    assert reply["code"] == "service_not_offered"


async def test_kiosk_may_not_act_as_an_expert(connect: Connect) -> None:
    kiosk = await connect("kiosk", "kiosk-1")
    reply = await kiosk.request({"type": "expert.status", "status": "available"})
    assert reply["code"] == "forbidden"
    assert (await kiosk.request({"type": "ping"}))["type"] == "pong"


def forged(secret: str, **claims: object) -> str:
    payload = {"sub": "kiosk-1", "role": "kiosk", "exp": int(time.time()) + 600, **claims}
    return jwt.encode(payload, secret, algorithm="HS256")


def unsigned(**claims: object) -> str:
    payload = {"sub": "admin-1", "role": "admin", "exp": int(time.time()) + 600, **claims}
    return jwt.encode(payload, None, algorithm="none")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("token_of", "words"),
    [
        (lambda s: "not-a-jwt", "not a JWT"),
        (lambda s: unsigned(), "algorithm 'none' is not allowed"),
        (lambda s: forged("another-secret-of-at-least-32-bytes!!"), "not valid"),
        (lambda s: s.token("kiosk", "kiosk-1", exp=int(time.time()) - 3600), "expired"),
        (lambda s: s.token("kiosk", "no-such-kiosk"), "not configured"),
        (lambda s: forged(s.config.auth.hs256_secret, role="pirate"), "unknown role"),
    ],
    ids=["garbage", "alg-none", "wrong-secret", "expired", "unknown-kiosk", "unknown-role"],
)
async def test_bad_tokens_are_refused_and_the_connection_closed(
    server: RunningServer, token_of: Callable[[RunningServer], str], words: str
) -> None:
    client = await JsonClient.connect(server.ws_url)
    try:
        reply = await client.hello(token_of(server))
        assert reply["type"] == "error" and reply["code"] == "not_authenticated"
        assert words in reply["reason"]
        assert await client.wait_closed() == aiohttp.WSCloseCode.POLICY_VIOLATION
    finally:
        await client.close()


async def test_messages_before_hello_are_refused(server: RunningServer) -> None:
    client = await JsonClient.connect(server.ws_url)
    try:
        reply = await client.request({"type": "call.request", "service": "caf"})
        assert reply["code"] == "not_authenticated"
        assert await client.wait_closed() == aiohttp.WSCloseCode.POLICY_VIOLATION
    finally:
        await client.close()


async def test_silent_client_is_closed_after_the_hello_timeout(tmp_path: Path) -> None:
    running = await start_server(write_test_config(tmp_path, hello_timeout_s=0.3))
    client = await JsonClient.connect(running.ws_url)
    try:
        error = await client.expect("error")
        assert error["code"] == "not_authenticated"
        assert await client.wait_closed() == aiohttp.WSCloseCode.POLICY_VIOLATION
    finally:
        await client.close()
        await running.stop()


async def test_heartbeats_do_not_extend_the_time_to_say_hello(tmp_path: Path) -> None:
    running = await start_server(write_test_config(tmp_path, hello_timeout_s=1.0, heartbeat_s=0.2))
    client = await JsonClient.connect(running.ws_url)
    try:
        assert (await client.expect("error", timeout=3))["code"] == "not_authenticated"
        assert await client.wait_closed() == aiohttp.WSCloseCode.POLICY_VIOLATION
    finally:
        await client.close()
        await running.stop()


async def test_a_client_that_slows_down_after_a_burst_is_forgiven(connect: Connect) -> None:
    kiosk = await connect("kiosk", "kiosk-1")
    for burst in range(2):
        for index in range(350):
            await kiosk.send({"type": "ping", "id": f"b{burst}-{index}"})
        last = await kiosk.request({"type": "ping"}, timeout=5)
        assert last["type"] in ("pong", "error")
        await asyncio.sleep(5.2)  # refusals older than the flood window are forgotten
    assert (await kiosk.request({"type": "ping"}))["type"] == "pong"
    assert kiosk.close_code is None


async def test_malformed_and_unknown_messages_get_typed_errors(connect: Connect) -> None:
    kiosk = await connect("kiosk", "kiosk-1")
    await kiosk.send({"type": "call.request", "id": "r1", "service": "caf", "colour": "red"})
    error = await kiosk.expect("error")
    assert error["code"] == "malformed_message" and error["id"] == "r1"
    assert "colour" in error["reason"]
    newline = await kiosk.request({"type": "call.request", "service": "caf\n"})
    assert newline["code"] == "malformed_message" and "service" in newline["reason"]
    null = await kiosk.request({"type": "call.request", "service": "caf", "beneficiary": None})
    assert null["code"] == "malformed_message" and "beneficiary" in null["reason"]
    await kiosk.send_raw("{not json")
    assert (await kiosk.expect("error"))["code"] == "malformed_message"
    await kiosk.send_raw("[1, 2]")
    assert (await kiosk.expect("error"))["code"] == "malformed_message"
    unknown = await kiosk.request({"type": "teleport", "where": "home"})
    assert unknown["code"] == "unknown_type" and unknown["type"] == "error"
    await kiosk.send_raw(b"\x00\x01")
    assert (await kiosk.expect("error"))["code"] == "protocol_error"
    assert (await kiosk.request({"type": "ping"}))["type"] == "pong"


async def test_deeply_nested_json_is_malformed_and_harms_nothing(
    server: RunningServer, connect: Connect
) -> None:
    nested = "[" * 1000 + "]" * 1000
    stranger = await JsonClient.connect(server.ws_url)
    try:
        await stranger.send_raw(nested)
        assert (await stranger.expect("error"))["code"] == "malformed_message"
        assert (await stranger.hello(server.token("kiosk", "kiosk-2")))["type"] == "welcome"
    finally:
        await stranger.close()
    kiosk = await connect("kiosk", "kiosk-1")
    await kiosk.send_raw('{"type": "ping", "id": ' + nested + "}")
    assert (await kiosk.expect("error"))["code"] == "malformed_message"
    assert (await kiosk.request({"type": "ping"}))["type"] == "pong"


async def test_oversized_frame_closes_the_connection(
    connect: Connect, server: RunningServer
) -> None:
    kiosk = await connect("kiosk", "kiosk-1")
    await kiosk.send_raw(json.dumps({"type": "ping", "id": "x" * 70_000}))
    assert await kiosk.wait_closed() == aiohttp.WSCloseCode.MESSAGE_TOO_BIG
    other = await connect("kiosk", "kiosk-2")
    assert (await other.request({"type": "ping"}))["type"] == "pong"


def _ping_of_size(size: int, request_id: str) -> str:
    """A ``ping`` padded with JSON whitespace to exactly ``size`` bytes."""
    frame = json.dumps({"type": "ping", "id": request_id})
    return frame + " " * (size - len(frame))


@pytest.mark.parametrize("compress", [0, 15], ids=["plain", "deflate"])
async def test_a_frame_of_max_frame_bytes_is_accepted_and_one_byte_more_closes(
    server: RunningServer, compress: int
) -> None:
    limit = server.config.server.max_frame_bytes
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(server.ws_url, compress=compress) as ws,
    ):
        assert bool(ws.compress) == bool(compress)
        await ws.send_str(
            json.dumps({"type": "hello", "id": "h", "token": server.token("kiosk", "kiosk-1")})
        )
        assert json.loads(await ws.receive_str(timeout=5))["type"] == "welcome"
        await ws.send_str(_ping_of_size(limit, "exact"))
        pong = json.loads(await ws.receive_str(timeout=5))
        assert pong["type"] == "pong" and pong["id"] == "exact"
        await ws.send_str(_ping_of_size(limit + 1, "over"))
        closing = await ws.receive(timeout=5)
        assert closing.type is aiohttp.WSMsgType.CLOSE
        assert ws.close_code == aiohttp.WSCloseCode.MESSAGE_TOO_BIG


async def test_a_text_frame_that_is_not_utf8_closes_with_1007(server: RunningServer) -> None:
    async with aiohttp.ClientSession() as http, http.ws_connect(server.ws_url) as ws:
        # send_str cannot produce invalid UTF-8: write the frame itself.
        await ws._writer.send_frame(b'{"type": "ping", "id": "\xff"}', aiohttp.WSMsgType.TEXT)
        closing = await ws.receive(timeout=5)
        assert closing.type is aiohttp.WSMsgType.CLOSE
        assert ws.close_code == aiohttp.WSCloseCode.INVALID_TEXT == 1007


async def test_flood_is_rate_limited_then_closed_and_server_unharmed(
    connect: Connect, server: RunningServer
) -> None:
    flooder = await connect("kiosk", "kiosk-1")
    for index in range(1_000):
        await flooder.send({"type": "ping", "id": f"f{index}"})
    code = await flooder.wait_closed(timeout=10)
    assert code == aiohttp.WSCloseCode.POLICY_VIOLATION
    refused = 0
    for event in flooder.take_events():
        refused += event.get("code") == "rate_limited"
    assert refused > 0
    healthy = await connect("kiosk", "kiosk-2")
    assert (await healthy.request({"type": "ping"}))["type"] == "pong"


async def test_foreign_origin_is_refused_before_upgrade(server: RunningServer) -> None:
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(server.ws_url, headers={"Origin": "https://evil.example"})
        assert refused.value.status == 403
        own = server.url
        async with session.ws_connect(server.ws_url, headers={"Origin": own}) as ws:
            await ws.send_json({"type": "ping", "id": "1"})
            reply = await asyncio.wait_for(ws.receive_json(), 5)
            assert reply["code"] == "not_authenticated"


async def test_a_newer_kiosk_connection_replaces_the_older_and_keeps_the_call(
    connect: Connect,
) -> None:
    await connect("expert", "expert-1", **EXPERT_CAF)
    first = await connect("kiosk", "kiosk-1")
    queued = await first.request(
        {"type": "call.request", "service": "caf", "beneficiary": "1234567"}
    )
    second = await connect("kiosk", "kiosk-1")
    resumed = await second.expect("call.resumed")
    assert resumed["call"] == queued["call"] and resumed["position"] == 1
    assert await first.wait_closed() == 4000


async def test_a_kiosk_that_stops_reading_is_closed_not_buffered_without_end(
    tmp_path: Path,
) -> None:
    running = await start_server(write_test_config(tmp_path, outbound_queue=8))
    session = aiohttp.ClientSession()
    expert = await JsonClient.connect(running.ws_url)
    try:
        await expert.hello(running.token("expert", "expert-1", **EXPERT_CAF))
        await expert.request({"type": "expert.status", "status": "available"})
        # A raw connection that is read only up to the call, then never again.
        mute = await session.ws_connect(running.ws_url)
        await mute.send_json(
            {"type": "hello", "id": "1", "token": running.token("kiosk", "kiosk-1")}
        )
        await mute.send_json(
            {"type": "call.request", "id": "2", "service": "caf", "beneficiary": "1234567"}
        )
        offer = await expert.expect("call.offered")
        await expert.request({"type": "offer.accept", "call": offer["call"]})
        await expert.expect("call.connected")
        big = {"type": "offer", "sdp": "a=x\r\n" * 8_000}
        for _ in range(400):
            await expert.send({"type": "rtc.sdp", "call": offer["call"], "description": big})
            if running.app[DESK].machine.call(offer["call"]).kiosk_lost_until is not None:
                break
            await asyncio.sleep(0.01)  # stays under the rate limit
        lost = await expert.expect("call.peer_state", timeout=10)
        assert lost["state"] == "lost"
        metrics = await (await session.get(f"{running.url}/metrics")).text()
        assert 'visio_slow_consumers_total{role="kiosk"} 1.0' in metrics
        assert (await expert.request({"type": "ping"}))["type"] == "pong"
    finally:
        await expert.close()
        await session.close()
        await running.stop()


async def test_a_supervisor_sees_only_its_partners_queues(connect: Connect) -> None:
    supervisor = await connect("supervisor", "super-caf", partner="caf")
    admin = await connect("admin", "admin-1")
    assert (await supervisor.request({"type": "queue.subscribe"}))["type"] == "ack"
    assert (await admin.request({"type": "queue.subscribe"}))["type"] == "ack"
    first = await supervisor.expect("queue.status")
    assert {row["partner"] for row in first["services"]} == {"caf"}
    await connect("expert", "expert-2", services=["cpam"], partner="cpam")
    everything = await admin.expect("queue.status")
    assert {row["partner"] for row in everything["services"]} >= {"caf", "cpam"}
    pushed = await supervisor.expect("queue.status")
    assert [row["service"] for row in pushed["services"]] == ["caf"]


async def test_a_method_not_allowed_says_which_are(server: RunningServer) -> None:
    async with aiohttp.ClientSession() as http, http.post(f"{server.url}/healthz") as response:
        assert response.status == 405
        assert set(response.headers["Allow"].split(",")) >= {"GET", "HEAD"}
        body = await response.json()
        assert body["code"] == "method_not_allowed"


@pytest.mark.parametrize(
    "head",
    [
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Bad: a\x00b\r\n\r\n",
        b"POST /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        b"Content-Length: 5\r\n\r\n0\r\n\r\n",
    ],
    ids=["nul-in-header", "chunked-and-length"],
)
async def test_a_malformed_http_request_is_one_info_line_not_an_error(
    server: RunningServer, head: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="aiohttp.server")
    port = int(server.url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), timeout=5)
    finally:
        writer.close()
    assert answer.split(b"\r\n", 1)[0].split(b" ")[1] == b"400"
    await asyncio.sleep(0.05)
    records = [r for r in caplog.records if r.name == "aiohttp.server"]
    assert records, "the refusal is still logged"
    assert all(r.levelno < logging.WARNING and not r.exc_info for r in records)
    assert not any(r.levelno >= logging.ERROR for r in caplog.records)
