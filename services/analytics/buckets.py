"""Time buckets (day, week, month) in a requested time zone, and the windows queries default to."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from shared.errors import Problem


class Grain(StrEnum):
    DAY = "day"
    WEEK = "week"
    MONTH = "month"


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise Problem(422, f"Unknown time zone {name!r}.", slug="invalid-time-zone") from None


def bucket_start(moment: datetime, grain: Grain, tz: ZoneInfo) -> date:
    """The local date that starts `moment`'s bucket (Monday for weeks, the 1st for months)."""
    local = moment.astimezone(tz).date()
    if grain is Grain.WEEK:
        return local - timedelta(days=local.weekday())
    if grain is Grain.MONTH:
        return local.replace(day=1)
    return local


def next_bucket(start: date, grain: Grain) -> date:
    if grain is Grain.DAY:
        return start + timedelta(days=1)
    if grain is Grain.WEEK:
        return start + timedelta(days=7)
    return (start.replace(day=28) + timedelta(days=4)).replace(day=1)


def bucket_starts(since: datetime, until: datetime, grain: Grain, tz: ZoneInfo) -> list[date]:
    """Every bucket touching [since, until), in order (empty buckets included, so charts have no gaps)."""
    starts = []
    current = bucket_start(since, grain, tz)
    while datetime.combine(current, time(), tz) < until:
        starts.append(current)
        current = next_bucket(current, grain)
    return starts


def local_midnight(day: date, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, time(), tz)


def window(
    since: datetime | None, until: datetime | None, now: datetime, *, max_days: int = 1200
) -> tuple[datetime, datetime]:
    """The [since, until) a report covers: the last 30 days by default, at most `max_days` long."""
    until = until or now
    since = since or until - timedelta(days=30)
    for value in (since, until):
        if value.tzinfo is None:
            raise Problem(422, "Timestamps need a time zone (e.g. a trailing Z).", slug="naive-timestamp")
    if since >= until:
        raise Problem(422, "since must be before until.", slug="invalid-window")
    if until - since > timedelta(days=max_days):
        raise Problem(422, f"A report covers at most {max_days} days.", slug="window-too-long")
    return since, until
