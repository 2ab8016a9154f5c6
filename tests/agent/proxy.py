"""A TCP relay on loopback that a test can cut, as a kiosk's network would be: every
connection through it is dropped at once and new ones are refused until it is
restored. The agent is pointed at the relay for both its WebSocket and its uploads."""

from __future__ import annotations

import asyncio
import contextlib

__all__ = ["CuttableLink"]


class CuttableLink:
    """``await CuttableLink.open(target_port)``; ``url`` is the server behind it."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.cut_count = 0
        self.bytes_up = 0
        """Bytes relayed from the agent to the server, all connections together."""
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()
        self._pumps: set[asyncio.Task[None]] = set()
        self._down = False

    @classmethod
    async def open(cls, target_port: int) -> CuttableLink:
        link = cls(target_port)
        link._server = await asyncio.start_server(link._accept, "127.0.0.1", 0)
        link.port = int(link._server.sockets[0].getsockname()[1])
        return link

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cut(self) -> None:
        """Drop every connection now; refuse new ones until ``restore``."""
        self._down = True
        self.cut_count += 1
        for writer in list(self._open):
            writer.transport.abort()
        self._open.clear()

    def restore(self) -> None:
        self._down = False

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._pumps):
            task.cancel()
        await asyncio.gather(*self._pumps, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._down:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self._open.update((writer, up_writer))
        pumps = [
            asyncio.create_task(self._pump(reader, up_writer, upstream=True)),
            asyncio.create_task(self._pump(up_reader, writer, upstream=False)),
        ]
        self._pumps.update(pumps)
        try:
            await asyncio.gather(*pumps, return_exceptions=True)
        finally:
            self._pumps.difference_update(pumps)
            for end in (writer, up_writer):
                self._open.discard(end)
                end.transport.abort()

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, upstream: bool
    ) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(16384):
                if self._down:
                    return
                if upstream:
                    self.bytes_up += len(data)
                writer.write(data)
                await writer.drain()
        writer.transport.abort()
