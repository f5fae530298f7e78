"""Business time: seconds between two instants counted only while the reporting calendar is open.

Working days follow China's statutory calendar (`chinesecalendar`, with the make-up working days, 调休);
outside the years that package covers, Monday–Friday. Each working day is open in the configured
intervals (by default 09:00–12:00 and 13:00–18:00) in the calendar's time zone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
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
        total = 0.0
        day = start.astimezone(self.zone).date()
        last = end.astimezone(self.zone).date()
        while day <= last:
            if _is_workday(day):
                for open_at, close_at in self.intervals:
                    lo = max(start, datetime.combine(day, open_at, self.zone))
                    hi = min(end, datetime.combine(day, close_at, self.zone))
                    if hi > lo:
                        total += (hi - lo).total_seconds()
            day += timedelta(days=1)
        return total
