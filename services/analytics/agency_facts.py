"""The agency facts: each briefs.* event folds into one row per brief, milestone, estimate or cost.

A duplicate never gets here (the event log claims each event once); instants merge with min/max and an
estimate keeps its highest confirmed version, so a late or reordered event leaves the same row as the
events in order would.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from services.analytics.models import BriefFact, CostFact, EstimateFact, MilestoneFact
from shared.contracts import briefs as b
from shared.db import dialect_insert

M = TypeVar("M")


def _earliest(x: datetime | None, y: datetime | None) -> datetime | None:
    return y if x is None else x if y is None else min(x, y)


def _latest(x: datetime | None, y: datetime | None) -> datetime | None:
    return y if x is None else x if y is None else max(x, y)


async def apply_brief_event(session: AsyncSession, data: object) -> None:
    """Fold one briefs.* event into the brief, milestone, estimate and cost facts, in any order."""
    match data:
        case b.BriefSubmitted() | b.BriefApproved() | b.BriefReturned():
            await _fold_brief(session, data)
        case b.ProposalDecided() if data.proposal.stage is b.ProposalStage.CLIENT:
            await _fold_client_decision(session, data)
        case b.MilestoneMissed() | b.MilestoneDelivered():
            await _fold_milestone(session, data)
        case b.EstimateConfirmed():
            await _fold_confirmation(session, data)
        case b.CostRecorded():
            await _insert_absent(
                session,
                CostFact,
                cost_id=data.cost_id,
                estimate_id=data.estimate_id,
                client_id=data.client_id,
                currency=data.currency,
                amount=data.amount,
                incurred_on=data.incurred_on,
            )


async def _fold_brief(
    session: AsyncSession, data: b.BriefSubmitted | b.BriefApproved | b.BriefReturned
) -> None:
    fact = await _brief(session, data.brief.id, data.brief.client_id, data.brief.type.value)
    if isinstance(data, b.BriefSubmitted):
        fact.first_submitted_at = _earliest(fact.first_submitted_at, data.submitted_at)
        fact.last_submitted_at = _latest(fact.last_submitted_at, data.submitted_at)
    elif isinstance(data, b.BriefApproved):
        fact.approved_at = _earliest(fact.approved_at, data.approved_at)
    else:
        fact.returns += 1


async def _fold_client_decision(session: AsyncSession, data: b.ProposalDecided) -> None:
    proposal = data.proposal
    fact = await _brief(session, proposal.brief_id, proposal.client_id, None)
    fact.client_rounds = max(fact.client_rounds, proposal.round)
    if fact.first_client_round is None or proposal.round < fact.first_client_round:
        fact.first_client_round = proposal.round
        fact.first_client_decision = data.decision.value


async def _fold_milestone(session: AsyncSession, data: b.MilestoneMissed | b.MilestoneDelivered) -> None:
    fact = await _locked(
        session,
        MilestoneFact,
        MilestoneFact.milestone_id,
        data.milestone_id,
        client_id=data.client_id,
        due_at=data.due_at,
    )
    if isinstance(data, b.MilestoneMissed):
        fact.missed_at = _earliest(fact.missed_at, data.detected_at)
        if fact.delivered_at is None:
            fact.due_at = data.due_at
    else:
        # The delivery is final: its due time (perhaps a rescheduled one) is the one reported on.
        fact.delivered_at, fact.due_at = data.delivered_at, data.due_at


async def _fold_confirmation(session: AsyncSession, data: b.EstimateConfirmed) -> None:
    fact = await _locked(
        session,
        EstimateFact,
        EstimateFact.estimate_id,
        data.estimate_id,
        client_id=data.client_id,
        currency=data.currency,
        confirmed_version=data.version,
        confirmed_total=data.total,
        confirmed_at=data.confirmed_at,
    )
    if data.version > fact.confirmed_version:  # a revised estimate, confirmed again
        fact.confirmed_version, fact.confirmed_total = data.version, data.total
        fact.currency, fact.confirmed_at = data.currency, data.confirmed_at


async def _insert_absent(session: AsyncSession, model: type[Any], **values: Any) -> None:
    """Insert the row unless its key is there already (a concurrent batch may be inserting it too)."""
    insert = dialect_insert(session)
    await session.execute(insert(model).values(**values).on_conflict_do_nothing())


async def _locked(session: AsyncSession, model: type[M], key: Any, value: object, **initial: Any) -> M:
    """The row under `key`, created with `initial` values if absent, locked until the batch commits.

    Events of one subject are consumed concurrently: insert-if-absent, then lock, so two first events
    neither collide on the key nor overwrite each other's merge.
    """
    await _insert_absent(session, model, **{key.key: value}, **initial)
    return (
        await session.execute(
            sa.select(model).where(key == value).with_for_update().execution_options(populate_existing=True)
        )
    ).scalar_one()


async def _brief(session: AsyncSession, brief_id: object, client_id: object, type_: str | None) -> BriefFact:
    fact = await _locked(
        session,
        BriefFact,
        BriefFact.brief_id,
        brief_id,
        client_id=client_id,
        type=type_ or "client",
        returns=0,
        client_rounds=0,
    )
    if type_ is not None:
        fact.type = type_
    return fact
