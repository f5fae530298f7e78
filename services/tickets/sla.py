"""The SLA engine against the database: policies for tickets, clocks with timers, warnings and breaches."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import date, datetime
from functools import partial
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event as sa_event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session
from sqlmodel import col

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
from shared.ids import new_id
from shared.outbox import Outbox
from shared.recent import RecentReads
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


# Every action on a ticket needs its policy and its clocks' calendars, and read each time they were a
# fifth of an action's statements. Calendars are never changed once created (no route edits one), so a
# process keeps those it built, by id. Policies can be replaced: a process keeps the active ones for a
# few seconds, and forgets them at once when it changes one itself; another replica's change is seen
# within POLICY_CACHE_SECONDS (running clocks keep their targets anyway; it decides new clocks).
POLICY_CACHE_SECONDS = 5.0
_calendars: dict[uuid.UUID, BusinessCalendar] = {}
_CALENDARS_KEPT = 1000
_active_policies: RecentReads[list[SlaPolicy]] = RecentReads(POLICY_CACHE_SECONDS)


async def calendar_for(session: AsyncSession, calendar_id: uuid.UUID | None) -> BusinessCalendar:
    if calendar_id is None:
        return ALWAYS_OPEN
    if (known := _calendars.get(calendar_id)) is not None:
        return known
    row = await session.get(Calendar, calendar_id)
    calendar = to_calendar(row)
    if row is not None and len(_calendars) < _CALENDARS_KEPT:
        _calendars[calendar_id] = calendar
    return calendar


async def active_policies(session: AsyncSession) -> list[SlaPolicy]:
    """The active policies, read at most every POLICY_CACHE_SECONDS per database (read-only copies)."""
    database = session.get_bind().url
    if (known := _active_policies.get(database)) is not None:
        return known
    rows = list((await session.execute(sa.select(SlaPolicy).where(col(SlaPolicy.active)))).scalars())
    return _active_policies.put(database, rows)


def forget_policies(session: AsyncSession) -> None:
    """This process is changing a policy: actions read them again once the change commits (and now, so
    this transaction sees its own change)."""
    database = str(session.get_bind().url)
    _active_policies.forget(database)
    session.sync_session.info.setdefault(_FORGET_KEY, set()).add(database)


_FORGET_KEY = "kefu.tickets.forget_policies"


@sa_event.listens_for(Session, "after_commit")
def _forget_committed_policies(session: Session) -> None:
    for database in session.info.pop(_FORGET_KEY, ()):
        _active_policies.forget(database)


async def policy_of(session: AsyncSession, ticket: Ticket) -> SlaPolicy | None:
    if ticket.policy_id is None:
        return None
    known = next((p for p in await active_policies(session) if p.id == ticket.policy_id), None)
    return known if known is not None else await session.get(SlaPolicy, ticket.policy_id)


async def match_policy(session: AsyncSession, ticket: Ticket) -> SlaPolicy | None:
    return policies.first_match(await active_policies(session), ticket)


async def clocks_of(
    session: AsyncSession, ticket_id: uuid.UUID, *, open_only: bool = False
) -> list[SlaClock]:
    query = sa.select(SlaClock).where(col(SlaClock.ticket_id) == ticket_id)
    if open_only:
        query = query.where(col(SlaClock.state) != clocks.STOPPED)
    return list(
        (await session.execute(query.order_by(col(SlaClock.started_at), col(SlaClock.metric)))).scalars()
    )


async def sync_timers(session: AsyncSession, timers: Timers, changed: Sequence[SlaClock]) -> None:
    """The clocks' persisted due and warning timers follow their state.

    At most three statements however many clocks changed (one upsert, a delete per kind): an action on
    a ticket moves two clocks, and a statement each cost as much as the rest of the action.
    """
    scheduled: list[tuple[str, str, datetime, dict[str, Any] | None]] = []
    cancelled: dict[str, list[str]] = {BREACH: [], WARNING: []}
    for clock in changed:
        subject = str(clock.id)
        payload = {"ticket_id": str(clock.ticket_id), "metric": clock.metric, "cycle": clock.cycle}
        running = clock.state == clocks.RUNNING
        if running and not clock.breached and clock.due_at is not None:
            scheduled.append((BREACH, subject, clock.due_at, payload))
        else:
            cancelled[BREACH].append(subject)
        if running and clock.warn_at is not None and not clock.warned:
            scheduled.append((WARNING, subject, clock.warn_at, payload))
        else:
            cancelled[WARNING].append(subject)
    await timers.schedule_many(session, scheduled)
    for kind, subjects in cancelled.items():
        await timers.cancel_many(session, kind=kind, subjects=subjects)


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
    sync: bool = True,
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
    if sync:
        await sync_timers(session, timers, [clock])
    return clock


async def start_ticket_clocks(
    session: AsyncSession, ticket: Ticket, *, timers: Timers, now: datetime
) -> tuple[SlaPolicy | None, list[SlaTarget]]:
    policy = await match_policy(session, ticket)
    ticket.policy_id = policy.id if policy else None
    ticket.policy_name = policy.name if policy else None
    started = []
    for metric in ("first_response", "resolution"):
        clock = await start_clock(session, ticket, policy, metric, timers=timers, now=now, sync=False)
        if clock is not None:
            started.append(clock)
    refresh_ticket_sla(ticket, started)
    await sync_timers(session, timers, started)
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
    return {"ticket": snapshot(ticket), **_clock_outcome(ticket, clock, calendar, at)}


def _clock_outcome(
    ticket: Ticket, clock: SlaClock, calendar: BusinessCalendar, at: datetime
) -> dict[str, Any]:
    """What an SLA event says about the clock; the ticket's snapshot is added by the caller."""
    return {
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
    stopped = [clock for clock in open_clocks if clock.metric in metrics]
    for clock in stopped:
        calendar = await calendar_for(session, clock.calendar_id)
        fields = _outcome_fields(ticket, clock, calendar, now)
        if clocks.stop(clock, calendar, now):
            await outbox.add(
                session,
                "tickets.sla.met.v1",
                SlaMet(**fields, met_at=now, elapsed_seconds=max(0, fields["business_seconds"])),
                subject=str(ticket.id),
            )
    await sync_timers(session, timers, stopped)
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
    await sync_timers(session, timers, open_clocks)
    refresh_ticket_sla(ticket, open_clocks)


async def retarget(session: AsyncSession, ticket: Ticket, *, timers: Timers) -> None:
    """After a priority or category change, running clocks take the targets of the policy now matching."""
    policy = await match_policy(session, ticket)
    if policy is None or policy.id == ticket.policy_id:
        return
    ticket.policy_id, ticket.policy_name = policy.id, policy.name
    open_clocks = await clocks_of(session, ticket.id, open_only=True)
    retargeted = []
    for clock in open_clocks:
        target = policy.targets.get(clock.metric)
        if not target or clock.breached:
            continue
        clock.target_seconds = int(target)
        clock.warn_after_seconds = policies.warn_after(policy, int(target))
        clocks.recompute(clock, await calendar_for(session, clock.calendar_id))
        retargeted.append(clock)
    await sync_timers(session, timers, retargeted)
    refresh_ticket_sla(ticket, open_clocks)


class _DueClocks:
    """The tickets and open clocks behind a batch of due SLA timers, loaded with a few statements.

    Tickets are locked first (in id order, so concurrent passes cannot deadlock) and their clocks read
    after, so a reply or pause that committed meanwhile is seen and its clock is not breached.
    """

    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.tickets: dict[uuid.UUID, Ticket] = {}
        self.clocks: dict[uuid.UUID, SlaClock] = {}
        self.open_clocks: dict[uuid.UUID, list[SlaClock]] = {}
        self._policies: dict[uuid.UUID, SlaPolicy | None] = {}
        self._calendars: dict[uuid.UUID | None, BusinessCalendar] = {None: ALWAYS_OPEN}

    async def load(self, due: list[DueTimer]) -> None:
        ticket_ids: set[uuid.UUID] = set()
        unknown: list[uuid.UUID] = []
        for timer in due:
            named = (timer.payload or {}).get("ticket_id")
            if named:
                ticket_ids.add(uuid.UUID(named))
            else:
                unknown.append(uuid.UUID(timer.subject))
        if unknown:
            found = await self.session.execute(
                sa.select(col(SlaClock.ticket_id)).where(col(SlaClock.id).in_(unknown))
            )
            ticket_ids.update(found.scalars())
        if not ticket_ids:
            return
        locked = await self.session.execute(
            sa.select(Ticket)
            .where(col(Ticket.id).in_(sorted(ticket_ids)))
            .order_by(col(Ticket.id))
            .with_for_update()
        )
        self.tickets = {ticket.id: ticket for ticket in locked.scalars()}
        if not self.tickets:
            return
        running = await self.session.execute(
            sa.select(SlaClock)
            .where(col(SlaClock.ticket_id).in_(list(self.tickets)))
            .where(col(SlaClock.state) != clocks.STOPPED)
            .order_by(col(SlaClock.started_at), col(SlaClock.metric))
        )
        for clock in running.scalars():
            self.clocks[clock.id] = clock
            self.open_clocks.setdefault(clock.ticket_id, []).append(clock)

    def running(self, timer: DueTimer) -> tuple[SlaClock, Ticket] | None:
        """The timer's clock if it still runs (stopped or paused since: its timer moved, nothing to do)."""
        clock = self.clocks.get(uuid.UUID(timer.subject))
        if clock is None or clock.state != clocks.RUNNING:
            return None
        ticket = self.tickets.get(clock.ticket_id)
        return (clock, ticket) if ticket is not None else None

    async def calendar(self, calendar_id: uuid.UUID | None) -> BusinessCalendar:
        if calendar_id not in self._calendars:
            self._calendars[calendar_id] = await calendar_for(self.session, calendar_id)
        return self._calendars[calendar_id]

    async def policy(self, ticket: Ticket) -> SlaPolicy | None:
        if ticket.policy_id is None:
            return None
        if ticket.policy_id not in self._policies:
            self._policies[ticket.policy_id] = await policy_of(self.session, ticket)
        return self._policies[ticket.policy_id]


@timer_handlers.on_batch(WARNING)
async def warn(ctx: TimerContext, due: list[DueTimer]) -> None:
    session = ctx.session
    now = ctx.clock.now()
    events: list[tuple[str, Any, str | None]] = []
    # Nothing is written until everything is read: one flush at the end instead of one per query.
    with session.no_autoflush:
        found = _DueClocks(session)
        await found.load(due)
        for timer in due:
            pair = found.running(timer)
            if pair is None:
                continue
            clock, ticket = pair
            if clock.warned or clock.breached:
                continue
            clock.warned = True
            clock.warn_at = None
            ticket.sla_at_risk = True
            ticket.version += 1
            ticket.updated_at = now
            calendar = await found.calendar(clock.calendar_id)
            events.append(
                (
                    "tickets.sla.warning.v1",
                    SlaWarning(
                        **_outcome_fields(ticket, clock, calendar, now), warned_at=now, late=timer.late
                    ),
                    str(ticket.id),
                )
            )
            ctx.on_commit(partial(SLA_WARNINGS.labels(clock.metric, ticket.priority).inc))
    await ctx.outbox.add_many(session, events)
    await session.flush()


@timer_handlers.on_batch(BREACH)
async def breach(ctx: TimerContext, due: list[DueTimer]) -> None:
    session = ctx.session
    now = ctx.clock.now()
    events: list[tuple[str, Any, str | None]] = []
    history: list[dict[str, Any]] = []
    breached: list[str] = []
    with session.no_autoflush:
        found = _DueClocks(session)
        await found.load(due)
        for timer in due:
            pair = found.running(timer)
            if pair is None or pair[0].breached:
                continue
            clock, ticket = pair
            calendar = await found.calendar(clock.calendar_id)
            # The clock keeps running after a breach (the work is still owed); only its timers end.
            clock.breached = True
            clock.breached_at = now
            breached.append(str(clock.id))
            fields = _clock_outcome(ticket, clock, calendar, now)
            ticket.sla_breached = True
            row, escalated = _escalation(
                ticket,
                await found.policy(ticket),
                reason=f"{clock.metric} SLA breached (due {fields['due_at'].isoformat()})",
                by="sla",
                now=now,
                ladder=True,
            )
            history.append(row)
            events.append(("tickets.ticket.escalated.v1", escalated, str(ticket.id)))
            refresh_ticket_sla(ticket, found.open_clocks.get(ticket.id, []))
            # The ticket as escalated is the ticket as breached: the SLA columns are not in a snapshot.
            fields["ticket"] = escalated.ticket
            events.append(
                (
                    "tickets.sla.breached.v1",
                    SlaBreached(**fields, breached_at=now, late=timer.late),
                    str(ticket.id),
                )
            )
            ctx.on_commit(partial(SLA_BREACHES.labels(clock.metric, ticket.priority).inc))
    # A breached clock warns no more; its own breach timer is the one firing now.
    await ctx.timers.cancel_many(session, kind=WARNING, subjects=breached)
    if history:
        await session.execute(TicketHistory.__table__.insert(), history)  # type: ignore[attr-defined]
    await ctx.outbox.add_many(session, events)
    await session.flush()


def _escalation(
    ticket: Ticket, policy: SlaPolicy | None, *, reason: str, by: str, now: datetime, ladder: bool
) -> tuple[dict[str, Any], TicketEscalated]:
    """One step up the ladder on the ticket itself; returns the history row and the event that record it."""
    ticket.escalation_level += 1
    step = policies.escalation_step(policy, ticket.escalation_level) if ladder else {}
    before = {"priority": ticket.priority, "group": ticket.group}
    if step.get("raise_priority"):
        ticket.priority = policies.raised(ticket.priority)
    if step.get("group"):
        ticket.group = step["group"]
        ticket.assignee = None  # the supervisor group picks it up
    ticket.version += 1
    ticket.updated_at = now
    row = {
        "id": new_id(),
        "ticket_id": ticket.id,
        "at": now,
        "actor": by,
        "action": "escalate",
        "from_status": ticket.status,
        "to_status": ticket.status,
        "details": {
            "reason": reason,
            "level": ticket.escalation_level,
            "before": before,
            "after": {"priority": ticket.priority, "group": ticket.group},
            "notify": step.get("notify", []),
        },
    }
    event = TicketEscalated(
        ticket=snapshot(ticket),
        reason=reason[:2000],
        level=ticket.escalation_level,
        escalated_by=by,
        escalated_at=now,
    )
    return row, event


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
    policy = await policy_of(session, ticket) if ladder else None
    row, event = _escalation(ticket, policy, reason=reason, by=by, now=now, ladder=ladder)
    session.add(TicketHistory(**row))
    await outbox.add(session, "tickets.ticket.escalated.v1", event, subject=str(ticket.id))
