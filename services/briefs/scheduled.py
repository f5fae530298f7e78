"""Timed work: a milestone whose due time passes undelivered is marked missed and its miss published."""

from __future__ import annotations

import uuid

from services.briefs import traffic
from shared.timers import DueTimer, TimerContext, TimerHandlers

timer_handlers = TimerHandlers()


@timer_handlers.on(traffic.MILESTONE_DUE)
async def milestone_due(ctx: TimerContext, timer: DueTimer) -> None:
    try:
        milestone_id = uuid.UUID(timer.subject)
    except ValueError:
        return  # not a milestone id: nothing this service ever scheduled, so nothing to do
    await traffic.mark_missed(ctx.session, milestone_id, outbox=ctx.outbox, clock=ctx.clock, late=timer.late)
