"""Pacing an upload so that the call keeps its share of the kiosk's link.

A kiosk may sit behind 512 kbit/s; an unpaced upload of a scan would fill the uplink
and the expert would stop hearing the citizen. The server says how fast a scan may go
(``device.command.upload_kbps``); the body is sent in small chunks, each one waiting
for the tokens it needs. The bucket is pure: it is given the time and answers how long
to wait, so its tests need no clock.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Final

__all__ = ["CHUNK_BYTES", "TokenBucket", "paced_chunks"]

CHUNK_BYTES: Final = 4096
"""Small enough that one chunk at 64 kbit/s is half a second of the link."""


class TokenBucket:
    """Tokens are bytes, refilled at ``rate_bytes_s`` up to ``burst_bytes``. It starts
    empty: a burst at the start would land on a link the call still fills, before its
    congestion control has seen the upload."""

    def __init__(self, rate_bytes_s: float, burst_bytes: float, *, now: float) -> None:
        if rate_bytes_s <= 0:
            raise ValueError("the rate must be positive")
        self.rate = rate_bytes_s
        self.burst = max(burst_bytes, 1.0)
        self._tokens = 0.0
        self._at = now

    def delay(self, size: int, now: float) -> float:
        """Take ``size`` bytes at ``now``; how long to wait before sending them (0: at
        once). A chunk larger than the burst waits for the whole of it."""
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        self._tokens -= size
        if self._tokens >= 0:
            return 0.0
        return -self._tokens / self.rate

    @classmethod
    def for_kbps(cls, kbps: int, *, now: float) -> TokenBucket:
        """``kbps`` kilobits per second, with a burst of a quarter second (at least one
        chunk) so the link never sees more than that at a time."""
        rate = kbps * 1000 / 8
        return cls(rate, max(rate / 4, CHUNK_BYTES), now=now)


async def paced_chunks(
    body: bytes,
    kbps: int | None,
    *,
    chunk_bytes: int = CHUNK_BYTES,
    clock: Callable[[], float] = time.monotonic,
) -> AsyncIterator[bytes]:
    """``body`` in chunks, at most ``kbps`` on average (None or 0: as fast as the
    network takes them)."""
    bucket = TokenBucket.for_kbps(kbps, now=clock()) if kbps else None
    view = memoryview(body)
    for start in range(0, len(body), chunk_bytes):
        chunk = bytes(view[start : start + chunk_bytes])
        if bucket is not None:
            wait = bucket.delay(len(chunk), clock())
            if wait > 0:
                await asyncio.sleep(wait)
        yield chunk
