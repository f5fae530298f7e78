"""Satisfaction surveys: created on resolution (or a decided client presentation), answered once by token.

The token is the survey's only credential: it is generated with `secrets.token_urlsafe`, travels once in
`analytics.survey.requested.v1` for the delivery systems, and is stored only as its SHA-256.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from services.analytics import metrics
from services.analytics.models import Survey, TicketFact
from shared.contracts import analytics as a
from shared.contracts import briefs as b
from shared.contracts import tickets as t
from shared.contracts.common import Channel
from shared.errors import Problem
from shared.outbox import Outbox


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return secrets.token_urlsafe(32)


@dataclass(frozen=True)
class NewSurvey:
    survey: Survey
    token: str


async def _create(
    session: AsyncSession, survey: Survey, *, now: datetime, ttl: timedelta
) -> NewSurvey | None:
    exists = await session.execute(sa.select(Survey.id).where(Survey.origin_key == survey.origin_key))
    if exists.first() is not None:
        return None  # the same resolution or decision seen again under another event id
    token = new_token()
    survey.token_hash = hash_token(token)
    survey.created_at = now
    survey.expires_at = now + ttl
    session.add(survey)
    await session.flush()
    metrics.SURVEYS.labels("requested").inc()
    return NewSurvey(survey, token)


async def survey_for_resolution(
    session: AsyncSession,
    resolved: t.TicketResolved,
    fact: TicketFact | None,
    *,
    now: datetime,
    ttl: timedelta,
) -> NewSurvey | None:
    """One survey per resolution cycle; none when the ticket was reopened after this resolution."""
    if fact is not None and fact.reopened_at is not None and fact.reopened_at > resolved.resolved_at:
        return None
    ticket = resolved.ticket
    return await _create(
        session,
        Survey(
            origin_key=f"ticket:{ticket.id}:{resolved.reopen_count}",
            token_hash="",
            ticket_id=ticket.id,
            customer_id=ticket.customer_id,
            kind=ticket.kind.value,
            priority=ticket.priority.value,
            channel=ticket.channel.value,
            group=ticket.group,
            assignee=ticket.assignee,
            created_at=now,
            expires_at=now,
        ),
        now=now,
        ttl=ttl,
    )


async def survey_for_presentation(
    session: AsyncSession, decided: b.ProposalDecided, *, now: datetime, ttl: timedelta
) -> NewSurvey | None:
    """A client presentation decided: ask the client how the agency did."""
    proposal = decided.proposal
    if proposal.stage is not b.ProposalStage.CLIENT:
        return None
    return await _create(
        session,
        Survey(
            origin_key=f"proposal:{proposal.id}:{proposal.round}",
            token_hash="",
            client_id=proposal.client_id,
            proposal_id=proposal.id,
            created_at=now,
            expires_at=now,
        ),
        now=now,
        ttl=ttl,
    )


async def invalidate_for_reopen(session: AsyncSession, reopened: t.TicketReopened, *, now: datetime) -> None:
    """A reopened ticket's earlier ratings no longer describe how it ended: drop them from the figures."""
    await session.execute(
        sa.update(Survey)
        .where(
            Survey.ticket_id == reopened.ticket.id,
            Survey.created_at <= reopened.reopened_at,
            Survey.invalidated_at.is_(None),
        )
        .values(invalidated_at=now)
    )


def requested_event(new: NewSurvey) -> a.SurveyRequested:
    return requested_data(new.survey.model_dump(), new.token)


_CHANNELS = {c.value for c in Channel}


def requested_data(survey: Mapping[str, Any], token: str) -> a.SurveyRequested:
    """The `analytics.survey.requested.v1` data of a survey row (the token travels only in it)."""
    channel = survey.get("channel")
    return a.SurveyRequested(
        survey_id=survey["id"],
        token=token,
        channel=Channel(channel) if channel in _CHANNELS else None,
        ticket_id=survey.get("ticket_id"),
        customer_id=survey.get("customer_id"),
        client_id=survey.get("client_id"),
        expires_at=survey["expires_at"],
    )


async def survey_by_token(
    session: AsyncSession, token: str, *, now: datetime, for_update: bool = False
) -> Survey:
    """The survey a token opens: 404 for an unknown token, 410 once expired or withdrawn."""
    query = sa.select(Survey).where(Survey.token_hash == hash_token(token))
    if for_update:
        query = query.with_for_update()
    survey = (await session.execute(query)).scalar_one_or_none()
    if survey is None:
        raise Problem(404, "No survey has this token.", slug="not-found")
    if survey.expires_at <= now:
        raise Problem(410, "This survey has expired.", slug="survey-expired")
    if survey.invalidated_at is not None and survey.answered_at is None:
        raise Problem(410, "This survey was withdrawn: the ticket was reopened.", slug="survey-withdrawn")
    return survey


async def answer(
    session: AsyncSession,
    outbox: Outbox,
    survey: Survey,
    *,
    csat: int | None,
    nps: int | None,
    ces: int | None,
    comment: str | None,
    now: datetime,
) -> a.SurveyCompleted:
    """Record the only answer a survey takes and tell tickets (a low score reopens the ticket)."""
    if survey.answered_at is not None:
        raise Problem(409, "This survey has already been answered.", slug="already-answered")
    if csat is None and nps is None and ces is None:
        raise Problem(422, "Give at least one of csat, nps or ces.", slug="empty-answer")
    survey.csat, survey.nps, survey.ces, survey.comment = csat, nps, ces, comment
    survey.answered_at = now
    completed = a.SurveyCompleted(
        survey_id=survey.id,
        ticket_id=survey.ticket_id,
        customer_id=survey.customer_id,
        client_id=survey.client_id,
        csat=csat,
        nps=nps,
        ces=ces,
        comment=comment,
        completed_at=now,
    )
    await outbox.add(session, "analytics.survey.completed.v1", completed, subject=str(survey.id))
    metrics.SURVEYS.labels("completed").inc()
    return completed
