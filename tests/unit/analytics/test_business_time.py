"""Business vs calendar time in the reporting calendar (Shanghai, 09–12 and 13–18, Chinese workdays)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.analytics.business_time import BusinessCalendar

CALENDAR = BusinessCalendar.from_settings("Asia/Shanghai", [("09:00", "12:00"), ("13:00", "18:00")])
SH = ZoneInfo("Asia/Shanghai")


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=SH)  # type: ignore[misc]


def test_a_morning_on_a_workday() -> None:
    assert CALENDAR.seconds_between(at(2026, 3, 2, 9, 30), at(2026, 3, 2, 11, 0)) == 90 * 60


def test_lunch_does_not_count() -> None:
    assert CALENDAR.seconds_between(at(2026, 3, 2, 11, 0), at(2026, 3, 2, 14, 0)) == 2 * 3600


def test_friday_evening_to_monday_morning_is_two_hours() -> None:
    # 17:00–18:00 Friday, nothing at the weekend, 09:00–10:00 Monday.
    assert CALENDAR.seconds_between(at(2026, 3, 6, 17, 0), at(2026, 3, 9, 10, 0)) == 2 * 3600


def test_a_make_up_saturday_counts_as_a_working_day() -> None:
    # Saturday 2026-02-28 is a make-up working day after the Spring Festival: 1 h + 8 h + 1 h.
    assert CALENDAR.seconds_between(at(2026, 2, 27, 17, 0), at(2026, 3, 2, 10, 0)) == 10 * 3600


def test_national_day_holiday_is_closed_and_the_make_up_sunday_is_open() -> None:
    # 2025-10-01…08 is the National Day holiday; Sunday 2025-09-28 was a make-up working day (调休).
    assert CALENDAR.seconds_between(at(2025, 10, 1, 0, 0), at(2025, 10, 9, 0, 0)) == 0
    assert CALENDAR.seconds_between(at(2025, 9, 28, 0, 0), at(2025, 9, 29, 0, 0)) == 8 * 3600


def test_end_before_start_is_zero() -> None:
    assert CALENDAR.seconds_between(at(2026, 3, 2, 12, 0), at(2026, 3, 2, 10, 0)) == 0


def test_intervals_must_be_ordered() -> None:
    with pytest.raises(ValueError):
        BusinessCalendar.from_settings("Asia/Shanghai", [("18:00", "09:00")])


moments = st.datetimes(
    min_value=datetime(2025, 1, 1), max_value=datetime(2026, 12, 1), timezones=st.just(UTC)
)


@given(moments, st.integers(0, 20 * 86400), st.integers(0, 20 * 86400))
def test_business_time_is_additive_and_never_exceeds_calendar_time(start: datetime, a: int, b: int) -> None:
    middle, end = start + timedelta(seconds=a), start + timedelta(seconds=a + b)
    whole = CALENDAR.seconds_between(start, end)
    assert whole == pytest.approx(
        CALENDAR.seconds_between(start, middle) + CALENDAR.seconds_between(middle, end)
    )
    assert 0 <= whole <= (end - start).total_seconds()
