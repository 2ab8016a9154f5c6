"""Builders for the queue tests: services, kiosks, experts, and a clock driven by timers.

Every test passes ``now`` explicitly; ``run_until`` plays the machine's timers up to a
given instant the way the asyncio glue would (``handle_timer(get_timer())``).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, time
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from queueing import (
    CallId,
    Event,
    ExpertId,
    ExpertSignIn,
    ExpertStatus,
    KioskId,
    KioskSpec,
    QueueMachine,
    QueueSettings,
    RequestCall,
    ServiceId,
    ServiceSpec,
    SetStatus,
    parse_interval,
)

E = TypeVar("E", bound=Event)

CAF = ServiceId("caf")
CPAM = ServiceId("cpam")


def service(id: str = "caf", **changes: Any) -> ServiceSpec:
    return ServiceSpec(id=ServiceId(id), name=id.upper(), partner=id, **changes)


def kiosk(
    id: str = "k1", services: Iterable[str] = ("caf", "cpam"), priority: int = 0
) -> KioskSpec:
    return KioskSpec(
        id=KioskId(id),
        name=f"Kiosk {id}",
        place="Mairie",
        services=tuple(ServiceId(s) for s in services),
        priority=priority,
    )


def kiosks(count: int, services: Iterable[str] = ("caf", "cpam")) -> list[KioskSpec]:
    return [kiosk(f"k{i}", services) for i in range(1, count + 1)]


def machine(
    services: Iterable[ServiceSpec] | None = None,
    kiosk_specs: Iterable[KioskSpec] | None = None,
    **settings: float,
) -> QueueMachine:
    return QueueMachine(
        list(services) if services is not None else [service("caf"), service("cpam")],
        list(kiosk_specs) if kiosk_specs is not None else kiosks(6),
        QueueSettings(**settings),
    )


def sign_in(
    m: QueueMachine,
    expert: str,
    now: float,
    services: Iterable[str] = ("caf",),
    *,
    available: bool = True,
    languages: Iterable[str] = (),
) -> list[Event]:
    """Sign an expert in and, unless told otherwise, make them available."""
    events = m.apply(
        ExpertSignIn(
            ExpertId(expert),
            name=expert.title(),
            partner="caf",
            services=tuple(ServiceId(s) for s in services),
            languages=tuple(languages),
        ),
        now,
    )
    if available:
        events += m.apply(SetStatus(ExpertId(expert), ExpertStatus.AVAILABLE), now)
    return events


def request(
    m: QueueMachine,
    call: str,
    now: float,
    kiosk: str = "k1",
    service: str = "caf",
    beneficiary: str = "1234567",
    **extra: Any,
) -> list[Event]:
    return m.apply(
        RequestCall(CallId(call), KioskId(kiosk), ServiceId(service), beneficiary, **extra), now
    )


def only(events: list[Event], kind: type[E]) -> list[E]:
    return [e for e in events if isinstance(e, kind)]


def one(events: list[Event], kind: type[E]) -> E:
    found = only(events, kind)
    assert len(found) == 1, f"expected one {kind.__name__}, got {found}"
    return found[0]


def run_until(m: QueueMachine, until: float) -> list[Event]:
    """Fire every timer due up to ``until``, each at its own deadline."""
    events: list[Event] = []
    while (deadline := m.get_timer()) is not None and deadline <= until:
        events += m.handle_timer(deadline)
    return events


def positions(m: QueueMachine, service: str = "caf") -> list[str]:
    """Queued call ids in queue order."""
    return [c.id for c in m.queued(ServiceId(service))]


def paris(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> float:
    """Unix time of a wall-clock instant in Paris."""
    return datetime(year, month, day, hour, minute, tzinfo=ZoneInfo("Europe/Paris")).timestamp()


def weekdays(*intervals: str) -> tuple[tuple[tuple[time, time], ...], ...]:
    """The same intervals Monday to Friday, closed at the weekend."""
    day = tuple(parse_interval(i) for i in intervals)
    return (day,) * 5 + ((), ())
