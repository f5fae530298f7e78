"""Timed work of tickets: follow-up visits falling due, auto-close of resolved tickets, gauges."""

from __future__ import annotations

import uuid
from datetime import timedelta

import sqlalchemy as sa

from services.tickets import sla
from services.tickets.lifecycle import Action
from services.tickets.metrics import OPEN_TICKETS
from services.tickets.models import Ticket
from services.tickets.service import AUTO_CLOSE, FOLLOW_UP, Desk
from services.tickets.settings import config
from services.tickets.snapshots import snapshot
from shared.contracts.tickets import FollowUpDue, TicketStatus
from shared.timers import DueTimer, TimerContext

timer_handlers = sla.timer_handlers
GAUGES = "tickets.gauges"


@timer_handlers.on(FOLLOW_UP)
async def follow_up_due(ctx: TimerContext, timer: DueTimer) -> None:
    ticket = await ctx.session.get(Ticket, uuid.UUID(timer.subject), with_for_update=True)
    if ticket is None or ticket.follow_up_done_at is not None or ticket.resolved_at is None:
        return
    await ctx.publish(
        "tickets.follow_up.due.v1",
        FollowUpDue(ticket=snapshot(ticket), due_at=timer.due_at, resolved_at=ticket.resolved_at),
        subject=str(ticket.id),
    )


@timer_handlers.on(AUTO_CLOSE)
async def auto_close(ctx: TimerContext, timer: DueTimer) -> None:
    ticket = await ctx.session.get(Ticket, uuid.UUID(timer.subject), with_for_update=True)
    if ticket is None or ticket.status != TicketStatus.RESOLVED:
        return
    desk = Desk(ctx.session, ctx.outbox, ctx.clock, ctx.timers, config())
    await desk.act(ticket, Action.CLOSE, "auto-close")


@timer_handlers.on(GAUGES)
async def refresh_gauges(ctx: TimerContext, timer: DueTimer) -> None:
    """Open tickets by status, counted on the status index once a minute (not an SLA scan)."""
    rows = (
        await ctx.session.execute(
            sa.select(Ticket.status, sa.func.count())
            .where(Ticket.status != TicketStatus.CLOSED)
            .group_by(Ticket.status)
        )
    ).all()
    counts = dict(rows)
    for status in TicketStatus:
        if status != TicketStatus.CLOSED:
            OPEN_TICKETS.labels(status.value).set(counts.get(status.value, 0))
    await ctx.timers.schedule(
        ctx.session,
        kind=GAUGES,
        subject="open_tickets",
        due_at=ctx.clock.now() + timedelta(seconds=config().gauge_refresh_seconds),
    )
