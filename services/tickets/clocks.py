"""SLA clock arithmetic on one clock: start, pause, resume, stop, and its due and warning times.

Plain functions on an `SlaClock` row and a `BusinessCalendar`, so the rules are tested without a server.
Open (business) time is counted only while the clock runs; every start, pause, resume and stop is kept
as a segment so a clock can be explained and recomputed.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from services.tickets.calendars import BusinessCalendar
from services.tickets.models import SlaClock
from shared.clock import utc_iso

RUNNING, PAUSED, STOPPED = "running", "paused", "stopped"


def _open_segment(clock: SlaClock, state: str, at: datetime) -> None:
    clock.segments = [*clock.segments, {"state": state, "start": utc_iso(at), "end": None}]


def _close_segment(clock: SlaClock, at: datetime, **extra: Any) -> None:
    if clock.segments and clock.segments[-1]["end"] is None:
        last = {**clock.segments[-1], "end": utc_iso(at), **extra}
        clock.segments = [*clock.segments[:-1], last]


def start(clock: SlaClock, calendar: BusinessCalendar, at: datetime) -> None:
    clock.state = RUNNING
    clock.started_at = at
    clock.running_since = at
    _open_segment(clock, RUNNING, at)
    recompute(clock, calendar)


def elapsed(clock: SlaClock, calendar: BusinessCalendar, now: datetime) -> timedelta:
    """Open time the clock has run, up to `now`."""
    total = timedelta(seconds=clock.elapsed_seconds)
    if clock.state == RUNNING and clock.running_since is not None:
        total += calendar.open_time_between(clock.running_since, now)
    return total


def paused_time(clock: SlaClock, now: datetime) -> timedelta:
    total = timedelta(seconds=clock.paused_seconds)
    if clock.state == PAUSED and clock.paused_since is not None:
        total += max(now - clock.paused_since, timedelta(0))
    return total


def recompute(clock: SlaClock, calendar: BusinessCalendar) -> None:
    """Due and warning times of a running clock; a paused or stopped clock has none pending."""
    if clock.state != RUNNING or clock.running_since is None:
        if not clock.breached:
            clock.due_at = None
        clock.warn_at = None
        return
    counted = timedelta(seconds=clock.elapsed_seconds)
    if not clock.breached:  # a breached clock keeps the due time it missed
        clock.due_at = calendar.add_open_time(
            clock.running_since, timedelta(seconds=clock.target_seconds) - counted
        )
    clock.warn_at = None
    if clock.warn_after_seconds is not None and not clock.warned and not clock.breached:
        lead = timedelta(seconds=clock.warn_after_seconds) - counted
        clock.warn_at = calendar.add_open_time(clock.running_since, max(lead, timedelta(0)))


def pause(clock: SlaClock, calendar: BusinessCalendar, at: datetime) -> None:
    if clock.state != RUNNING:
        return
    ran = elapsed(clock, calendar, at)
    _close_segment(clock, at, open_seconds=(ran - timedelta(seconds=clock.elapsed_seconds)).total_seconds())
    clock.elapsed_seconds = ran.total_seconds()
    clock.state = PAUSED
    clock.running_since = None
    clock.paused_since = at
    _open_segment(clock, PAUSED, at)
    recompute(clock, calendar)


def resume(clock: SlaClock, calendar: BusinessCalendar, at: datetime) -> None:
    if clock.state != PAUSED:
        return
    _close_segment(clock, at)
    clock.paused_seconds = paused_time(clock, at).total_seconds()
    clock.paused_since = None
    clock.state = RUNNING
    clock.running_since = at
    _open_segment(clock, RUNNING, at)
    recompute(clock, calendar)


def stop(clock: SlaClock, calendar: BusinessCalendar, at: datetime) -> bool:
    """Stop the clock; True when it met its target (stopped before breaching)."""
    if clock.state == STOPPED:
        return False
    if clock.state == RUNNING:
        ran = elapsed(clock, calendar, at)
        _close_segment(
            clock, at, open_seconds=(ran - timedelta(seconds=clock.elapsed_seconds)).total_seconds()
        )
        clock.elapsed_seconds = ran.total_seconds()
    else:
        _close_segment(clock, at)
        clock.paused_seconds = paused_time(clock, at).total_seconds()
    clock.state = STOPPED
    clock.running_since = None
    clock.paused_since = None
    clock.stopped_at = at
    clock.warn_at = None
    return not clock.breached


def state_of(clock: SlaClock) -> str:
    """What a person sees: running, paused, met or breached."""
    if clock.breached:
        return "breached"
    if clock.state == STOPPED:
        return "met"
    return clock.state
