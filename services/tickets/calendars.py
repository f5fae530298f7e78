"""Business calendars: when the clock counts, and arithmetic on open time (add, measure) across days.

A calendar is 24×7, or business hours per weekday (several intervals a day; an interval whose end is not
after its start runs past midnight) in a time zone, with explicit holidays and extra working days, and
optionally China's statutory holidays and make-up working days (调休) from `chinese_calendar`. For years
that package does not cover, days fall back to their weekday hours and `explain()` says so.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import chinese_calendar

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
ZERO = timedelta(0)
# A calendar with no open time at all would make a due time infinite; stop looking after this long.
HORIZON_DAYS = 366 * 5

Interval = tuple[time, time]


class CalendarError(ValueError):
    """A calendar that cannot be used (no open time, bad time zone, bad interval)."""


def parse_hours(raw: Mapping[str, Sequence[Sequence[str]]]) -> dict[int, tuple[Interval, ...]]:
    """`{"mon": [["09:00", "12:00"], ["13:30", "18:00"]], ...}` → weekday index → intervals."""
    hours: dict[int, tuple[Interval, ...]] = {}
    for name, intervals in raw.items():
        if name not in WEEKDAYS:
            raise CalendarError(f"unknown weekday {name!r}; use {', '.join(WEEKDAYS)}")
        parsed = []
        for interval in intervals:
            if len(interval) != 2:
                raise CalendarError(f"{name}: an interval is [start, end]")
            try:
                start, end = time.fromisoformat(interval[0]), time.fromisoformat(interval[1])
            except ValueError:
                raise CalendarError(f"{name}: times are HH:MM") from None
            if start == end:
                raise CalendarError(f"{name}: an interval must not be empty")
            parsed.append((start, end))
        hours[WEEKDAYS.index(name)] = tuple(sorted(parsed))
    return hours


@dataclass(frozen=True)
class BusinessCalendar:
    """Open time for SLA clocks. `always_open` means 24×7 (the time zone is then irrelevant)."""

    always_open: bool = True
    timezone: str = "UTC"
    hours: tuple[tuple[int, tuple[Interval, ...]], ...] = ()
    holidays: frozenset[date] = frozenset()
    working_days: frozenset[date] = frozenset()
    china_holidays: bool = False
    name: str = "24×7"
    _zone: ZoneInfo = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "_zone", ZoneInfo(self.timezone))
        except Exception:
            raise CalendarError(f"unknown time zone {self.timezone!r}") from None
        if not self.always_open and not any(intervals for _, intervals in self.hours):
            raise CalendarError("business hours need at least one open interval in the week")

    @classmethod
    def build(
        cls,
        *,
        always_open: bool,
        timezone: str = "UTC",
        hours: Mapping[str, Sequence[Sequence[str]]] | None = None,
        holidays: Sequence[date] = (),
        working_days: Sequence[date] = (),
        china_holidays: bool = False,
        name: str = "",
    ) -> BusinessCalendar:
        parsed = parse_hours(hours or {})
        return cls(
            always_open=always_open,
            timezone=timezone,
            hours=tuple(sorted(parsed.items())),
            holidays=frozenset(holidays),
            working_days=frozenset(working_days),
            china_holidays=china_holidays,
            name=name or ("24×7" if always_open else "business hours"),
        )

    # --- which days are open, and when -------------------------------------------------------------

    @functools.cached_property
    def _weekly(self) -> dict[int, tuple[Interval, ...]]:
        return dict(self.hours)

    @functools.cached_property
    def _make_up_hours(self) -> tuple[Interval, ...]:
        # A make-up working day (a weekend worked in exchange for a holiday) keeps ordinary weekday hours.
        for weekday in range(5):
            if self._weekly.get(weekday):
                return self._weekly[weekday]
        return next((iv for _, iv in self.hours if iv), ())

    def day_hours(self, day: date) -> tuple[tuple[Interval, ...], str | None]:
        """The local open intervals of `day`, and why if they differ from its weekday's."""
        weekly = self._weekly.get(day.weekday(), ())
        if day in self.holidays:
            return (), "holiday"
        if day in self.working_days:
            return self._make_up_hours, "extra working day"
        if self.china_holidays:
            try:
                on_holiday, holiday_name = chinese_calendar.get_holiday_detail(day)
            except NotImplementedError:
                return weekly, "not covered by the holiday package: weekday hours"
            if on_holiday and holiday_name is not None:
                return (), f"statutory holiday ({holiday_name})"
            if not on_holiday and day.weekday() >= 5:
                return self._make_up_hours, "make-up working day (调休)"
        return weekly, None

    def _day_intervals_utc(self, day: date) -> list[tuple[datetime, datetime]]:
        return _cached_day_intervals(self, day)

    def open_intervals(
        self, start: datetime, end: datetime | None = None
    ) -> Iterator[tuple[datetime, datetime]]:
        """Open intervals in UTC, in order, clipped to start at `start` (and end at `end` if given)."""
        start = _utc(start)
        if self.always_open:
            yield start, (end if end is not None else datetime.max.replace(tzinfo=UTC))
            return
        # Begin a day early: yesterday's interval may run past midnight into today.
        day = start.astimezone(self._zone).date() - timedelta(days=1)
        last_day = day + timedelta(days=HORIZON_DAYS)
        cursor = start  # never yield time twice when one day's late interval overlaps the next day's
        while day <= last_day:
            for open_at, close_at in self._day_intervals_utc(day):
                if close_at <= cursor:
                    continue
                if end is not None and open_at >= end:
                    return
                clipped_end = close_at if end is None else min(close_at, end)
                yield max(open_at, cursor), clipped_end
                cursor = clipped_end
            day += timedelta(days=1)
        if end is None:
            raise CalendarError(f"calendar {self.name!r} has no open time within {HORIZON_DAYS} days")

    # --- arithmetic ---------------------------------------------------------------------------------

    def open_time_between(self, start: datetime, end: datetime) -> timedelta:
        """How much open time lies in [start, end)."""
        start, end = _utc(start), _utc(end)
        if end <= start:
            return ZERO
        if self.always_open:
            return end - start
        total = ZERO
        for open_at, close_at in self.open_intervals(start, end):
            total += close_at - open_at
        return total

    def add_open_time(self, start: datetime, amount: timedelta) -> datetime:
        """The earliest moment by which `amount` of open time has passed since `start`."""
        start = _utc(start)
        if amount <= ZERO:
            return start
        if self.always_open:
            return start + amount
        remaining = amount
        for open_at, close_at in self.open_intervals(start):
            span = close_at - open_at
            if remaining <= span:
                return open_at + remaining
            remaining -= span
        raise CalendarError(f"calendar {self.name!r} has no open time")  # pragma: no cover

    def explain(self, start: datetime, end: datetime) -> list[str]:
        """Notes on days in [start, end] that are not ordinary (holidays, make-up days, uncovered years)."""
        if self.always_open:
            return []
        notes: list[str] = []
        day = _utc(start).astimezone(self._zone).date()
        last = _utc(end).astimezone(self._zone).date()
        uncovered: set[int] = set()
        while day <= last and len(notes) < 60:
            _, reason = self.day_hours(day)
            if reason and reason.startswith("not covered"):
                uncovered.add(day.year)
            elif reason:
                notes.append(f"{day.isoformat()}: {reason}")
            day += timedelta(days=1)
        for year in sorted(uncovered):
            notes.append(
                f"{year}: China's holidays for this year are not in the holiday package yet; "
                "ordinary weekday hours are used"
            )
        return notes


@functools.lru_cache(maxsize=65_536)
def _cached_day_intervals(calendar: BusinessCalendar, day: date) -> list[tuple[datetime, datetime]]:
    intervals, _ = calendar.day_hours(day)
    zone = ZoneInfo(calendar.timezone)
    result = []
    for opens, closes in intervals:
        open_at = datetime.combine(day, opens, tzinfo=zone).astimezone(UTC)
        close_day = day if closes > opens else day + timedelta(days=1)
        close_at = datetime.combine(close_day, closes, tzinfo=zone).astimezone(UTC)
        if close_at > open_at:  # a DST jump can swallow a short interval
            result.append((open_at, close_at))
    # Merge overlaps (an interval past midnight may meet the next day's first one).
    result.sort()
    merged: list[tuple[datetime, datetime]] = []
    for open_at, close_at in result:
        if merged and open_at <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], close_at))
        else:
            merged.append((open_at, close_at))
    return merged


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("calendar arithmetic needs aware datetimes")
    return moment.astimezone(UTC)


ALWAYS_OPEN = BusinessCalendar()
