"""The WebSocket edge: one connection per client, two pumps, typed errors.

Rules this module keeps:

1. A connection is a reader and a writer under one TaskGroup; everything sent to the
   client goes through one bounded queue, so replies and events keep their order.
   A client that does not read its messages fills the queue and is dropped at once:
   its writer is blocked on a full socket, so no close frame could reach it.
2. The first message must be ``hello`` with a token, within ``hello_timeout_s``.
3. Errors become ``error`` messages here and nowhere else; after an authentication
   failure, a flood, or an oversized frame the connection is closed.
4. One live connection per kiosk, expert or kiosk device agent: a newer one replaces
   the older (a page reload, an agent restarted), and only the loss of the live one is
   reported to the call control (the documents glue, for an agent).
5. Device commands, documents and consent go to the documents façade; its refusals
   (``DocumentError``) become ``error`` messages like the others.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from aiohttp import WSCloseCode, WSMsgType, web

from queueing import QueueError
from signaling import (
    ChannelTraffic,
    MessageBus,
    NotAuthenticated,
    ProtocolError,
    RateLimited,
    Subscription,
    address,
    check_allowed,
    decode_client,
    encode,
    request_id_of,
)
from signaling import messages as m

from .auth import Authenticator, Principal
from .calls import Desk
from .config import Config
from .documents.errors import DocumentError
from .documents.service import Documents
from .metrics import Metrics

__all__ = ["Edge"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Close:
    code: int
    reason: str


_FLOOD_WINDOW_S = 5.0
"""More than ``rate_burst`` refused messages within this window is a flood."""


class _TokenBucket:
    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, burst
        self.tokens = float(burst)
        self.stamp = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


@dataclass(eq=False)
class _Connection:
    ws: web.WebSocketResponse
    limit: int
    metrics: Metrics
    outbound: asyncio.Queue[str | _Close | None] = field(default_factory=asyncio.Queue)
    principal: Principal | None = None
    party: str | None = None
    link: str = ""
    """``<node>/<connection>``: how the queue tells this connection from the party's others."""
    subscriptions: list[Subscription] = field(default_factory=list)
    closing: bool = False
    replaced: bool = False
    watching: bool = False
    refused: deque[float] = field(default_factory=deque)
    channels: ChannelTraffic = field(default_factory=ChannelTraffic)
    """Rate of each call channel this connection sends on, apart from the others."""
    drop: Callable[[], None] = lambda: None
    """Ends the connection without waiting for its writer (set once the writer runs)."""

    @property
    def role(self) -> str:
        return self.principal.role if self.principal else "anonymous"

    def deliver(self, message: m.Message) -> None:
        if self.closing:
            return
        if self.outbound.qsize() >= self.limit:
            self.closing = True
            self.metrics.slow_consumer(self.role)
            self.drop()
            return
        self.outbound.put_nowait(encode(message))

    def close(self, code: int, reason: str) -> None:
        if not self.closing:
            self.closing = True
            self.outbound.put_nowait(_Close(code, reason))


def _too_big(text: str, limit: int) -> bool:
    """Whether ``text`` is over ``limit`` bytes in UTF-8 (at most 4 bytes a character,
    so short texts are not encoded to be measured)."""
    return len(text) * 4 > limit and len(text.encode()) > limit


class Edge:
    def __init__(
        self,
        config: Config,
        desk: Desk,
        auth: Authenticator,
        bus: MessageBus,
        metrics: Metrics,
        documents: Documents,
    ) -> None:
        self.config = config
        self.server = config.server
        self.desk = desk
        self.documents = documents
        self.auth = auth
        self.bus = bus
        self.metrics = metrics
        self._connections: set[_Connection] = set()
        self._live: dict[str, _Connection] = {}
        self.shutting_down = False
        desk.on_moved = self._moved
        desk.on_node_lost = self._node_lost
        documents.agents.on_replaced = self._device_replaced

    def _moved(self, party: str, link: str) -> None:
        """The party connected through another node: this node's connection is stale."""
        conn = self._live.get(party)
        if conn is not None and conn.link != link:
            conn.replaced = True
            conn.close(4000, "replaced by a newer connection")

    def _device_replaced(self, kiosk: str, link: str) -> None:
        """Another node's connection took the kiosk's device from this one (``link``)."""
        conn = self._live.get(address("device", kiosk))
        if conn is not None and conn.link == link:
            conn.replaced = True
            conn.close(4000, "replaced by a newer connection")

    def _node_lost(self) -> None:
        """The others declared this node dead: its parties must connect again to count."""
        for conn in list(self._live.values()):
            conn.replaced = True
            conn.close(WSCloseCode.SERVICE_RESTART, "connect again")

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for conn in self._connections:
            counts[conn.role] = counts.get(conn.role, 0) + 1
        return counts

    def origin_allowed(self, request: web.Request) -> bool:
        origin = request.headers.get("Origin")
        if origin is None:
            return True  # not a browser: the token alone decides
        if origin in self.server.allowed_origins:
            return True
        return urlsplit(origin).netloc == request.host

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if not self.origin_allowed(request):
            raise web.HTTPForbidden(
                text='{"code": "forbidden_origin", "reason": "this origin may not connect"}',
                content_type="application/json",
            )
        # aiohttp refuses a message of max_msg_size bytes *or more*; ``max_frame_bytes``
        # is the largest accepted, hence the + 1. A compressed message of exactly
        # max_frame_bytes + 1 still gets through aiohttp: ``_read`` measures it.
        ws = web.WebSocketResponse(
            heartbeat=self.server.heartbeat_s, max_msg_size=self.server.max_frame_bytes + 1
        )
        await ws.prepare(request)
        conn = _Connection(ws, self.server.outbound_queue, self.metrics)
        self._connections.add(conn)
        try:
            async with asyncio.TaskGroup() as group:
                writer = group.create_task(self._write(conn))
                conn.drop = lambda: _drop(writer, request)
                await self._read(conn)
                if not writer.done():
                    conn.outbound.put_nowait(None)
        finally:
            self._connections.discard(conn)
            await self._forget(conn)
        return ws

    async def close_all(self) -> None:
        self.shutting_down = True
        for conn in list(self._connections):
            await conn.ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")

    # ------------------------------------------------------------------ pumps

    async def _write(self, conn: _Connection) -> None:
        while True:
            item = await conn.outbound.get()
            if item is None:
                return
            if isinstance(item, _Close):
                await conn.ws.close(code=item.code, message=item.reason.encode())
                return
            try:
                await conn.ws.send_str(item)
            except ConnectionError:
                return

    async def _read(self, conn: _Connection) -> None:
        bucket = _TokenBucket(self.server.rate_per_s, self.server.rate_burst)
        loop = asyncio.get_running_loop()
        # An absolute deadline: heartbeat pongs must not extend the time to say hello.
        hello_deadline = loop.time() + self.server.hello_timeout_s
        while not conn.closing:
            # Until hello, the hello deadline; after it, the token's expiry: a silent
            # client must not keep receiving events on a token that is no longer valid.
            deadline = hello_deadline
            if conn.principal is not None:
                left = conn.principal.expires_at + self.config.auth.leeway_s - time.time()
                deadline = loop.time() + left
            try:
                async with asyncio.timeout_at(deadline):
                    frame = await conn.ws.receive()
            except TimeoutError:
                reason = (
                    "the token has expired" if conn.principal else "no 'hello' received in time"
                )
                self._refuse(conn, NotAuthenticated(reason), None)
                conn.close(WSCloseCode.POLICY_VIOLATION, reason)
                return
            if frame.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
                return
            if frame.type is WSMsgType.ERROR:
                log.info("websocket error from %s: %s", conn.role, conn.ws.exception())
                return
            if frame.type is WSMsgType.TEXT and _too_big(frame.data, self.server.max_frame_bytes):
                conn.close(WSCloseCode.MESSAGE_TOO_BIG, "message too big")
                return
            self.metrics.message_received(conn.role)
            if not bucket.take():
                echoed = request_id_of(frame.data) if frame.type is WSMsgType.TEXT else None
                self._refuse(conn, RateLimited("too many messages; slow down"), echoed)
                now = loop.time()
                conn.refused.append(now)
                while conn.refused[0] < now - _FLOOD_WINDOW_S:
                    conn.refused.popleft()
                if len(conn.refused) > self.server.rate_burst:
                    conn.close(WSCloseCode.POLICY_VIOLATION, "message flood")
                continue
            if frame.type is not WSMsgType.TEXT:
                self._refuse(conn, ProtocolError("frames are JSON text"), None)
                continue
            await self._handle_frame(conn, frame.data)

    async def _handle_frame(self, conn: _Connection, data: str) -> None:
        request_id = None
        try:
            message = decode_client(data)
            request_id = getattr(message, "id", None)
            check_allowed(conn.principal.role if conn.principal else None, _type_of(message))
            if (
                conn.principal
                and time.time() > conn.principal.expires_at + self.config.auth.leeway_s
            ):
                raise NotAuthenticated("the token has expired; connect again with a new one")
            reply = await self._dispatch(conn, message)
        except (ProtocolError, QueueError, DocumentError) as exc:
            self._refuse(conn, exc, request_id or request_id_of(data))
            if isinstance(exc, NotAuthenticated):
                conn.close(WSCloseCode.POLICY_VIOLATION, exc.reason[:100])
            return
        except Exception:
            # A fault of the server, not of the client: say so and keep the connection.
            log.exception("message from %s failed", conn.role)
            failure = QueueError("internal", "the server failed to handle this message")
            self._refuse(conn, failure, request_id or request_id_of(data))
            return
        if reply is not None:
            conn.deliver(reply)

    def _refuse(
        self,
        conn: _Connection,
        exc: ProtocolError | QueueError | DocumentError,
        request_id: str | None,
    ) -> None:
        details: dict[str, Any] = {k: v for k, v in exc.details.items() if v is not None}
        self.metrics.error_sent(exc.code)
        conn.deliver(
            m.ErrorMessage(code=exc.code, reason=exc.reason, id=request_id, details=details)
        )

    # ------------------------------------------------------------------ messages

    async def _dispatch(self, conn: _Connection, message: m.Message) -> m.Message | None:
        desk = self.desk
        match message:
            case m.Hello():
                await self._hello(conn, message)
                return None
            case m.Ping():
                return m.Pong(id=message.id, server_time=time.time())
        principal = conn.principal
        assert principal is not None
        match message:
            case m.CallRequest():
                return await desk.request_call(principal, message)
            case m.CallCancel():
                await desk.cancel_call(principal, message.call)
            case m.CallHangup():
                await desk.hang_up(principal, message.call)
            case m.CallMediaFailed():
                await desk.media_failed(principal, message.call, message.detail)
            case m.ExpertStatusSet():
                await desk.set_status(principal, message.status)
            case m.OfferAccept():
                await desk.accept(principal, message.call)
            case m.OfferReject():
                await desk.reject(principal, message.call)
            case m.WrapUpDone():
                await desk.wrap_up(principal, message.call, message.reason)
            case m.CallTransfer():
                await desk.transfer(principal, message.call, message.service)
            case m.CallInvite():
                await desk.invite(principal, message.call, message.language)
            case m.CallJoin():
                await desk.join(principal, message.call, conn.link)
            case m.CallData():
                try:
                    conn.channels.take(message.channel)
                except RateLimited:
                    self.metrics.channel_message(message.channel, "rate_limited", 0)
                    raise
                await desk.send_data(principal, message)
                return m.Ack(id=message.id) if message.id else None
            case m.RtcSdp() | m.RtcIce():
                await desk.relay(principal, message)
                return m.Ack(id=message.id) if message.id else None
            case m.DeviceScan():
                await self.documents.commands.scan(principal, message)
            case m.DevicePrint():
                await self.documents.commands.print(principal, message)
            case m.DeviceCancel():
                await self.documents.commands.cancel(principal, message)
                return m.Ack(id=message.id) if message.id else None
            case m.DevicePage():
                await self.documents.commands.page(principal, message)
                return m.Ack(id=message.id) if message.id else None
            case m.DeviceHealthReport():
                await self.documents.agents.report(principal, message, conn.link)
                return m.Ack(id=message.id) if message.id else None
            case m.DeviceProgress():
                await self.documents.commands.progress(principal, message)
                return m.Ack(id=message.id) if message.id else None
            case m.CaseReview():
                await self.documents.decisions.review(principal, message)
            case m.CaseConsent():
                return await self.documents.decisions.consent(principal, message)
            case m.CaseShare():
                await self.documents.decisions.share(principal, message)
            case m.CaseWithdraw():
                await self.documents.decisions.withdraw(principal, message)
            case m.QueueSubscribe():
                target = (
                    "watch:*" if principal.role == "admin" else address("watch", principal.partner)
                )
                if not conn.watching:
                    conn.watching = True
                    conn.subscriptions.append(self.bus.subscribe(target, conn.deliver))
                conn.deliver(m.Ack(id=message.id))
                return desk.queue_status(principal, time.time())
        return m.Ack(id=message.id)  # type: ignore[attr-defined]

    async def _hello(self, conn: _Connection, hello: m.Hello) -> None:
        principal = await self.auth.verify(hello.token)
        conn.principal = principal
        party = None
        if principal.role == "kiosk":
            party = address("kiosk", principal.id)
        elif principal.answers_calls:
            party = address("expert", principal.id)
        elif principal.role == "supervisor":
            party = address("supervisor", principal.id)
        elif principal.role == "device":
            party = address("device", principal.id)
        if party is not None:
            previous = self._live.get(party)
            if previous is not None:
                previous.replaced = True
                previous.close(4000, "replaced by a newer connection")
            self._live[party] = conn
            conn.party = party
            conn.link = f"{self.desk.node}/{secrets.token_hex(6)}"
            conn.subscriptions.append(self.bus.subscribe(party, conn.deliver))
        now = time.time()
        expert = self.desk.expert_state(principal.id) if principal.answers_calls else None
        status, state = expert or (None, None)
        kiosk = (
            self.desk.kiosk_info(principal.id) if principal.role in ("kiosk", "device") else None
        )
        conn.deliver(
            m.Welcome(
                id=hello.id,
                role=principal.role,
                identity=principal.id,
                name=principal.name,
                services=self.desk.welcome_services(principal, now),
                heartbeat_s=self.server.heartbeat_s,
                kiosk=kiosk,
                status=status,
                state=state,
                interpreter_languages=self.desk.interpreter_languages()
                if principal.role in ("kiosk", "expert")
                else [],
            )
        )
        if principal.role == "kiosk":
            await self.desk.kiosk_connected(principal, conn.link)
        elif principal.answers_calls:
            await self.desk.expert_connected(principal, conn.link)
        elif principal.role == "supervisor":
            await self.desk.supervisor_connected(principal)
        elif principal.role == "device":
            await self.documents.agents.connected(principal, conn.link)

    async def _forget(self, conn: _Connection) -> None:
        for subscription in conn.subscriptions:
            subscription.close()
        if conn.party is None or conn.replaced or self._live.get(conn.party) is not conn:
            return
        del self._live[conn.party]
        if conn.principal is not None and conn.principal.role == "device":
            # Also at shutdown: the device registry may be shared with other nodes.
            try:
                await self.documents.agents.lost(conn.principal, conn.link)
            except Exception as exc:  # the registry is away: its records go stale instead
                log.warning("could not record the loss of %s: %s", conn.party, exc)
        elif not self.shutting_down and conn.principal is not None:
            try:
                await self.desk.party_lost(conn.principal, conn.link)
            except QueueError as exc:
                log.warning("could not record the loss of %s: %s", conn.party, exc.reason)


def _drop(writer: asyncio.Task[None], request: web.Request) -> None:
    writer.cancel()
    if request.transport is not None:
        request.transport.abort()


def _type_of(message: m.Message) -> str:
    return str(type(message).__struct_config__.tag)
