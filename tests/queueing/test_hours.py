"""Opening hours: local wall-clock times across daylight saving, holidays, odd weeks.

Expected instants are written in UTC on purpose, so that they do not come from the
same time-zone arithmetic as the code under test.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time

import pytest

from queueing import ALWAYS_OPEN, OpeningHours, parse_interval
from tests.queueing.helpers import paris, weekdays


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> float:
    return datetime(year, month, day, hour, minute, tzinfo=UTC).timestamp()


OFFICE = OpeningHours("Europe/Paris", weekdays("09:00-12:00", "13:30-17:00"))

# --------------------------------------------------------------------------- parse_interval


def test_parse_interval_reads_hours_and_minutes():
    assert parse_interval("09:00-12:30") == (time(9, 0), time(12, 30))


def test_parse_interval_ignores_surrounding_spaces():
    assert parse_interval(" 13:30-17:00 ") == (time(13, 30), time(17, 0))


def test_parse_interval_end_of_24_00_is_midnight():
    assert parse_interval("20:00-24:00") == (time(20, 0), time(0, 0))


def test_parse_interval_whole_day():
    assert parse_interval("00:00-24:00") == (time(0, 0), time(0, 0))


@pytest.mark.parametrize(
    "text",
    [
        "",
        "9:00-12:00",
        "09h00-12h00",
        "09:00 12:00",
        "09:00-12:00-13:00",
        "25:00-26:00",
        "09:60-10:00",
        "09:00-12:61",
        "24:30-24:45",
        "09:00-24:30",
        "24:00-10:00",
    ],
)
def test_parse_interval_rejects_malformed_text(text):
    with pytest.raises(ValueError, match="opening interval"):
        parse_interval(text)


@pytest.mark.parametrize("text", ["12:00-09:00", "09:00-09:00", "17:00-16:59"])
def test_parse_interval_rejects_an_end_before_the_start(text):
    with pytest.raises(ValueError, match="ends before it starts"):
        parse_interval(text)


# --------------------------------------------------------------------------- configuration


def test_weekly_hours_need_seven_days():
    with pytest.raises(ValueError, match="7 days"):
        OpeningHours("Europe/Paris", ((),) * 6)


def test_unknown_time_zone_fails_at_configuration():
    with pytest.raises(Exception):  # noqa: B017 - zoneinfo raises its own error types
        OpeningHours("Europe/Atlantis")


def test_always_open_is_open_and_has_no_next_opening():
    now = utc(2026, 3, 29, 1, 30)

    assert ALWAYS_OPEN.is_open(now)
    assert ALWAYS_OPEN.next_opening(now) is None
    assert ALWAYS_OPEN.closes_at(now) is None


def test_service_never_open_has_no_next_opening():
    never = OpeningHours("Europe/Paris")

    assert not never.is_open(utc(2026, 6, 1, 10))
    assert never.next_opening(utc(2026, 6, 1, 10)) is None


# --------------------------------------------------------------------------- open / closed


def test_open_during_an_interval_and_closed_between_intervals():
    tuesday = (2026, 3, 10)

    assert OFFICE.is_open(paris(*tuesday, 9, 0))
    assert OFFICE.is_open(paris(*tuesday, 11, 59))
    assert not OFFICE.is_open(paris(*tuesday, 12, 0))
    assert not OFFICE.is_open(paris(*tuesday, 13, 0))
    assert OFFICE.is_open(paris(*tuesday, 13, 30))
    assert not OFFICE.is_open(paris(*tuesday, 8, 59))


def test_closed_at_the_weekend():
    assert not OFFICE.is_open(paris(2026, 3, 14, 10, 0))  # Saturday
    assert not OFFICE.is_open(paris(2026, 3, 15, 10, 0))  # Sunday


def test_closes_at_gives_the_end_of_the_current_interval():
    assert OFFICE.closes_at(paris(2026, 3, 10, 10, 0)) == paris(2026, 3, 10, 12, 0)
    assert OFFICE.closes_at(paris(2026, 3, 10, 12, 30)) is None


def test_next_opening_in_the_lunch_break_is_the_afternoon():
    assert OFFICE.next_opening(paris(2026, 3, 10, 12, 15)) == paris(2026, 3, 10, 13, 30)


def test_next_opening_while_open_is_the_following_interval():
    assert OFFICE.next_opening(paris(2026, 3, 10, 9, 0)) == paris(2026, 3, 10, 13, 30)


# --------------------------------------------------------------------------- daylight saving


def test_opens_at_nine_local_on_the_friday_before_the_march_change():
    # 2026-03-27 is in winter time (UTC+1).
    assert OFFICE.is_open(utc(2026, 3, 27, 8, 0))
    assert not OFFICE.is_open(utc(2026, 3, 27, 7, 59))


def test_opens_at_nine_local_on_the_monday_after_the_march_change():
    # Summer time since Sunday 2026-03-29 (UTC+2): 09:00 local is 07:00 UTC.
    assert OFFICE.is_open(utc(2026, 3, 30, 7, 0))
    assert not OFFICE.is_open(utc(2026, 3, 30, 6, 59))


def test_next_opening_from_saturday_evening_over_the_march_change():
    saturday_evening = utc(2026, 3, 28, 17, 0)  # 18:00 local, winter time

    assert OFFICE.next_opening(saturday_evening) == utc(2026, 3, 30, 7, 0)


def test_opens_at_nine_local_on_both_sides_of_the_october_change():
    # Friday 2026-10-23 in summer time (UTC+2); Monday 2026-10-26 in winter time (UTC+1).
    assert OFFICE.is_open(utc(2026, 10, 23, 7, 0))
    assert not OFFICE.is_open(utc(2026, 10, 23, 6, 59))
    assert OFFICE.is_open(utc(2026, 10, 26, 8, 0))
    assert not OFFICE.is_open(utc(2026, 10, 26, 7, 59))


def test_next_opening_from_saturday_evening_over_the_october_change():
    saturday_evening = utc(2026, 10, 24, 16, 0)  # 18:00 local, summer time

    assert OFFICE.next_opening(saturday_evening) == utc(2026, 10, 26, 8, 0)


def test_whole_day_opening_on_the_october_change_lasts_twenty_five_hours():
    sundays = OpeningHours("Europe/Paris", ((),) * 6 + ((parse_interval("00:00-24:00"),),))
    start = utc(2026, 10, 24, 22, 0)  # Sunday 00:00 local, summer time

    assert sundays.is_open(start)
    assert sundays.closes_at(start) == utc(2026, 10, 25, 23, 0)
    assert sundays.closes_at(start) - start == 25 * 3600


def test_whole_day_opening_on_the_march_change_lasts_twenty_three_hours():
    sundays = OpeningHours("Europe/Paris", ((),) * 6 + ((parse_interval("00:00-24:00"),),))
    start = utc(2026, 3, 28, 23, 0)  # Sunday 00:00 local, winter time

    assert sundays.closes_at(start) - start == 23 * 3600


def test_hours_follow_the_service_time_zone():
    reunion = OpeningHours("Indian/Reunion", weekdays("08:00-12:00"))

    assert reunion.is_open(utc(2026, 3, 10, 4, 0))  # 08:00 in Saint-Denis (UTC+4)
    assert not reunion.is_open(utc(2026, 3, 10, 8, 0))  # 12:00 there, 09:00 in Paris


# --------------------------------------------------------------------------- holidays


MAY_DAY = OpeningHours(
    "Europe/Paris",
    weekdays("09:00-12:00"),
    frozenset({date(2026, 5, 1), date(2026, 5, 14)}),
)


def test_holiday_closes_the_whole_day():
    assert not MAY_DAY.is_open(paris(2026, 5, 1, 10, 0))
    assert MAY_DAY.is_open(paris(2026, 4, 30, 10, 0))


def test_next_opening_skips_a_holiday_and_the_weekend():
    thursday_evening = paris(2026, 4, 30, 18, 0)

    assert MAY_DAY.next_opening(thursday_evening) == paris(2026, 5, 4, 9, 0)


def test_next_opening_skips_a_midweek_holiday():
    assert MAY_DAY.next_opening(paris(2026, 5, 13, 12, 0)) == paris(2026, 5, 15, 9, 0)


# --------------------------------------------------------------------------- sparse weeks and 24:00


TUESDAY_AFTERNOONS = OpeningHours(
    "Europe/Paris", ((), (parse_interval("14:00-16:00"),), (), (), (), (), ())
)


def test_service_open_a_few_hours_a_week_opens_next_week_after_closing():
    assert TUESDAY_AFTERNOONS.next_opening(paris(2026, 3, 10, 16, 0)) == paris(2026, 3, 17, 14, 0)


def test_service_open_a_few_hours_a_week_opens_days_later():
    assert TUESDAY_AFTERNOONS.next_opening(paris(2026, 3, 11, 9, 0)) == paris(2026, 3, 17, 14, 0)


def test_service_open_a_few_hours_a_week_same_day_before_opening():
    assert TUESDAY_AFTERNOONS.next_opening(paris(2026, 3, 10, 8, 0)) == paris(2026, 3, 10, 14, 0)


LATE = OpeningHours("Europe/Paris", weekdays("20:00-24:00"))


def test_interval_ending_at_24_00_is_open_until_midnight():
    assert LATE.is_open(paris(2026, 3, 10, 23, 59) + 59)
    assert not LATE.is_open(paris(2026, 3, 11, 0, 0))
    assert LATE.closes_at(paris(2026, 3, 10, 21, 0)) == paris(2026, 3, 11, 0, 0)


def test_interval_ending_at_24_00_on_friday_reopens_on_monday():
    assert LATE.next_opening(paris(2026, 3, 13, 23, 0)) == paris(2026, 3, 16, 20, 0)
