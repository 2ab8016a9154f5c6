"""The kiosks' device agents as this node sees them: who holds which kiosk's device,
how its scanner and printer are, and who is told when that changes.

Rules this module keeps:

1. A hello claims the kiosk's device for that connection; health reports and the
   connection's loss change the record only while the connection still holds it.
2. A change of health (or of presence) is told to the expert and kiosk of the kiosk's
   connected call as ``device.status``, and asks for a fresh ``queue.status``.
3. Every ``_REFRESH_S`` this node vouches for the agents it holds; an agent another
   node took meanwhile is dropped here (``on_replaced`` closes its connection).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping

from signaling import messages as m
from signaling import not_cancelled

from ..auth import Principal
from .devices import DeviceRecord, DeviceRegistry, absent, same_health
from .errors import DocumentError
from .telling import Teller

__all__ = ["Agents"]

log = logging.getLogger(__name__)

_REFRESH_S = 2.0


class Agents:
    def __init__(
        self,
        registry: DeviceRegistry,
        teller: Teller,
        clock: Callable[[], float],
        status_changed: Callable[[], None],
        names: Mapping[str, str],
    ) -> None:
        self.registry = registry
        self.names = names
        """Each configured kiosk's name, for people reading the health."""
        self.teller = teller
        self.clock = clock
        self.status_changed = status_changed
        """Asks for a fresh ``queue.status`` (device health is part of it)."""
        self.on_replaced: Callable[[str, str], None] = lambda kiosk, link: None
        """Told when another connection (on another node) took a kiosk's device."""
        self._held: dict[str, DeviceRecord] = {}
        """The agents connected through this node, by kiosk."""

    async def ready(self, kiosk: str, part: str) -> None:
        """``device_unavailable`` unless the kiosk's agent is there with its ``part``."""
        record = await self.registry.get(kiosk, self.clock())
        if record is None:
            raise DocumentError(
                "device_unavailable",
                "the kiosk's device agent is not connected",
                kiosk=kiosk,
                part=part,
            )
        health = record.health.scanner if part == "scanner" else record.health.printer
        if not health.present:
            raise DocumentError(
                "device_unavailable", f"this kiosk has no {part}", kiosk=kiosk, part=part
            )

    async def health_of(self, kiosk: str) -> m.DeviceHealth:
        record = await self.registry.get(kiosk, self.clock())
        if record is not None:
            return record.health
        return absent(kiosk, self.clock(), self.names.get(kiosk, ""))

    def known(self) -> list[m.DeviceHealth]:
        return [record.health for record in self.registry.known()]

    async def connected(self, device: Principal, link: str) -> None:
        """A device agent said hello: it holds its kiosk's device from now on."""
        now = self.clock()
        unknown = m.DevicePart(present=False, state="unknown")
        health = m.DeviceHealth(
            kiosk=device.id,
            online=True,
            scanner=unknown,
            printer=unknown,
            at=now,
            name=self.names.get(device.id, ""),
        )
        record = DeviceRecord(health, link, now)
        await self.registry.claim(record)
        self._held[device.id] = record
        await self._changed(device.id, health)

    async def lost(self, device: Principal, link: str) -> None:
        held = self._held.get(device.id)
        if held is not None and held.link == link:
            del self._held[device.id]
        if await self.registry.forget(device.id, link):
            gone = absent(device.id, self.clock(), self.names.get(device.id, ""))
            await self._changed(device.id, gone)

    async def report(self, device: Principal, report: m.DeviceHealthReport, link: str) -> None:
        now = self.clock()
        health = m.DeviceHealth(
            kiosk=device.id,
            online=True,
            scanner=report.scanner,
            printer=report.printer,
            last_error=report.last_error,
            at=now,
            name=self.names.get(device.id, ""),
        )
        previous = self._held.get(device.id)
        if not await self.registry.update(DeviceRecord(health, link, now)):
            raise DocumentError(
                "forbidden", "another connection holds this kiosk's device now", 403
            )
        self._held[device.id] = DeviceRecord(health, link, now)
        if not same_health(previous.health if previous else None, health):
            await self._changed(device.id, health)

    async def _changed(self, kiosk: str, health: m.DeviceHealth) -> None:
        self.status_changed()
        await self.teller.device_status(kiosk, health)

    async def run(self) -> None:
        """Vouch for the agents held here, and learn the others'; until cancelled."""
        while not_cancelled():
            await asyncio.sleep(_REFRESH_S)
            now = self.clock()
            held = [DeviceRecord(r.health, r.link, now) for r in self._held.values()]
            try:
                taken = await self.registry.refresh(held, now)
            except Exception as exc:  # Redis away: try again at the next beat
                log.warning("device registry not refreshed: %s", exc)
                continue
            for kiosk in taken:
                record = self._held.pop(kiosk, None)
                if record is not None:
                    self.on_replaced(kiosk, record.link)
