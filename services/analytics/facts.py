"""The ticket-facts projection: each lifecycle event folds into one row per ticket, in any order.

Descriptive fields come from the snapshot with the highest `version`; instants are merged with min/max,
so a duplicate, a late or a reordered event leaves the same row as the events in order would.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.analytics.business_time import BusinessCalendar
from services.analytics.models import BriefFact, MilestoneFact, TicketFact
from shared.contracts import briefs as b
from shared.contracts import tickets as t
from shared.db import dialect_name

_DONE = {t.TicketStatus.RESOLVED.value, t.TicketStatus.CLOSED.value}


def _earliest(a: datetime | None, b: datetime | None) -> datetime | None:
    return b if a is None else a if b is None else min(a, b)


def _latest(a: datetime | None, b: datetime | None) -> datetime | None:
    return b if a is None else a if b is None else max(a, b)


async def ticket_fact(session: AsyncSession, snapshot: t.TicketSnapshot) -> TicketFact:
    """The ticket's row, created from this snapshot or refreshed by it when it is newer."""
    # Events of one ticket are consumed concurrently: insert-if-absent, then lock the row, so two first
    # events neither collide on the key nor overwrite each other's merge.
    insert = pg_insert if dialect_name(session) == "postgresql" else sqlite_insert
    await session.execute(
        insert(TicketFact)
        .values(
            ticket_id=snapshot.id,
            version=0,
            kind=snapshot.kind.value,
            priority=snapshot.priority.value,
            channel=snapshot.channel.value,
            status=snapshot.status.value,
            customer_tier=snapshot.customer_tier.value,
            created_at=snapshot.created_at,
            reopen_count=0,
            reopens_seen=0,
        )
        .on_conflict_do_nothing()
    )
    fact = (
        await session.execute(
            sa.select(TicketFact)
            .where(TicketFact.ticket_id == snapshot.id)  # type: ignore[arg-type]
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    ).scalar_one()
    if snapshot.version > fact.version:
        fact.version = snapshot.version
        fact.kind = snapshot.kind.value
        fact.priority = snapshot.priority.value
        fact.channel = snapshot.channel.value
        fact.status = snapshot.status.value
        fact.category = snapshot.category
        fact.customer_id = snapshot.customer_id
        fact.customer_tier = snapshot.customer_tier.value
        fact.assignee = snapshot.assignee
        fact.group = snapshot.group
        fact.created_at = snapshot.created_at
    return fact


def derive_durations(fact: TicketFact, calendar: BusinessCalendar) -> None:
    """Response and resolution times, in calendar and in business seconds."""
    if fact.first_response_at is not None:
        fact.first_response_seconds = max(0.0, (fact.first_response_at - fact.created_at).total_seconds())
        fact.first_response_business_seconds = calendar.seconds_between(
            fact.created_at, fact.first_response_at
        )
    resolved = fact.status in _DONE and fact.resolved_at is not None
    if resolved and fact.resolved_at is not None:
        fact.resolution_seconds = max(0.0, (fact.resolved_at - fact.created_at).total_seconds())
        fact.resolution_business_seconds = calendar.seconds_between(fact.created_at, fact.resolved_at)
    else:
        fact.resolution_seconds = fact.resolution_business_seconds = None


async def apply_ticket_event(
    session: AsyncSession, data: object, calendar: BusinessCalendar
) -> TicketFact | None:
    """Fold one tickets.* lifecycle event into the facts; returns the ticket's row."""
    snapshot = getattr(data, "ticket", None)
    if not isinstance(snapshot, t.TicketSnapshot):
        return None
    fact = await ticket_fact(session, snapshot)
    match data:
        case t.TicketCreated():
            fact.policy_name = data.policy_name or fact.policy_name
        case t.TicketResponded() if data.first:
            fact.first_response_at = _earliest(fact.first_response_at, data.responded_at)
        case t.TicketResolved():
            fact.first_response_at = _earliest(fact.first_response_at, data.first_response_at)
            if fact.resolved_at is None or data.resolved_at >= fact.resolved_at:
                fact.public_replies = data.public_replies
            fact.resolved_at = _latest(fact.resolved_at, data.resolved_at)
            fact.reopen_count = max(fact.reopen_count, data.reopen_count)
        case t.TicketClosed():
            fact.closed_at = _latest(fact.closed_at, data.closed_at)
        case t.TicketReopened():
            fact.reopened_at = _latest(fact.reopened_at, data.reopened_at)
            # Counted events and the producer's own count agree whichever arrives first.
            fact.reopens_seen += 1
            fact.reopen_count = max(fact.reopen_count, fact.reopens_seen)
        case t.SlaOutcome():
            fact.policy_name = data.policy_name or fact.policy_name
    derive_durations(fact, calendar)
    return fact


async def apply_brief_event(session: AsyncSession, data: object) -> None:
    """Fold one briefs.* event into the brief and milestone facts."""
    match data:
        case b.BriefSubmitted() | b.BriefApproved() | b.BriefReturned():
            fact = await _brief(session, data.brief.id, data.brief.client_id, data.brief.type.value)
            if isinstance(data, b.BriefSubmitted):
                fact.first_submitted_at = _earliest(fact.first_submitted_at, data.submitted_at)
                fact.last_submitted_at = _latest(fact.last_submitted_at, data.submitted_at)
            elif isinstance(data, b.BriefApproved):
                fact.approved_at = _earliest(fact.approved_at, data.approved_at)
            else:
                fact.returns += 1
        case b.ProposalDecided() if data.proposal.stage is b.ProposalStage.CLIENT:
            proposal = data.proposal
            fact = await _brief(session, proposal.brief_id, proposal.client_id, None)
            fact.client_rounds = max(fact.client_rounds, proposal.round)
            if fact.first_client_round is None or proposal.round < fact.first_client_round:
                fact.first_client_round = proposal.round
                fact.first_client_decision = data.decision.value
        case b.MilestoneMissed():
            if await session.get(MilestoneFact, data.milestone_id) is None:
                session.add(
                    MilestoneFact(
                        milestone_id=data.milestone_id,
                        client_id=data.client_id,
                        due_at=data.due_at,
                        detected_at=data.detected_at,
                    )
                )


async def _brief(session: AsyncSession, brief_id: object, client_id: object, type_: str | None) -> BriefFact:
    insert = pg_insert if dialect_name(session) == "postgresql" else sqlite_insert
    await session.execute(
        insert(BriefFact)
        .values(brief_id=brief_id, client_id=client_id, type=type_ or "client", returns=0, client_rounds=0)
        .on_conflict_do_nothing()
    )
    fact = (
        await session.execute(
            sa.select(BriefFact)
            .where(BriefFact.brief_id == brief_id)  # type: ignore[arg-type]
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    ).scalar_one()
    if type_ is not None:
        fact.type = type_
    return fact
