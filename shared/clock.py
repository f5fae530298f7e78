"""The one clock every service reads, so tests can hold time still or move it."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    """Wall-clock time in UTC."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class FrozenClock:
    """A clock that only moves when told to; for tests and replays."""

    def __init__(self, at: datetime) -> None:
        if at.tzinfo is None:
            raise ValueError("FrozenClock needs an aware datetime")
        self._now = at

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta) -> datetime:
        self._now += delta
        return self._now

    def set(self, at: datetime) -> None:
        self._now = at


def utc_iso(moment: datetime) -> str:
    """ISO 8601 in UTC with a `Z`, the only timestamp form the contracts use."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


async def sleep_until_set(event: asyncio.Event, seconds: float) -> bool:
    """Sleep until `event` is set or `seconds` pass; True if woken by the event.

    Unlike `asyncio.wait_for` on Python 3.11, a cancellation that lands as the event fires is never lost,
    so a task sleeping here always stops when cancelled.
    """
    try:
        async with asyncio.timeout(seconds):
            await event.wait()
    except TimeoutError:
        return False
    return True
