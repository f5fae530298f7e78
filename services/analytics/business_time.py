"""Business time: seconds between two instants counted only while the reporting calendar is open.

Working days follow China's statutory calendar (`chinesecalendar`, with the make-up working days, 调休);
outside the years that package covers, Monday–Friday. Each working day is open in the configured
intervals (by default 09:00–12:00 and 13:00–18:00) in the calendar's time zone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import chinese_calendar


def _is_workday(day: date) -> bool:
    try:
        return bool(chinese_calendar.is_workday(day))
    except NotImplementedError:  # year not covered by the package
        return day.weekday() < 5


@dataclass(frozen=True)
class BusinessCalendar:
    zone: ZoneInfo
    intervals: tuple[tuple[time, time], ...]

    @classmethod
    def from_settings(cls, zone: str, hours: list[tuple[str, str]]) -> BusinessCalendar:
        intervals = tuple(sorted((time.fromisoformat(a), time.fromisoformat(b)) for a, b in hours))
        if any(start >= end for start, end in intervals):
            raise ValueError("each business interval must end after it starts")
        return cls(ZoneInfo(zone), intervals)

    def seconds_between(self, start: datetime, end: datetime) -> float:
        """Open seconds in [start, end); 0 when end is not after start."""
        if end <= start:
            return 0.0
        total = timedelta()  # exact (microseconds), whatever the order days are added in
        day = start.astimezone(self.zone).date()
        last = end.astimezone(self.zone).date()
        # In one time zone object (the intervals' too), comparisons and differences need no offsets.
        start, end = start.astimezone(UTC), end.astimezone(UTC)
        while day <= last:
            intervals, whole = _open_intervals(self, day)
            if intervals and start <= intervals[0][0] and intervals[-1][1] <= end:
                total += whole  # a day the span covers entirely
            else:
                for opens, closes in intervals:
                    lo, hi = max(start, opens), min(end, closes)
                    if hi > lo:
                        total += hi - lo
            day += timedelta(days=1)
        return total.total_seconds()


@lru_cache(maxsize=8192)
def _open_intervals(
    calendar: BusinessCalendar, day: date
) -> tuple[tuple[tuple[datetime, datetime], ...], timedelta]:
    """A day's open intervals as UTC instants, and their total length.

    The projector asks this for every duration it folds, mostly about the same recent days; the
    statutory calendar's lookup and the zone arithmetic are the costly part, so a day is worked out once.
    """
    if not _is_workday(day):
        return (), timedelta()
    intervals = tuple(
        (
            datetime.combine(day, a, calendar.zone).astimezone(UTC),
            datetime.combine(day, b, calendar.zone).astimezone(UTC),
        )
        for a, b in calendar.intervals
    )
    return intervals, sum((hi - lo for lo, hi in intervals), timedelta())
