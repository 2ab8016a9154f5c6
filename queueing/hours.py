"""Opening hours of a service, in the service's own time zone.

Rules this module keeps:

1. Hours are wall-clock times in the service's zone, so 09:00 stays 09:00 across a
   daylight-saving change; the instant ``now`` is always Unix time.
2. A holiday closes the whole local day.
3. ``next_opening`` looks ahead at most ``_HORIZON_DAYS``; a service with no opening
   in that span is closed with no next opening.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

__all__ = ["ALWAYS_OPEN", "OpeningHours", "parse_interval"]

_HORIZON_DAYS = 400
_INTERVAL = re.compile(r"^([01]\d|2[0-4]):([0-5]\d)-([01]\d|2[0-4]):([0-5]\d)$")

Interval = tuple[time, time]
"""Start and end of an opening in local time; an end of 00:00 means midnight."""


def parse_interval(text: str) -> Interval:
    """``"09:00-12:30"`` -> (09:00, 12:30); raises ``ValueError`` with a clear message."""
    match = _INTERVAL.match(text.strip())
    if not match:
        raise ValueError(f"opening interval {text!r} is not of the form HH:MM-HH:MM")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    if h1 == 24 or (h2 == 24 and m2 != 0):
        # 24:00 only ever ends a day; 24:30 is no time, not half past midnight.
        raise ValueError(f"opening interval {text!r} may use 24:00 only as its end")
    start = time(h1, m1)
    end = time(0, 0) if h2 == 24 else time(h2, m2)
    if end != time(0, 0) and end <= start:
        raise ValueError(f"opening interval {text!r} ends before it starts")
    return start, end


@dataclass(frozen=True)
class OpeningHours:
    """Weekly opening intervals (Monday first) and holidays in ``timezone``."""

    timezone: str = "Europe/Paris"
    weekly: tuple[tuple[Interval, ...], ...] = ((),) * 7
    holidays: frozenset[date] = field(default_factory=frozenset)
    always_open: bool = False

    def __post_init__(self) -> None:
        if len(self.weekly) != 7:
            raise ValueError("weekly opening hours need exactly 7 days, Monday first")
        ZoneInfo(self.timezone)  # an unknown zone fails here, at configuration time

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def _openings_on(self, day: date) -> list[tuple[float, float]]:
        if day in self.holidays:
            return []
        zone = self.zone
        spans = []
        for start, end in self.weekly[day.weekday()]:
            begin = datetime.combine(day, start, zone)
            finish = (
                datetime.combine(day + timedelta(days=1), time(0, 0), zone)
                if end == time(0, 0)
                else datetime.combine(day, end, zone)
            )
            spans.append((begin.timestamp(), finish.timestamp()))
        return spans

    def is_open(self, now: float) -> bool:
        if self.always_open:
            return True
        today = datetime.fromtimestamp(now, self.zone).date()
        return any(begin <= now < end for begin, end in self._openings_on(today))

    def closes_at(self, now: float) -> float | None:
        """When the current opening ends; ``None`` if closed now or always open."""
        if self.always_open:
            return None
        today = datetime.fromtimestamp(now, self.zone).date()
        for begin, end in self._openings_on(today):
            if begin <= now < end:
                return end
        return None

    def next_opening(self, now: float) -> float | None:
        """The first opening strictly after ``now``; ``None`` if always open or never."""
        if self.always_open:
            return None
        today = datetime.fromtimestamp(now, self.zone).date()
        for offset in range(_HORIZON_DAYS):
            for begin, _end in self._openings_on(today + timedelta(days=offset)):
                if begin > now:
                    return begin
        return None


ALWAYS_OPEN = OpeningHours(always_open=True)
