"""Proposal rounds: numbered internal and client rounds on an approved brief, presented and decided."""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from services.briefs import brief_service, rounds, service
from services.briefs.models import Proposal
from services.briefs.rounds import InvalidDecision, Round, RoundOutcome, RoundStatus
from services.briefs.schemas import DecisionIn, ProposalCreate
from services.briefs.signoff import BriefStatus, IllegalTransition
from shared.clock import Clock
from shared.contracts.briefs import (
    ProposalDecided,
    ProposalDecision,
    ProposalPresented,
    ProposalRef,
    ProposalStage,
    RejectionFollowUp,
)
from shared.errors import Problem, conflict, not_found
from shared.outbox import Outbox


def _round(p: Proposal) -> Round:
    return Round(
        stage=ProposalStage(p.stage),
        round=p.round,
        status=RoundStatus(p.status),
        decision=ProposalDecision(p.decision) if p.decision else None,
        follow_up=RejectionFollowUp(p.follow_up) if p.follow_up else None,
    )


def _ref(p: Proposal) -> ProposalRef:
    return ProposalRef(
        id=p.id, brief_id=p.brief_id, client_id=p.client_id, round=p.round, stage=ProposalStage(p.stage)
    )


async def rounds_of(session: AsyncSession, brief_id: uuid.UUID) -> list[Proposal]:
    rows = await session.execute(
        sa.select(Proposal).where(Proposal.brief_id == brief_id).order_by(Proposal.stage, Proposal.round)
    )
    return list(rows.scalars())


async def create_round(
    session: AsyncSession, request: ProposalCreate, *, actor: str, clock: Clock
) -> Proposal:
    """A new round of work, pinned to the brief's current approved version and numbered after the last."""
    brief = await brief_service.get_brief(session, request.brief_id)
    await service.active_client(session, brief.client_id)
    if brief.status != BriefStatus.APPROVED:
        raise conflict(
            "Work is proposed against an approved brief; this one is " + brief.status + ".", allowed=[]
        )
    try:
        number = rounds.next_round_number(
            request.stage, [_round(p) for p in await rounds_of(session, brief.id)]
        )
    except IllegalTransition as exc:
        raise conflict(exc.detail, allowed=exc.allowed) from None
    proposal = Proposal(
        brief_id=brief.id,
        client_id=brief.client_id,
        stage=request.stage.value,
        round=number,
        brief_number=brief.number,
        title=request.title,
        summary=request.summary,
        attachments=[a.model_dump() for a in request.attachments],
        created_by=actor,
        created_at=clock.now(),
    )
    session.add(proposal)
    await session.flush()
    return proposal


async def get_round(session: AsyncSession, proposal_id: uuid.UUID) -> Proposal:
    proposal = await session.get(Proposal, proposal_id)
    if proposal is None:
        raise not_found("proposal", proposal_id)
    return proposal


async def present(
    session: AsyncSession, proposal_id: uuid.UUID, *, actor: str, outbox: Outbox, clock: Clock
) -> Proposal:
    proposal = await get_round(session, proposal_id)
    try:
        status = rounds.present(RoundStatus(proposal.status))
    except IllegalTransition as exc:
        raise conflict(exc.detail, allowed=exc.allowed) from None
    now = clock.now()
    proposal.status, proposal.presented_by, proposal.presented_at = status.value, actor, now
    proposal.version += 1
    await outbox.add(
        session,
        "briefs.proposal.presented.v1",
        ProposalPresented(proposal=_ref(proposal), presented_by=actor, presented_at=now),
        subject=str(proposal.id),
    )
    await session.flush()
    return proposal


async def decide(
    session: AsyncSession,
    proposal_id: uuid.UUID,
    request: DecisionIn,
    *,
    actor: str,
    outbox: Outbox,
    clock: Clock,
) -> tuple[Proposal, RoundOutcome]:
    """Record a decision; the client's approval starts execution, rejected+terminate ends the engagement."""
    proposal = await get_round(session, proposal_id)
    stage = ProposalStage(proposal.stage)
    try:
        outcome = rounds.decide(stage, RoundStatus(proposal.status), request.decision, request.follow_up)
    except IllegalTransition as exc:
        raise conflict(exc.detail, allowed=exc.allowed) from None
    except InvalidDecision as exc:
        raise Problem(422, str(exc), slug="invalid-decision") from None
    now = clock.now()
    proposal.status = RoundStatus.DECIDED.value
    proposal.decision = request.decision.value
    proposal.follow_up = request.follow_up.value if request.follow_up else None
    proposal.decided_by, proposal.decided_at, proposal.comments = actor, now, request.comments
    proposal.version += 1
    if outcome is RoundOutcome.EXECUTION:
        brief = await brief_service.get_brief(session, proposal.brief_id)
        brief.execution_started_at = now
        brief.version += 1
    elif outcome is RoundOutcome.ENGAGEMENT_ENDED:
        client = await service.get_client(session, proposal.client_id)
        reason = f"Client rejected proposal round {proposal.round} and ended the engagement."
        await service.end_engagement(session, client, reason=request.comments or reason, at=now)
    await outbox.add(
        session,
        "briefs.proposal.decided.v1",
        ProposalDecided(
            proposal=_ref(proposal),
            decision=request.decision,
            follow_up=request.follow_up,
            decided_by=actor,
            decided_at=now,
            comments=request.comments,
        ),
        subject=str(proposal.id),
    )
    await session.flush()
    return proposal, outcome
