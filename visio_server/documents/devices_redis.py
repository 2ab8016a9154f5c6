"""The device registry of several nodes, in one Redis hash.

Key ``{prefix}:devices`` is a hash: field ``<kiosk id>``, value the JSON of a
``DeviceRecord`` ``{"health": DeviceHealth, "link": "<node>/<connection>", "seen": t}``.
Conditional writes and removals run as scripts, so that a connection that was replaced
on another node can never overwrite the newer one (rule 1 of ``devices``).
"""

from __future__ import annotations

from typing import Any, cast

from redis.asyncio import Redis

from .devices import DeviceRecord

__all__ = ["RedisDeviceRegistry"]

# KEYS[1] the hash; ARGV[1] kiosk, ARGV[2] link, ARGV[3] record JSON (update only).
_UPDATE = """
local current = redis.call('HGET', KEYS[1], ARGV[1])
if current and cjson.decode(current)['link'] ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 1
"""
_FORGET = """
local current = redis.call('HGET', KEYS[1], ARGV[1])
if current and cjson.decode(current)['link'] == ARGV[2] then
  return redis.call('HDEL', KEYS[1], ARGV[1])
end
return 0
"""


_FORGOTTEN_AFTER = 6
"""A record stale this many times over is removed, not just ignored."""


class RedisDeviceRegistry:
    def __init__(self, client: Redis, prefix: str = "visio", *, stale_s: float = 10.0) -> None:
        self._client = client
        self._key = f"{{{prefix}}}:devices"
        self._stale_s = stale_s
        self._known: dict[str, DeviceRecord] = {}
        self._update = client.register_script(_UPDATE)
        self._forget = client.register_script(_FORGET)

    async def claim(self, record: DeviceRecord) -> None:
        await self._client.hset(self._key, record.kiosk, record.to_json())
        self._known[record.kiosk] = record

    async def update(self, record: DeviceRecord) -> bool:
        written = await self._update(
            keys=[self._key], args=[record.kiosk, record.link, record.to_json()]
        )
        if written:
            self._known[record.kiosk] = record
        return bool(written)

    async def forget(self, kiosk: str, link: str) -> bool:
        removed = await self._forget(keys=[self._key], args=[kiosk, link])
        if removed and kiosk in self._known and self._known[kiosk].link == link:
            del self._known[kiosk]
        return bool(removed)

    async def get(self, kiosk: str, now: float) -> DeviceRecord | None:
        raw = await self._client.hget(self._key, kiosk)
        if raw is None:
            return None
        record = DeviceRecord.from_json(cast(bytes, raw))
        return record if now - record.seen <= self._stale_s else None

    async def refresh(self, held: list[DeviceRecord], now: float) -> list[str]:
        taken = [record.kiosk for record in held if not await self.update(record)]
        stored: dict[Any, Any] = await self._client.hgetall(self._key)
        fresh: dict[str, DeviceRecord] = {}
        for raw in stored.values():
            record = DeviceRecord.from_json(raw)
            if now - record.seen <= self._stale_s:
                fresh[record.kiosk] = record
            elif now - record.seen > _FORGOTTEN_AFTER * self._stale_s:
                # Its node died long ago; unless another agent took the kiosk since.
                await self._forget(keys=[self._key], args=[record.kiosk, record.link])
        self._known = fresh
        return taken

    def known(self) -> list[DeviceRecord]:
        return sorted(self._known.values(), key=lambda r: r.kiosk)

    async def close(self) -> None:
        return None
