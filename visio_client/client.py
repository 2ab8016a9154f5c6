"""One WebSocket to a visio-guichet server, speaking ``signaling.messages``.

Rules this module keeps:

1. Every text frame is decoded against the protocol (``signaling.decode_server``). A
   frame outside it is never dropped in silence: it fails the request whose ``id`` it
   carries, or goes to ``on_invalid``, or takes its place in the event stream, which
   raises it when reading reaches it.
2. A message whose ``id`` names a pending request is that request's reply (an ``error``
   reply raises ``ServerError``); every other message is an event. The protocol's events
   carry no ``id``, so telling them apart needs no list of reply types.
3. No message type is known by name but ``hello``, ``welcome`` and ``error``: a type
   added to ``signaling.messages`` needs no change here. Events are matched by tag
   (``"call.offered"``), by class, or by predicate, with optional field values.
4. The client numbers its requests. Events stay queued in arrival order until read;
   ``wait_for`` leaves those it passes over in place, ``expect`` discards them.
5. aiohttp's errors stop here: callers see ``ConnectFailed``, ``ConnectionLost``,
   ``ServerError``, ``UnexpectedMessage`` or ``TimeoutError``.

The server keeps the connection alive with WebSocket pings, which aiohttp answers by
itself, so the client sends no application ``ping`` of its own.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from types import TracebackType
from typing import Any, Final, TypeVar, overload
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import msgspec

from signaling import CLIENT_TYPES, decode_server, encode, request_id_of
from signaling.messages import ErrorMessage, Hello, Message, ServerMessage, Welcome

from .errors import ConnectFailed, ConnectionLost, ServerError, UnexpectedMessage

__all__ = ["NEW_ID", "Client", "Match", "message_type", "websocket_url"]

M = TypeVar("M", bound=Message)

NEW_ID: Final = ""
"""Build a request with ``id=NEW_ID``: the client gives it the next number when it goes
out. (An empty id is never valid on the wire, so it cannot clash with a real one.)"""

DEFAULT_REPLY_TIMEOUT_S = 10.0
DEFAULT_MAX_FRAME_BYTES = 4 * 1024 * 1024

Match = str | type[Message] | Callable[[ServerMessage], bool]
"""What an event must be: its tag (``"call.offered"``), its class, or a predicate."""

_MISSING = object()


def message_type(message: Message) -> str:
    """The wire tag of a message: ``"call.offered"`` for a ``CallOffered``."""
    return str(type(message).__struct_config__.tag)


def websocket_url(server_url: str) -> str:
    """``http://host:port`` -> ``ws://host:port/ws``; a ``ws(s)://`` URL is kept as given."""
    parts = urlsplit(server_url)
    if parts.scheme in ("ws", "wss"):
        return server_url
    scheme = "wss" if parts.scheme == "https" else "ws"
    path = parts.path.rstrip("/")
    if not path.endswith("/ws"):
        path += "/ws"
    return urlunsplit((scheme, parts.netloc, path, "", ""))


def _check_client_message(message: Message) -> None:
    if message_type(message) not in CLIENT_TYPES:
        raise TypeError(f"{message_type(message)} is a server message, not one a client sends")


def _matcher(match: Match, fields: Mapping[str, object]) -> Callable[[ServerMessage], bool]:
    test: Callable[[ServerMessage], bool]
    if isinstance(match, str):
        tag = match

        def test(message: ServerMessage) -> bool:
            return message_type(message) == tag

    elif isinstance(match, type):
        kind = match

        def test(message: ServerMessage) -> bool:
            return isinstance(message, kind)

    else:
        test = match
    if not fields:
        return test
    return lambda message: (
        test(message)
        and all(getattr(message, name, _MISSING) == value for name, value in fields.items())
    )


class Client:
    """One connection: typed requests matched to their replies, the rest an event queue.

    Open it with ``await Client.connect(url, token=...)``; close it with ``close()`` or
    use it as an ``async with`` block.
    """

    def __init__(
        self,
        ws: aiohttp.ClientWebSocketResponse,
        *,
        label: str,
        reply_timeout_s: float | None = DEFAULT_REPLY_TIMEOUT_S,
        keep: Callable[[ServerMessage], bool] | None = None,
        on_invalid: Callable[[UnexpectedMessage], None] | None = None,
        owned_session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.label = label
        """Names the connection in error messages (``"kiosk kiosk-1"``)."""
        self.welcome: Welcome | None = None
        """The server's reply to ``hello``, once it was said."""
        self._ws = ws
        self._reply_timeout_s = reply_timeout_s
        self._keep = keep
        self._on_invalid = on_invalid
        self._owned_session = owned_session
        self._ids = itertools.count(1)
        self._pending: dict[str, asyncio.Future[ServerMessage]] = {}
        self._inbox: deque[ServerMessage | UnexpectedMessage] = deque()
        self._arrivals: list[asyncio.Future[None]] = []
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        token: str | None = None,
        language: str | None = None,
        session: aiohttp.ClientSession | None = None,
        label: str | None = None,
        reply_timeout_s: float | None = DEFAULT_REPLY_TIMEOUT_S,
        keep: Callable[[ServerMessage], bool] | None = None,
        on_invalid: Callable[[UnexpectedMessage], None] | None = None,
        headers: Mapping[str, str] | None = None,
        autoping: bool = True,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
    ) -> Client:
        """Open a WebSocket to ``url`` (``http(s)://host:port`` or a ``ws(s)://`` URL) and,
        given a ``token``, say ``hello`` (``welcome`` then holds the reply).

        ``session``: an aiohttp session to share (a load generator opens thousands of
        clients); without one the client opens its own and closes it with itself.
        ``reply_timeout_s``: how long a request waits for its reply (None: no limit).
        ``keep``: which events to queue; the others are dropped as they arrive (a load
        generator keeps only what its loop waits for). ``on_invalid``: receives frames
        outside the protocol instead of the event stream (rule 1).
        ``autoping=False`` leaves the server's pings unanswered, as a dead network would.
        ``max_frame_bytes``: the largest frame accepted (0: no limit).
        """
        name = label or url
        http = session if session is not None else aiohttp.ClientSession()
        try:
            ws = await http.ws_connect(
                websocket_url(url),
                headers=headers,
                autoping=autoping,
                max_msg_size=max_frame_bytes,
            )
        except aiohttp.WSServerHandshakeError as exc:
            if session is None:
                await http.close()
            raise ConnectFailed(
                f"{name}: WebSocket upgrade refused ({exc.status})", status=exc.status
            ) from exc
        except (aiohttp.ClientError, OSError) as exc:
            if session is None:
                await http.close()
            raise ConnectFailed(f"{name}: cannot connect: {exc}") from exc
        client = cls(
            ws,
            label=name,
            reply_timeout_s=reply_timeout_s,
            keep=keep,
            on_invalid=on_invalid,
            owned_session=http if session is None else None,
        )
        if token is not None:
            try:
                await client.hello(token, language=language)
            except BaseException:
                await client.close()
                raise
        return client

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    # ------------------------------------------------------------------ requests

    async def hello(self, token: str, *, language: str | None = None) -> Welcome:
        """Authenticate; a refusal raises ``ServerError`` (and the server closes)."""
        self.welcome = await self.request(Hello(id=NEW_ID, token=token, language=language), Welcome)
        return self.welcome

    @overload
    async def request(
        self, message: Message, reply: None = None, *, timeout_s: float | None = None
    ) -> ServerMessage: ...

    @overload
    async def request(
        self, message: Message, reply: type[M], *, timeout_s: float | None = None
    ) -> M: ...

    async def request(
        self, message: Message, reply: type[M] | None = None, *, timeout_s: float | None = None
    ) -> ServerMessage | M:
        """Send a request under the next ``id`` (the one it was built with is replaced)
        and return its reply.

        ``error`` raises ``ServerError``; with ``reply``, a reply of another type raises
        ``UnexpectedMessage``. ``timeout_s`` defaults to the client's ``reply_timeout_s``.
        """
        _check_client_message(message)
        request_id = self._new_id()
        text = encode(msgspec.structs.replace(message, id=request_id))
        answer = await self._exchange(text, request_id, timeout_s)
        if reply is not None and not isinstance(answer, reply):
            raise UnexpectedMessage(
                f"{self.label}: {message_type(message)} answered by {message_type(answer)}"
            )
        return answer

    async def request_raw(
        self, frame: Mapping[str, Any], *, timeout_s: float | None = None
    ) -> ServerMessage:
        """Send a JSON object as given, unchecked, plus the next ``id``; return its reply
        as ``request`` does. For tests of what the server does with bad requests."""
        request_id = self._new_id()
        text = msgspec.json.encode({**frame, "id": request_id}).decode()
        return await self._exchange(text, request_id, timeout_s)

    async def send(self, message: Message) -> None:
        """Send without waiting for anything; an ``id`` of ``NEW_ID`` gets the next number
        (its reply, if any, then arrives as an event)."""
        _check_client_message(message)
        if getattr(message, "id", None) == NEW_ID:
            message = msgspec.structs.replace(message, id=self._new_id())
        await self._send(encode(message))

    async def send_raw(self, frame: str | bytes | Mapping[str, Any]) -> None:
        """Send a frame as given: text, a binary frame, or a JSON object (unchecked)."""
        if isinstance(frame, Mapping):
            frame = msgspec.json.encode(frame).decode()
        await self._send(frame)

    # ------------------------------------------------------------------ events

    async def next_event(self, timeout_s: float | None = None) -> ServerMessage:
        """The oldest event not read yet, waiting up to ``timeout_s`` (None: no limit).

        Raises ``ConnectionLost`` once the connection closed and every event that came
        before was read.
        """
        return await self._take(lambda message: True, timeout_s, discard=False)

    @overload
    async def wait_for(
        self, match: type[M], /, *, timeout_s: float | None = None, **fields: object
    ) -> M: ...

    @overload
    async def wait_for(
        self,
        match: str | Callable[[ServerMessage], bool],
        /,
        *,
        timeout_s: float | None = None,
        **fields: object,
    ) -> ServerMessage: ...

    async def wait_for(
        self, match: Match, /, *, timeout_s: float | None = None, **fields: object
    ) -> ServerMessage | M:
        """The oldest event that matches (and whose ``fields`` have these values); the
        events before it stay queued for later reads."""
        return await self._take(_matcher(match, fields), timeout_s, discard=False)

    @overload
    async def expect(
        self, match: type[M], /, *, timeout_s: float | None = None, **fields: object
    ) -> M: ...

    @overload
    async def expect(
        self,
        match: str | Callable[[ServerMessage], bool],
        /,
        *,
        timeout_s: float | None = None,
        **fields: object,
    ) -> ServerMessage: ...

    async def expect(
        self, match: Match, /, *, timeout_s: float | None = None, **fields: object
    ) -> ServerMessage | M:
        """As ``wait_for``, but the events before the match are discarded: the caller
        has moved past them (a test stepping through a call, a closed-loop bench)."""
        return await self._take(_matcher(match, fields), timeout_s, discard=True)

    def take_events(self) -> list[ServerMessage]:
        """Every event received and not read yet, without waiting."""
        taken: list[ServerMessage] = []
        while self._inbox:
            item = self._inbox.popleft()
            if isinstance(item, UnexpectedMessage):
                raise item
            taken.append(item)
        return taken

    async def events(self) -> AsyncIterator[ServerMessage]:
        """Every event in order until the connection closes; ``close_code`` says how."""
        while True:
            try:
                yield await self.next_event()
            except ConnectionLost:
                return

    # ------------------------------------------------------------------ closing

    @property
    def closed(self) -> bool:
        """The connection is over: nothing more will arrive."""
        return self._reader.done()

    @property
    def close_code(self) -> int | None:
        """The WebSocket close code, once closed (by either side)."""
        return self._ws.close_code

    async def wait_closed(self, timeout_s: float | None = None) -> int | None:
        """Wait until the server closes the connection; its close code."""
        async with asyncio.timeout(timeout_s):
            await asyncio.wait([self._reader])
        return self.close_code

    async def close(self) -> None:
        """Close the WebSocket (code 1000); pending requests raise ``ConnectionLost``."""
        try:
            await self._ws.close()
        except (aiohttp.ClientError, ConnectionError):
            pass  # already gone: closing is all that was asked
        finally:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
            if self._owned_session is not None:
                await self._owned_session.close()

    # ------------------------------------------------------------------ inside

    def _new_id(self) -> str:
        return str(next(self._ids))

    def _lost(self) -> ConnectionLost:
        code = self.close_code
        with_code = f" (code {code})" if code is not None else ""
        return ConnectionLost(f"{self.label}: WebSocket closed{with_code}", code=code)

    async def _exchange(self, text: str, request_id: str, timeout_s: float | None) -> ServerMessage:
        future: asyncio.Future[ServerMessage] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            await self._send(text)
            # Not wait_for: on 3.11 it swallows a cancellation that meets the reply.
            async with asyncio.timeout(self._reply_timeout_s if timeout_s is None else timeout_s):
                answer = await future
        finally:
            self._pending.pop(request_id, None)
        if isinstance(answer, ErrorMessage):
            raise ServerError.from_message(answer)
        return answer

    async def _send(self, frame: str | bytes) -> None:
        if self._ws.closed or self._reader.done():
            raise self._lost()
        try:
            if isinstance(frame, str):
                await self._ws.send_str(frame)
            else:
                await self._ws.send_bytes(frame)
        except (aiohttp.ClientError, ConnectionError) as exc:
            raise self._lost() from exc

    async def _take(
        self, test: Callable[[ServerMessage], bool], timeout_s: float | None, *, discard: bool
    ) -> ServerMessage:
        async with asyncio.timeout(timeout_s):
            while True:
                found = self._pick(test, discard=discard)
                if found is not None:
                    return found
                if self._reader.done():
                    raise self._lost()
                arrival = asyncio.get_running_loop().create_future()
                self._arrivals.append(arrival)
                await arrival

    def _pick(
        self, test: Callable[[ServerMessage], bool], *, discard: bool
    ) -> ServerMessage | None:
        if discard:
            while self._inbox:
                item = self._inbox.popleft()
                if isinstance(item, UnexpectedMessage):
                    raise item
                if test(item):
                    return item
            return None
        for index, item in enumerate(self._inbox):
            if isinstance(item, UnexpectedMessage) or test(item):
                del self._inbox[index]
                if isinstance(item, UnexpectedMessage):
                    raise item
                return item
        return None

    def _wake(self) -> None:
        arrivals, self._arrivals = self._arrivals, []
        for arrival in arrivals:
            if not arrival.done():
                arrival.set_result(None)

    async def _read(self) -> None:
        try:
            async for frame in self._ws:
                if frame.type is aiohttp.WSMsgType.TEXT:
                    self._receive(frame.data)
                elif frame.type is aiohttp.WSMsgType.BINARY:
                    self._unexpected(frame.data, "a binary frame")
                # PING and PONG reach here only with autoping off: nothing to do.
        finally:
            for pending in self._pending.values():
                if not pending.done():
                    pending.set_exception(self._lost())
            self._wake()

    def _receive(self, text: str) -> None:
        try:
            message = decode_server(text)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            self._unexpected(text, f"outside the protocol ({exc})")
            return
        request_id = getattr(message, "id", None)
        pending = self._pending.get(request_id) if isinstance(request_id, str) else None
        if pending is not None and not pending.done():
            pending.set_result(message)
        elif self._keep is None or self._keep(message):
            self._inbox.append(message)
            self._wake()

    def _unexpected(self, frame: str | bytes, what: str) -> None:
        shown = frame[:200] if isinstance(frame, str) else repr(frame[:40])
        problem = UnexpectedMessage(f"{self.label}: server sent {what}: {shown}", frame=frame)
        request_id = request_id_of(frame)
        pending = self._pending.get(request_id) if request_id is not None else None
        if pending is not None and not pending.done():
            pending.set_exception(problem)
        elif self._on_invalid is not None:
            self._on_invalid(problem)
        else:
            self._inbox.append(problem)
            self._wake()
