"""The agency's working hours: China's working days (with 调休 make-up days) and office hours in Shanghai."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import chinese_calendar

AGENCY_TZ = ZoneInfo("Asia/Shanghai")
# Office hours with the lunch break: 8 working hours a day.
OFFICE_HOURS: tuple[tuple[time, time], ...] = ((time(9), time(12)), (time(13), time(18)))


def is_working_day(day: date) -> bool:
    """Statutory holidays and make-up working days where the package knows the year, Mon–Fri otherwise."""
    try:
        return bool(chinese_calendar.is_workday(day))
    except NotImplementedError:  # the package covers 2004–2026; beyond it, plain weekdays
        return day.weekday() < 5


def add_working_hours(start: datetime, hours: float) -> datetime:
    """The moment `hours` working hours after `start` (aware), counting only office hours on working days."""
    if start.tzinfo is None:
        raise ValueError("add_working_hours needs an aware datetime")
    remaining = timedelta(hours=hours)
    cursor = start.astimezone(AGENCY_TZ)
    for _ in range(3700):  # ten years of days: far beyond any deadline this is used for
        day = cursor.date()
        if is_working_day(day):
            for opens, closes in OFFICE_HOURS:
                window_start = max(cursor, datetime.combine(day, opens, AGENCY_TZ))
                window_end = datetime.combine(day, closes, AGENCY_TZ)
                if window_start >= window_end:
                    continue
                available = window_end - window_start
                if remaining <= available:
                    return (window_start + remaining).astimezone(start.tzinfo)
                remaining -= available
        cursor = datetime.combine(day + timedelta(days=1), time(0), AGENCY_TZ)
    raise ValueError("working hours beyond ten years")


def working_hours_between(start: datetime, end: datetime) -> float:
    """Office hours on working days between two moments (0 when `end` is not after `start`)."""
    if end <= start:
        return 0.0
    total = timedelta()
    cursor = start.astimezone(AGENCY_TZ)
    stop = end.astimezone(AGENCY_TZ)
    while cursor < stop:
        day = cursor.date()
        if is_working_day(day):
            for opens, closes in OFFICE_HOURS:
                lo = max(cursor, datetime.combine(day, opens, AGENCY_TZ))
                hi = min(stop, datetime.combine(day, closes, AGENCY_TZ))
                if hi > lo:
                    total += hi - lo
        cursor = datetime.combine(day + timedelta(days=1), time(0), AGENCY_TZ)
    return total.total_seconds() / 3600
