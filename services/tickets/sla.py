"""The SLA engine against the database: policies for tickets, clocks with timers, warnings and breaches."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from services.tickets import clocks, policies
from services.tickets.calendars import ALWAYS_OPEN, BusinessCalendar
from services.tickets.metrics import SLA_BREACHES, SLA_WARNINGS
from services.tickets.models import Calendar, SlaClock, SlaPolicy, Ticket, TicketHistory
from services.tickets.snapshots import snapshot
from shared.contracts.tickets import (
    SlaBreached,
    SlaMet,
    SlaMetric,
    SlaTarget,
    SlaWarning,
    TicketEscalated,
)
from shared.outbox import Outbox
from shared.timers import DueTimer, TimerContext, TimerHandlers, Timers

WARNING, BREACH = "sla.warning", "sla.breach"
timer_handlers = TimerHandlers()


def to_calendar(row: Calendar | None) -> BusinessCalendar:
    if row is None:
        return ALWAYS_OPEN
    return BusinessCalendar.build(
        always_open=row.always_open,
        timezone=row.timezone,
        hours=row.hours,
        holidays=[date.fromisoformat(d) for d in row.holidays],
        working_days=[date.fromisoformat(d) for d in row.working_days],
        china_holidays=row.china_holidays,
        name=row.name,
    )


async def calendar_for(session: AsyncSession, calendar_id: uuid.UUID | None) -> BusinessCalendar:
    if calendar_id is None:
        return ALWAYS_OPEN
    return to_calendar(await session.get(Calendar, calendar_id))


async def policy_of(session: AsyncSession, ticket: Ticket) -> SlaPolicy | None:
    return await session.get(SlaPolicy, ticket.policy_id) if ticket.policy_id else None


async def match_policy(session: AsyncSession, ticket: Ticket) -> SlaPolicy | None:
    rows = (await session.execute(sa.select(SlaPolicy).where(SlaPolicy.active))).scalars().all()
    return policies.first_match(rows, ticket)


async def clocks_of(
    session: AsyncSession, ticket_id: uuid.UUID, *, open_only: bool = False
) -> list[SlaClock]:
    query = sa.select(SlaClock).where(SlaClock.ticket_id == ticket_id)
    if open_only:
        query = query.where(SlaClock.state != clocks.STOPPED)
    return list((await session.execute(query.order_by(SlaClock.started_at, SlaClock.metric))).scalars())


async def sync_timers(session: AsyncSession, timers: Timers, clock: SlaClock) -> None:
    """The clock's persisted due and warning timers follow its state."""
    subject = str(clock.id)
    payload = {"ticket_id": str(clock.ticket_id), "metric": clock.metric, "cycle": clock.cycle}
    if clock.state == clocks.RUNNING and not clock.breached and clock.due_at is not None:
        await timers.schedule(session, kind=BREACH, subject=subject, due_at=clock.due_at, payload=payload)
    else:
        await timers.cancel(session, kind=BREACH, subject=subject)
    if clock.state == clocks.RUNNING and clock.warn_at is not None and not clock.warned:
        await timers.schedule(session, kind=WARNING, subject=subject, due_at=clock.warn_at, payload=payload)
    else:
        await timers.cancel(session, kind=WARNING, subject=subject)


def refresh_ticket_sla(ticket: Ticket, open_clocks: list[SlaClock]) -> None:
    """Keep the list filters' columns current: the next due time and whether a clock is at risk."""
    running = [c for c in open_clocks if c.state == clocks.RUNNING and not c.breached and c.due_at]
    ticket.next_due_at = min((c.due_at for c in running if c.due_at), default=None)
    ticket.sla_at_risk = any(c.warned for c in running)


async def start_clock(
    session: AsyncSession,
    ticket: Ticket,
    policy: SlaPolicy | None,
    metric: str,
    *,
    timers: Timers,
    now: datetime,
    cycle: int = 1,
) -> SlaClock | None:
    if policy is None or not policy.targets.get(metric):
        return None
    target = int(policy.targets[metric])
    clock = SlaClock(
        ticket_id=ticket.id,
        metric=metric,
        cycle=cycle,
        target_seconds=target,
        warn_after_seconds=policies.warn_after(policy, target),
        calendar_id=policy.calendar_id,
        started_at=now,
    )
    calendar = await calendar_for(session, policy.calendar_id)
    clocks.start(clock, calendar, now)
    if policies.pauses_in(policy, metric, ticket.status):
        clocks.pause(clock, calendar, now)
    session.add(clock)
    await session.flush()
    await sync_timers(session, timers, clock)
    return clock


async def start_ticket_clocks(
    session: AsyncSession, ticket: Ticket, *, timers: Timers, now: datetime
) -> tuple[SlaPolicy | None, list[SlaTarget]]:
    policy = await match_policy(session, ticket)
    ticket.policy_id = policy.id if policy else None
    ticket.policy_name = policy.name if policy else None
    started = []
    for metric in ("first_response", "resolution"):
        clock = await start_clock(session, ticket, policy, metric, timers=timers, now=now)
        if clock is not None:
            started.append(clock)
    refresh_ticket_sla(ticket, started)
    targets = [
        SlaTarget(
            metric=SlaMetric(c.metric),
            target_seconds=c.target_seconds,
            due_at=c.due_at,
            calendar_id=c.calendar_id,
        )
        for c in started
        if c.due_at is not None
    ]
    return policy, targets


def _outcome_fields(
    ticket: Ticket, clock: SlaClock, calendar: BusinessCalendar, at: datetime
) -> dict[str, Any]:
    return {
        "ticket": snapshot(ticket),
        "policy_id": ticket.policy_id,
        "policy_name": ticket.policy_name,
        "metric": SlaMetric(clock.metric),
        "target_seconds": clock.target_seconds,
        "due_at": clock.due_at or at,
        "cycle": clock.cycle,
        "business_seconds": int(clocks.elapsed(clock, calendar, at).total_seconds()),
        "calendar_seconds": int((at - clock.started_at).total_seconds()),
        "calendar_id": clock.calendar_id,
    }


async def stop_clocks(
    session: AsyncSession,
    ticket: Ticket,
    metrics: set[str],
    *,
    timers: Timers,
    outbox: Outbox,
    now: datetime,
) -> None:
    """Stop the ticket's open clocks for `metrics`; each one stopped in time publishes `sla.met`."""
    open_clocks = await clocks_of(session, ticket.id, open_only=True)
    for clock in open_clocks:
        if clock.metric not in metrics:
            continue
        calendar = await calendar_for(session, clock.calendar_id)
        fields = _outcome_fields(ticket, clock, calendar, now)
        if clocks.stop(clock, calendar, now):
            await outbox.add(
                session,
                "tickets.sla.met.v1",
                SlaMet(**fields, met_at=now, elapsed_seconds=max(0, fields["business_seconds"])),
                subject=str(ticket.id),
            )
        await sync_timers(session, timers, clock)
    refresh_ticket_sla(ticket, [c for c in open_clocks if c.state != clocks.STOPPED])


async def follow_status(session: AsyncSession, ticket: Ticket, *, timers: Timers, now: datetime) -> None:
    """Pause clocks whose metric pauses in the ticket's new status; resume the others."""
    policy = await policy_of(session, ticket)
    open_clocks = await clocks_of(session, ticket.id, open_only=True)
    for clock in open_clocks:
        calendar = await calendar_for(session, clock.calendar_id)
        if policies.pauses_in(policy, clock.metric, ticket.status):
            clocks.pause(clock, calendar, now)
        else:
            clocks.resume(clock, calendar, now)
        await sync_timers(session, timers, clock)
    refresh_ticket_sla(ticket, open_clocks)


async def retarget(session: AsyncSession, ticket: Ticket, *, timers: Timers) -> None:
    """After a priority or category change, running clocks take the targets of the policy now matching."""
    policy = await match_policy(session, ticket)
    if policy is None or policy.id == ticket.policy_id:
        return
    ticket.policy_id, ticket.policy_name = policy.id, policy.name
    open_clocks = await clocks_of(session, ticket.id, open_only=True)
    for clock in open_clocks:
        target = policy.targets.get(clock.metric)
        if not target or clock.breached:
            continue
        clock.target_seconds = int(target)
        clock.warn_after_seconds = policies.warn_after(policy, int(target))
        clocks.recompute(clock, await calendar_for(session, clock.calendar_id))
        await sync_timers(session, timers, clock)
    refresh_ticket_sla(ticket, open_clocks)


async def _due_clock(session: AsyncSession, timer: DueTimer) -> tuple[SlaClock, Ticket] | None:
    clock = await session.get(SlaClock, uuid.UUID(timer.subject))
    if clock is None or clock.state != clocks.RUNNING:
        return None  # stopped or paused since: its timer should have moved, nothing to do
    ticket = await session.get(Ticket, clock.ticket_id, with_for_update=True)
    if ticket is None:
        return None
    return clock, ticket


@timer_handlers.on(WARNING)
async def warn(ctx: TimerContext, timer: DueTimer) -> None:
    found = await _due_clock(ctx.session, timer)
    if found is None:
        return
    clock, ticket = found
    if clock.warned or clock.breached:
        return
    now = ctx.clock.now()
    clock.warned = True
    clock.warn_at = None
    ticket.sla_at_risk = True
    ticket.version += 1
    ticket.updated_at = now
    calendar = await calendar_for(ctx.session, clock.calendar_id)
    await ctx.publish(
        "tickets.sla.warning.v1",
        SlaWarning(**_outcome_fields(ticket, clock, calendar, now), warned_at=now, late=timer.late),
        subject=str(ticket.id),
    )
    SLA_WARNINGS.labels(clock.metric, ticket.priority).inc()


@timer_handlers.on(BREACH)
async def breach(ctx: TimerContext, timer: DueTimer) -> None:
    found = await _due_clock(ctx.session, timer)
    if found is None:
        return
    clock, ticket = found
    if clock.breached:
        return
    now = ctx.clock.now()
    calendar = await calendar_for(ctx.session, clock.calendar_id)
    # The clock keeps running after a breach (the work is still owed); only its timers end.
    clock.breached = True
    clock.breached_at = now
    await sync_timers(ctx.session, ctx.timers, clock)
    fields = _outcome_fields(ticket, clock, calendar, now)
    ticket.sla_breached = True
    await escalate(
        ctx.session,
        ticket,
        reason=f"{clock.metric} SLA breached (due {fields['due_at'].isoformat()})",
        by="sla",
        outbox=ctx.outbox,
        now=now,
        ladder=True,
    )
    refresh_ticket_sla(ticket, await clocks_of(ctx.session, ticket.id, open_only=True))
    fields["ticket"] = snapshot(ticket)
    await ctx.publish(
        "tickets.sla.breached.v1",
        SlaBreached(**fields, breached_at=now, late=timer.late),
        subject=str(ticket.id),
    )
    SLA_BREACHES.labels(clock.metric, ticket.priority).inc()


async def escalate(
    session: AsyncSession,
    ticket: Ticket,
    *,
    reason: str,
    by: str,
    outbox: Outbox,
    now: datetime,
    ladder: bool = True,
) -> None:
    """One step up the escalation ladder: raise priority, move to its group; recorded and published."""
    ticket.escalation_level += 1
    step = (
        policies.escalation_step(await policy_of(session, ticket), ticket.escalation_level) if ladder else {}
    )
    before = {"priority": ticket.priority, "group": ticket.group}
    if step.get("raise_priority"):
        ticket.priority = policies.raised(ticket.priority)
    if step.get("group"):
        ticket.group = step["group"]
        ticket.assignee = None  # the supervisor group picks it up
    ticket.version += 1
    ticket.updated_at = now
    session.add(
        TicketHistory(
            ticket_id=ticket.id,
            at=now,
            actor=by,
            action="escalate",
            from_status=ticket.status,
            to_status=ticket.status,
            details={
                "reason": reason,
                "level": ticket.escalation_level,
                "before": before,
                "after": {"priority": ticket.priority, "group": ticket.group},
                "notify": step.get("notify", []),
            },
        )
    )
    await outbox.add(
        session,
        "tickets.ticket.escalated.v1",
        TicketEscalated(
            ticket=snapshot(ticket),
            reason=reason[:2000],
            level=ticket.escalation_level,
            escalated_by=by,
            escalated_at=now,
        ),
        subject=str(ticket.id),
    )
