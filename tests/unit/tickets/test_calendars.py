"""Calendar arithmetic: properties that hold for every calendar, and China's holidays and make-up days."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.tickets.calendars import BusinessCalendar, CalendarError

SHANGHAI_OFFICE = BusinessCalendar.build(
    always_open=False,
    timezone="Asia/Shanghai",
    hours={d: [["09:00", "12:00"], ["13:30", "18:00"]] for d in ("mon", "tue", "wed", "thu", "fri")},
    china_holidays=True,
    name="Shanghai office",
)
NIGHT_SHIFT = BusinessCalendar.build(
    always_open=False,
    timezone="Europe/Berlin",  # DST changes in March and October
    hours={
        "mon": [["22:00", "06:00"]],
        "wed": [["20:00", "02:00"], ["08:00", "09:30"]],
        "sat": [["00:00", "23:59"]],
    },
    holidays=[date(2026, 12, 25)],
    name="night shift",
)
NEW_YORK = BusinessCalendar.build(
    always_open=False,
    timezone="America/New_York",
    hours={d: [["01:30", "03:30"], ["09:00", "17:00"]] for d in ("sun", "mon", "tue", "wed", "thu", "fri")},
    working_days=[date(2026, 3, 14)],
)
TWENTY_FOUR_SEVEN = BusinessCalendar.build(always_open=True)
CALENDARS = [SHANGHAI_OFFICE, NIGHT_SHIFT, NEW_YORK, TWENTY_FOUR_SEVEN]

moments = st.datetimes(
    min_value=datetime(2025, 12, 20), max_value=datetime(2027, 2, 1), timezones=st.just(UTC)
)
durations = st.integers(min_value=0, max_value=200 * 3600).map(lambda s: timedelta(seconds=s))
calendars = st.sampled_from(CALENDARS)


@settings(max_examples=150, deadline=None)
@given(calendars, moments, durations, durations)
def test_adding_open_time_is_monotone(
    calendar: BusinessCalendar, start: datetime, a: timedelta, b: timedelta
) -> None:
    small, large = sorted((a, b))
    assert calendar.add_open_time(start, small) <= calendar.add_open_time(start, large)


@settings(max_examples=150, deadline=None)
@given(calendars, moments, durations, durations)
def test_splitting_a_duration_in_two_adds_up(
    calendar: BusinessCalendar, start: datetime, a: timedelta, b: timedelta
) -> None:
    assert calendar.add_open_time(calendar.add_open_time(start, a), b) == calendar.add_open_time(start, a + b)


@settings(max_examples=150, deadline=None)
@given(calendars, moments, durations)
def test_measuring_undoes_adding(calendar: BusinessCalendar, start: datetime, amount: timedelta) -> None:
    due = calendar.add_open_time(start, amount)
    assert due >= start
    assert calendar.open_time_between(start, due) == amount


@settings(max_examples=150, deadline=None)
@given(calendars, moments, durations, durations, durations)
def test_pausing_never_brings_a_due_time_earlier(
    calendar: BusinessCalendar, start: datetime, target: timedelta, run: timedelta, paused: timedelta
) -> None:
    pause_at = start + run
    elapsed = calendar.open_time_between(start, pause_at)
    resume_at = pause_at + paused
    remaining = max(target - elapsed, timedelta(0))
    due_with_pause = calendar.add_open_time(resume_at, remaining)
    if elapsed < target:
        assert due_with_pause >= calendar.add_open_time(start, target)


def test_a_business_day_with_a_lunch_break_in_shanghai() -> None:
    monday_0830 = datetime(2026, 3, 2, 0, 30, tzinfo=UTC)  # 08:30 in Shanghai
    # 3 h morning + 1 h after lunch → 14:30 Shanghai = 06:30 UTC
    assert SHANGHAI_OFFICE.add_open_time(monday_0830, timedelta(hours=4)) == datetime(
        2026, 3, 2, 6, 30, tzinfo=UTC
    )
    assert SHANGHAI_OFFICE.open_time_between(monday_0830, datetime(2026, 3, 2, 12, tzinfo=UTC)) == timedelta(
        hours=7, minutes=30
    )


def test_national_day_week_is_closed_and_the_make_up_saturday_is_open() -> None:
    # 2025: 1–8 October are holidays; Sunday 28 September and Saturday 11 October are make-up working days.
    assert SHANGHAI_OFFICE.day_hours(date(2025, 10, 3))[0] == ()
    assert "statutory holiday" in (SHANGHAI_OFFICE.day_hours(date(2025, 10, 3))[1] or "")
    assert SHANGHAI_OFFICE.day_hours(date(2025, 10, 11))[0] != ()
    assert SHANGHAI_OFFICE.day_hours(date(2025, 10, 12))[0] == ()
    before_holiday = datetime(2025, 9, 30, 9, 0, tzinfo=UTC)  # 17:00 Tuesday in Shanghai
    # 1 h left on 30 Sep, then nothing until Thursday 9 October 09:00 (8 Oct is the last holiday).
    due = SHANGHAI_OFFICE.add_open_time(before_holiday, timedelta(hours=2))
    assert due == datetime(2025, 10, 9, 2, 0, tzinfo=UTC)


def test_a_year_the_holiday_package_does_not_cover_falls_back_to_weekday_hours() -> None:
    start = datetime(2031, 10, 1, 1, 0, tzinfo=UTC)  # a Wednesday
    assert SHANGHAI_OFFICE.add_open_time(start, timedelta(hours=1)) == datetime(2031, 10, 1, 2, 0, tzinfo=UTC)
    notes = SHANGHAI_OFFICE.explain(start, start + timedelta(days=1))
    assert any("2031" in note and "not in the holiday package" in note for note in notes)


def test_an_interval_across_midnight_counts_on_both_sides() -> None:
    monday_2100_berlin = datetime(2026, 6, 1, 19, 0, tzinfo=UTC)
    # Open 22:00 Monday → 06:00 Tuesday (Berlin summer time = UTC+2): 3 h after opening is 01:00 Tuesday.
    assert NIGHT_SHIFT.add_open_time(monday_2100_berlin, timedelta(hours=3)) == datetime(
        2026, 6, 1, 23, 0, tzinfo=UTC
    )
    assert NIGHT_SHIFT.open_time_between(
        monday_2100_berlin, datetime(2026, 6, 2, 12, tzinfo=UTC)
    ) == timedelta(hours=8)


def test_the_dst_night_has_one_hour_less() -> None:
    # Sunday 8 March 2026 New York springs forward at 02:00: 01:30–03:30 local is one real hour.
    sunday = datetime(2026, 3, 8, 5, 0, tzinfo=UTC)  # 00:00 local
    assert NEW_YORK.open_time_between(sunday, sunday + timedelta(hours=4)) == timedelta(hours=1)


def test_explicit_holidays_and_extra_working_days() -> None:
    assert NIGHT_SHIFT.day_hours(date(2026, 12, 25))[0] == ()
    assert NEW_YORK.day_hours(date(2026, 3, 14))[1] == "extra working day"


def test_unusable_calendars_are_refused() -> None:
    with pytest.raises(CalendarError):
        BusinessCalendar.build(always_open=False, hours={})
    with pytest.raises(CalendarError):
        BusinessCalendar.build(
            always_open=False, timezone="Mars/Olympus", hours={"mon": [["09:00", "10:00"]]}
        )
    with pytest.raises(CalendarError):
        BusinessCalendar.build(always_open=False, hours={"funday": [["09:00", "10:00"]]})
