"""Which kiosks have a device agent connected, and how their scanner and printer are.

Rules this module keeps:

1. One agent per kiosk: the connection that said ``hello`` last holds the kiosk's
   device (``claim``); an older one may no longer write (``update`` and ``forget`` name
   the connection's link and change nothing when another link holds the kiosk).
2. A record says which node and connection hold the agent (``link``, ``<node>/<id>``)
   and when that node last vouched for it (``seen``). With several nodes, a record a
   node stopped vouching for (the node died) is stale after ``stale_s`` and counts as
   absent.
3. ``known()`` answers without I/O, for the queue status built at scrape and publish
   time: the memory registry is exact, the Redis one as of its last ``refresh``.

``MemoryDeviceRegistry`` serves one node; ``devices_redis.RedisDeviceRegistry`` several.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import msgspec

from signaling import messages as m

__all__ = ["DeviceRecord", "DeviceRegistry", "MemoryDeviceRegistry", "absent", "same_health"]


@dataclass(frozen=True)
class DeviceRecord:
    health: m.DeviceHealth
    link: str
    """The connection holding the agent, ``<node>/<connection>``."""
    seen: float
    """When the node holding it last vouched for it."""

    @property
    def kiosk(self) -> str:
        return self.health.kiosk

    def to_json(self) -> bytes:
        return msgspec.json.encode(
            {"health": msgspec.to_builtins(self.health), "link": self.link, "seen": self.seen}
        )

    @classmethod
    def from_json(cls, raw: bytes | str) -> DeviceRecord:
        data = msgspec.json.decode(raw)
        health = msgspec.convert(data["health"], m.DeviceHealth)
        return cls(health, str(data["link"]), float(data["seen"]))


def absent(kiosk: str, now: float, name: str = "") -> m.DeviceHealth:
    """The health of a kiosk whose agent is not connected."""
    nothing = m.DevicePart(present=False, state="offline")
    return m.DeviceHealth(
        kiosk=kiosk, online=False, scanner=nothing, printer=nothing, at=now, name=name
    )


def same_health(a: m.DeviceHealth | None, b: m.DeviceHealth | None) -> bool:
    """Whether two reports say the same, whenever they were made."""
    if a is None or b is None:
        return a is b
    return msgspec.structs.replace(a, at=0.0) == msgspec.structs.replace(b, at=0.0)


class DeviceRegistry(Protocol):
    async def claim(self, record: DeviceRecord) -> None:
        """The connection of ``record.link`` holds the kiosk's device from now on."""

    async def update(self, record: DeviceRecord) -> bool:
        """Write ``record`` if its link still holds the kiosk; False if another does."""

    async def forget(self, kiosk: str, link: str) -> bool:
        """The agent of ``link`` went away: remove the record if it is still its own."""

    async def get(self, kiosk: str, now: float) -> DeviceRecord | None:
        """The kiosk's record, read now; None when no agent holds it."""

    async def refresh(self, held: list[DeviceRecord], now: float) -> list[str]:
        """Vouch for the agents this node holds and reload ``known()``; the kiosks of
        ``held`` whose device another connection took meanwhile."""

    def known(self) -> list[DeviceRecord]: ...

    async def close(self) -> None: ...


class MemoryDeviceRegistry:
    def __init__(self) -> None:
        self._records: dict[str, DeviceRecord] = {}

    async def claim(self, record: DeviceRecord) -> None:
        self._records[record.kiosk] = record

    async def update(self, record: DeviceRecord) -> bool:
        current = self._records.get(record.kiosk)
        if current is not None and current.link != record.link:
            return False
        self._records[record.kiosk] = record
        return True

    async def forget(self, kiosk: str, link: str) -> bool:
        current = self._records.get(kiosk)
        if current is None or current.link != link:
            return False
        del self._records[kiosk]
        return True

    async def get(self, kiosk: str, now: float) -> DeviceRecord | None:
        return self._records.get(kiosk)

    async def refresh(self, held: list[DeviceRecord], now: float) -> list[str]:
        return [r.kiosk for r in held if self._records.get(r.kiosk, r).link != r.link]

    def known(self) -> list[DeviceRecord]:
        return sorted(self._records.values(), key=lambda r: r.kiosk)

    async def close(self) -> None:
        return None
