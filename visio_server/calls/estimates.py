"""Wait ranges for waiting kiosks: a cache of the estimate per service, and what was told.

Rules this module keeps:

1. An estimate costs a simulation, so ranges are cached per service for
   ``estimate_refresh_s`` and only computed for kiosks this node holds.
2. Ranges are shown in steps of ``_ESTIMATE_STEP_S`` and at least two steps wide: a
   precise-looking number would promise what the estimate cannot.
3. A kiosk is told its place and range only when one of them changed since it was
   last told, so a refresh that changes nothing sends nothing.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable

from queueing import CallId, KioskId, QueueMachine, ServiceId, WaitEstimator
from signaling import MessageBus, address
from signaling import messages as m

__all__ = ["Estimates"]

_ESTIMATE_STEP_S = 30.0
_ESTIMATE_GAP_S = 0.25

WaitRange = tuple[float | None, float | None]


class Estimates:
    def __init__(
        self,
        estimator: WaitEstimator,
        machine: Callable[[], QueueMachine],
        bus: MessageBus,
        refresh_s: float,
    ) -> None:
        self.estimator = estimator
        self.machine = machine
        self.bus = bus
        self.refresh_s = refresh_s
        self._estimates: dict[ServiceId, tuple[float, list[tuple[float, float] | None]]] = {}
        """Per service: when it was estimated, and the range of each place from the first."""
        self._told: dict[CallId, tuple[int, float | None, float | None]] = {}
        """Per waiting call: the place and range its kiosk was last told."""

    def _ranges(
        self, service: ServiceId, now: float, *, fresh: bool = False
    ) -> list[tuple[float, float] | None]:
        cached = self._estimates.get(service)
        if cached is not None and not fresh and now - cached[0] < self.refresh_s:
            return cached[1]
        machine = self.machine()
        spec = machine.services[service]
        ranges = self.estimator.estimate(
            service,
            machine.queue_view(service, now),
            prior_handle_s=spec.expected_handle_s,
            seed=zlib.crc32(f"{service}:{int(now)}".encode()),
        )
        self._estimates[service] = (now, ranges)
        return ranges

    def _wait_range(self, service: ServiceId, position: int, now: float) -> WaitRange:
        ranges = self._ranges(service, now)
        if position > len(ranges) and now - self._estimates[service][0] >= _ESTIMATE_GAP_S:
            # A burst of callers would cost a simulation each: within the gap the new
            # ones get their range from the next refresh, a fraction of a second later.
            ranges = self._ranges(service, now, fresh=True)
        if position < 1 or position > len(ranges) or ranges[position - 1] is None:
            return None, None
        low, high = ranges[position - 1]  # type: ignore[misc]
        low = math.floor(low / _ESTIMATE_STEP_S) * _ESTIMATE_STEP_S
        high = max(
            math.ceil(high / _ESTIMATE_STEP_S) * _ESTIMATE_STEP_S, low + 2 * _ESTIMATE_STEP_S
        )
        return low, high

    def queued(self, call: CallId, service: ServiceId, position: int, now: float) -> WaitRange:
        """The range a new call is told in the reply to its request."""
        low, high = self._wait_range(service, position, now)
        self._told[call] = (position, low, high)
        return low, high

    def requeued(self, call: CallId, position: int) -> None:
        """A call back in the queue is told its place without a range, which comes later."""
        self._told[call] = (position, None, None)

    def ended(self, call: CallId) -> None:
        self._told.pop(call, None)

    async def refresh(self, now: float) -> None:
        """Waits drift while nothing happens (calls in progress get longer): tell kiosks."""
        for service in self.machine().services:
            queued = [
                call
                for call in self.machine().queued(service)
                if self.bus.has_subscribers(address("kiosk", call.kiosk))
            ]
            if not queued:
                continue
            self._ranges(service, now, fresh=True)
            for call in queued:
                await self.tell_position(call.id, call.kiosk, service, call.position, now)

    async def tell_position(
        self, call: CallId, kiosk: KioskId, service: ServiceId, position: int, now: float
    ) -> None:
        target = address("kiosk", kiosk)
        if not self.bus.has_subscribers(target):
            return  # another node holds the kiosk and tells it; estimates cost a simulation
        low, high = self._wait_range(service, position, now)
        if self._told.get(call) == (position, low, high):
            return
        self._told[call] = (position, low, high)
        await self.bus.publish_here(
            target, m.CallPosition(call=call, position=position, wait_min_s=low, wait_max_s=high)
        )
