"""visio_client.Client against the real server, and against a scripted one for what a
well-behaved server never does (frames outside the protocol)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import aiohttp
import pytest
from aiohttp import web

from signaling.messages import (
    Ack,
    CallOffered,
    CallQueued,
    CallRequest,
    ErrorMessage,
    ExpertState,
    ExpertStatusSet,
    OfferAccept,
    Ping,
    Pong,
    Welcome,
)
from tests.support import EXPERT_CAF, RunningServer
from visio_client import (
    NEW_ID,
    Client,
    ConnectFailed,
    ConnectionLost,
    ServerError,
    UnexpectedMessage,
    message_type,
    websocket_url,
)


async def signed_in(server: RunningServer, role: str, sub: str, **claims: object) -> Client:
    return await Client.connect(server.url, token=server.token(role, sub, **claims))


@asynccontextmanager
async def scripted_server(
    script: Callable[[web.WebSocketResponse], Awaitable[None]],
) -> AsyncIterator[str]:
    """A WebSocket endpoint that runs ``script`` on each connection; yields its base URL."""

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await script(ws)
        return ws

    app = web.Application()
    app.router.add_get("/ws", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(
    ("server_url", "expected"),
    [
        ("http://127.0.0.1:8080", "ws://127.0.0.1:8080/ws"),
        ("https://visio.example.org/", "wss://visio.example.org/ws"),
        ("http://127.0.0.1:8080/ws", "ws://127.0.0.1:8080/ws"),
        ("ws://10.0.0.1:9000/ws", "ws://10.0.0.1:9000/ws"),
    ],
)
def test_websocket_url(server_url: str, expected: str) -> None:
    assert websocket_url(server_url) == expected


async def test_typed_requests_get_typed_replies_and_refusals_raise(
    server: RunningServer,
) -> None:
    expert = await signed_in(server, "expert", "expert-1", **EXPERT_CAF)
    kiosk = await signed_in(server, "kiosk", "kiosk-1")
    try:
        assert isinstance(kiosk.welcome, Welcome) and kiosk.welcome.identity == "kiosk-1"
        queued = await kiosk.request(
            CallRequest(id=NEW_ID, service="caf", beneficiary="1234567"), CallQueued
        )
        assert queued.position == 1 and queued.id != NEW_ID
        with pytest.raises(ServerError) as refused:
            await kiosk.request(ExpertStatusSet(id=NEW_ID, status="available"))
        assert refused.value.code == "forbidden" and refused.value.request_id is not None
        with pytest.raises(UnexpectedMessage, match="ping answered by pong"):
            await kiosk.request(Ping(id=NEW_ID), Ack)
        with pytest.raises(TypeError, match="server message"):
            await kiosk.request(ErrorMessage(code="x", reason="y"))
    finally:
        await asyncio.gather(expert.close(), kiosk.close())


async def test_a_refused_hello_raises_and_leaves_nothing_open(server: RunningServer) -> None:
    with pytest.raises(ServerError) as refused:
        await Client.connect(server.url, token="not-a-jwt")
    assert refused.value.code == "not_authenticated"


async def test_wait_for_keeps_the_events_it_passes_over_and_expect_drops_them(
    server: RunningServer,
) -> None:
    expert = await signed_in(server, "expert", "expert-1", **EXPERT_CAF)
    kiosk = await signed_in(server, "kiosk", "kiosk-1")
    try:
        await expert.request(ExpertStatusSet(id=NEW_ID, status="available"), Ack)
        queued = await kiosk.request(
            CallRequest(id=NEW_ID, service="caf", beneficiary="1234567"), CallQueued
        )
        offer = await expert.wait_for(CallOffered, timeout_s=5, call=queued.call)
        assert offer.beneficiary == "1234567"
        # The states before the offer are still there, in order.
        signed = await expert.next_event(timeout_s=1)
        assert isinstance(signed, ExpertState) and signed.status == "break"
        assert await expert.wait_for("expert.state", timeout_s=1, status="available")

        await expert.request(OfferAccept(id=NEW_ID, call=queued.call), Ack)
        connected = await expert.expect("call.connected", timeout_s=5)
        assert message_type(connected) == "call.connected"
        # The offered state went with expect; what the server tells right after
        # call.connected (the case file, the kiosk's devices) may be there already.
        after = [message_type(event) for event in expert.take_events()]
        assert set(after) <= {"case.file", "device.status"}
    finally:
        await asyncio.gather(expert.close(), kiosk.close())


async def test_a_replaced_connection_is_lost_with_its_close_code(server: RunningServer) -> None:
    first = await signed_in(server, "kiosk", "kiosk-1")
    second = await signed_in(server, "kiosk", "kiosk-1")
    try:
        assert await first.wait_closed(timeout_s=5) == 4000
        assert first.closed
        with pytest.raises(ConnectionLost) as lost:
            await first.next_event(timeout_s=1)
        assert lost.value.code == 4000
        with pytest.raises(ConnectionLost):
            await first.request(Ping(id=NEW_ID))
        assert [e async for e in first.events()] == []
    finally:
        await asyncio.gather(first.close(), second.close())


async def test_raw_frames_reach_the_server_as_given(server: RunningServer) -> None:
    kiosk = await signed_in(server, "kiosk", "kiosk-1")
    try:
        await kiosk.send_raw("{not json")
        error = await kiosk.wait_for(ErrorMessage, timeout_s=5)
        assert error.code == "malformed_message"
        with pytest.raises(ServerError) as unknown:
            await kiosk.request_raw({"type": "teleport"})
        assert unknown.value.code == "unknown_type"
        await kiosk.send(Ping(id="mine"))
        pong = await kiosk.wait_for(Pong, timeout_s=5)
        assert pong.id == "mine"
    finally:
        await kiosk.close()


async def test_keep_drops_the_other_events_as_they_arrive(server: RunningServer) -> None:
    expert = await Client.connect(
        server.url,
        token=server.token("expert", "expert-1", **EXPERT_CAF),
        keep=lambda message: isinstance(message, CallOffered),
    )
    try:
        await expert.request(ExpertStatusSet(id=NEW_ID, status="available"), Ack)
        await asyncio.sleep(0.2)
        assert expert.take_events() == []
    finally:
        await expert.close()


async def test_frames_outside_the_protocol_are_raised_in_their_place() -> None:
    async def script(ws: web.WebSocketResponse) -> None:
        await ws.send_str('{"type": "call.position", "call": "c1", "position": 1}')
        await ws.send_str('{"type": "teleported"}')
        await ws.send_bytes(b"\x00")
        request = await ws.receive_json()
        await ws.send_json({"type": "ack", "id": request["id"], "extra": 1})
        await ws.receive()

    async with scripted_server(script) as url, await Client.connect(url) as client:
        assert message_type(await client.next_event(timeout_s=5)) == "call.position"
        with pytest.raises(UnexpectedMessage, match="outside the protocol") as bad:
            await client.next_event(timeout_s=5)
        assert bad.value.frame == '{"type": "teleported"}'
        with pytest.raises(UnexpectedMessage, match="binary frame"):
            await client.next_event(timeout_s=5)
        # A bad reply fails its own request rather than the event stream.
        with pytest.raises(UnexpectedMessage):
            await client.request(Ping(id=NEW_ID))


async def test_on_invalid_takes_bad_frames_out_of_the_stream() -> None:
    async def script(ws: web.WebSocketResponse) -> None:
        await ws.send_str("[]")
        await ws.send_str('{"type": "pong", "id": "x", "server_time": 1}')
        await ws.receive()

    seen: list[UnexpectedMessage] = []
    async with scripted_server(script) as url:
        client = await Client.connect(url, on_invalid=seen.append)
        try:
            assert isinstance(await client.next_event(timeout_s=5), Pong)
        finally:
            await client.close()
    assert [problem.frame for problem in seen] == ["[]"]


async def test_a_request_without_reply_times_out() -> None:
    async def script(ws: web.WebSocketResponse) -> None:
        await ws.receive()
        await ws.receive()

    async with scripted_server(script) as url, await Client.connect(url) as client:
        with pytest.raises(TimeoutError):
            await client.request(Ping(id=NEW_ID), timeout_s=0.1)
        with pytest.raises(TimeoutError):
            await client.next_event(timeout_s=0.1)


async def test_connecting_nowhere_or_refused_raises_connect_failed(
    server: RunningServer, unused_tcp_port: int
) -> None:
    with pytest.raises(ConnectFailed) as nowhere:
        await Client.connect(f"http://127.0.0.1:{unused_tcp_port}")
    assert nowhere.value.status is None
    with pytest.raises(ConnectFailed) as foreign:
        await Client.connect(server.url, headers={"Origin": "https://evil.example"})
    assert foreign.value.status == 403


async def test_a_shared_session_stays_open_after_close(server: RunningServer) -> None:
    async with aiohttp.ClientSession() as session:
        client = await Client.connect(
            server.url, session=session, token=server.token("kiosk", "kiosk-1")
        )
        await client.close()
        assert client.close_code == aiohttp.WSCloseCode.OK
        assert not session.closed
