"""Traffic: milestones with an owner and a due time, delivered or missed, and who is behind on what."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from services.briefs.models import Brief, Client, Milestone, Proposal
from services.briefs.schemas_work import MilestoneCreate, MilestoneKind, MilestoneUpdate
from services.briefs.signoff import IllegalTransition
from shared.clock import Clock
from shared.concurrency import check_if_match
from shared.contracts.briefs import MilestoneDelivered, MilestoneMissed
from shared.errors import Problem, not_found
from shared.outbox import Outbox
from shared.pagination import decode_cursor, encode_cursor

MILESTONE_DUE = "briefs.milestone.due"
FORMAL_BRIEFING_EVERY = timedelta(days=365)


class TimerPort(Protocol):
    """The part of the shared timers traffic uses: one timer per open milestone."""

    async def schedule(
        self,
        session: AsyncSession,
        *,
        kind: str,
        subject: str,
        due_at: datetime,
        payload: dict[str, Any] | None = None,
    ) -> None: ...

    async def cancel(self, session: AsyncSession, *, kind: str, subject: str) -> None: ...


class NoTimers:
    """Until a service has timers, deadlines are still listed as overdue; only the event waits."""

    async def schedule(self, session: AsyncSession, **_: Any) -> None:
        return None

    async def cancel(self, session: AsyncSession, **_: Any) -> None:
        return None


async def add_milestone(
    session: AsyncSession,
    *,
    client_id: uuid.UUID,
    kind: MilestoneKind,
    name: str,
    owner: str | None,
    due_at: datetime,
    actor: str,
    clock: Clock,
    timers: TimerPort,
    brief_id: uuid.UUID | None = None,
    proposal_id: uuid.UUID | None = None,
    meeting_id: uuid.UUID | None = None,
) -> Milestone:
    milestone = Milestone(
        client_id=client_id,
        brief_id=brief_id,
        proposal_id=proposal_id,
        meeting_id=meeting_id,
        kind=kind.value,
        name=name,
        owner=owner,
        due_at=due_at,
        created_by=actor,
        created_at=clock.now(),
    )
    session.add(milestone)
    await session.flush()
    await timers.schedule(session, kind=MILESTONE_DUE, subject=str(milestone.id), due_at=due_at)
    return milestone


async def create(
    session: AsyncSession, request: MilestoneCreate, *, actor: str, clock: Clock, timers: TimerPort
) -> Milestone:
    """A milestone on a brief, a proposal round or a client; the owning client is implied by the work."""
    client_id, brief_id = request.client_id, request.brief_id
    if request.proposal_id is not None:
        proposal = await session.get(Proposal, request.proposal_id)
        if proposal is None:
            raise not_found("proposal", request.proposal_id)
        brief_id = brief_id or proposal.brief_id
        if brief_id != proposal.brief_id:
            raise Problem(422, "The proposal belongs to another brief.", slug="mismatch")
    if brief_id is not None:
        brief = await session.get(Brief, brief_id)
        if brief is None:
            raise not_found("brief", brief_id)
        if client_id is not None and client_id != brief.client_id:
            raise Problem(422, "The brief belongs to another client.", slug="mismatch")
        client_id = brief.client_id
    assert client_id is not None
    client = await session.get(Client, client_id)
    if client is None:
        raise not_found("client", client_id)
    return await add_milestone(
        session,
        client_id=client_id,
        brief_id=brief_id,
        proposal_id=request.proposal_id,
        kind=request.kind,
        name=request.name,
        owner=request.owner,
        due_at=request.due_at,
        actor=actor,
        clock=clock,
        timers=timers,
    )


async def get(session: AsyncSession, milestone_id: uuid.UUID) -> Milestone:
    milestone = await session.get(Milestone, milestone_id)
    if milestone is None:
        raise not_found("milestone", milestone_id)
    return milestone


async def deliver(
    session: AsyncSession,
    milestone_id: uuid.UUID,
    *,
    actor: str,
    clock: Clock,
    timers: TimerPort,
    outbox: Outbox,
) -> Milestone:
    """Delivered: on time or late (a missed milestone can still be delivered, and stays recorded missed).

    The delivery is published, so the on-time rate counts what was delivered as well as what was missed.
    """
    milestone = await get(session, milestone_id)
    if milestone.delivered_at is not None:
        raise IllegalTransition("The milestone is already delivered.", ["reschedule"])
    now = clock.now()
    milestone.status = "delivered"
    milestone.delivered_at = now
    milestone.delivered_by = actor
    milestone.version += 1
    await timers.cancel(session, kind=MILESTONE_DUE, subject=str(milestone.id))
    await outbox.add(
        session,
        "briefs.milestone.delivered.v1",
        MilestoneDelivered(
            **_described(milestone),
            delivered_at=now,
            delivered_by=actor,
            on_time=now <= milestone.due_at,
        ),
        subject=str(milestone.id),
    )
    if milestone.kind == MilestoneKind.FORMAL_BRIEFING.value:
        await add_milestone(
            session,
            client_id=milestone.client_id,
            kind=MilestoneKind.FORMAL_BRIEFING,
            name=milestone.name,
            owner=milestone.owner,
            due_at=now + FORMAL_BRIEFING_EVERY,
            actor=actor,
            clock=clock,
            timers=timers,
        )
    await session.flush()
    return milestone


async def update(
    session: AsyncSession,
    milestone_id: uuid.UUID,
    changes: MilestoneUpdate,
    *,
    if_match: str | None,
    timers: TimerPort,
) -> Milestone:
    milestone = await get(session, milestone_id)
    check_if_match(if_match, milestone.version)
    fields = changes.model_dump(exclude_unset=True)
    if milestone.status == "delivered" and "due_at" in fields:
        raise IllegalTransition("A delivered milestone cannot be rescheduled.", [])
    if fields.get("name") is not None:
        milestone.name = fields["name"]
    if "owner" in fields:
        milestone.owner = fields["owner"]
    if fields.get("due_at") is not None:
        milestone.due_at = fields["due_at"]
        # A new promise: a missed milestone is open again against its new date.
        milestone.status, milestone.missed_at = "open", None
        await timers.schedule(session, kind=MILESTONE_DUE, subject=str(milestone.id), due_at=milestone.due_at)
    milestone.version += 1
    await session.flush()
    return milestone


async def mark_missed(
    session: AsyncSession, milestone_id: uuid.UUID, *, outbox: Outbox, clock: Clock, late: bool
) -> Milestone | None:
    """The due time passed: an open milestone becomes missed and the miss is published, once."""
    milestone = await session.get(Milestone, milestone_id)
    if milestone is None or milestone.status != "open":
        return None
    now = clock.now()
    if milestone.due_at > now:
        return None  # rescheduled after the timer was claimed; the new timer will decide
    milestone.status = "missed"
    milestone.missed_at = now
    milestone.version += 1
    await outbox.add(
        session,
        "briefs.milestone.missed.v1",
        MilestoneMissed(
            **_described(milestone),
            detected_at=now,
            late=late,
        ),
        subject=str(milestone.id),
    )
    await session.flush()
    return milestone


def _described(milestone: Milestone) -> dict[str, Any]:
    """The fields every milestone event carries (`MilestoneEvent`)."""
    return {
        "milestone_id": milestone.id,
        "client_id": milestone.client_id,
        "brief_id": milestone.brief_id,
        "proposal_id": milestone.proposal_id,
        "name": milestone.name,
        "kind": milestone.kind,
        "owner": milestone.owner,
        "due_at": milestone.due_at,
    }


def listing(
    *,
    view: str,
    now: datetime,
    client_id: uuid.UUID | None = None,
    owner: str | None = None,
    brief_id: uuid.UUID | None = None,
    within_days: int = 14,
) -> sa.Select[Any]:
    """Upcoming: open and due within the window; overdue: undelivered past the due time (missed or not
    yet detected); all: everything. Filters narrow it to a client, a person or a brief."""
    query = sa.select(Milestone)
    if view == "upcoming":
        query = query.where(
            Milestone.status == "open",
            Milestone.due_at >= now,
            Milestone.due_at <= now + timedelta(days=within_days),
        )
    elif view == "overdue":
        query = query.where(Milestone.status != "delivered", Milestone.due_at < now)
    if client_id is not None:
        query = query.where(Milestone.client_id == client_id)
    if owner is not None:
        query = query.where(Milestone.owner == owner)
    if brief_id is not None:
        query = query.where(Milestone.brief_id == brief_id)
    return query


async def due_page(
    session: AsyncSession, query: sa.Select[Any], *, limit: int, cursor: str | None
) -> tuple[list[Milestone], str | None]:
    """Milestones soonest first, paged on (due time, id) so the order is stable."""
    if cursor is not None:
        values = decode_cursor(cursor)
        try:
            after_due, after_id = datetime.fromisoformat(values[0]), uuid.UUID(values[1])
        except (IndexError, TypeError, ValueError):
            raise Problem(400, "The cursor is not one this API issued.", slug="invalid-cursor") from None
        query = query.where(
            sa.or_(
                Milestone.due_at > after_due, sa.and_(Milestone.due_at == after_due, Milestone.id > after_id)
            )
        )
    rows = list(
        (await session.execute(query.order_by(Milestone.due_at, Milestone.id).limit(limit + 1))).scalars()
    )
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, encode_cursor([rows[-1].due_at.isoformat(), str(rows[-1].id)])
