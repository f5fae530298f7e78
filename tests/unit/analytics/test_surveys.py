"""Surveys: created on resolution, token is the credential (stored hashed), once only, expiry, reopen."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from services.analytics.models import Survey
from services.analytics.surveys import hash_token
from shared.clock import utc_iso
from tests.conftest import bearer
from tests.unit.analytics.conftest import START, Analytics
from tests.unit.analytics.events import lifecycle, snapshot

ANALYST = bearer("analyst")
H = timedelta(hours=1)


async def resolve_one(analytics: Analytics, ticket: uuid.UUID | None = None) -> tuple[uuid.UUID, str]:
    ticket = ticket or uuid.uuid4()
    await analytics.deliver_all(lifecycle(ticket, START, responded_at=START + H, resolved_at=START + 2 * H))
    requested = [
        r for r in await analytics.published("analytics.survey.requested.v1") if r["ticket_id"] == str(ticket)
    ]
    assert len(requested) == 1
    return ticket, requested[0]["token"]


async def test_a_resolution_requests_one_survey_with_a_hashed_token(analytics: Analytics) -> None:
    ticket, token = await resolve_one(analytics)
    resolved = lifecycle(ticket, START, responded_at=START + H, resolved_at=START + 2 * H)[-1]
    await analytics.deliver(*resolved)  # the same resolution under a new event id
    assert len(await analytics.published("analytics.survey.requested.v1")) == 1
    async with analytics.runtime.db.transaction() as session:
        survey = (await session.execute(sa.select(Survey))).scalar_one()
    assert survey.token_hash == hash_token(token) and token not in survey.token_hash
    assert survey.expires_at == analytics.clock.now() + timedelta(days=28)
    form = await analytics.client.get(f"/v1/surveys/{token}")
    assert form.status_code == 200
    assert [q["id"] for q in form.json()["questions"]] == ["csat", "nps", "ces", "comment"]


async def test_answer_once_then_409_and_completed_event(analytics: Analytics) -> None:
    ticket, token = await resolve_one(analytics)
    answer = {"csat": 2, "nps": 3, "ces": 2, "comment": "还是漏水"}
    first = await analytics.client.post(f"/v1/surveys/{token}/responses", json=answer)
    assert first.status_code == 201, first.text
    again = await analytics.client.post(f"/v1/surveys/{token}/responses", json=answer)
    assert again.status_code == 409
    (completed,) = await analytics.published("analytics.survey.completed.v1")
    assert (
        completed["ticket_id"] == str(ticket)
        and completed["csat"] == 2
        and completed["comment"] == "还是漏水"
    )


async def test_unknown_expired_and_invalid_answers(analytics: Analytics) -> None:
    _, token = await resolve_one(analytics)
    assert (await analytics.client.get(f"/v1/surveys/{'x' * 43}")).status_code == 404
    out_of_range = await analytics.client.post(f"/v1/surveys/{token}/responses", json={"csat": 6})
    assert out_of_range.status_code == 422
    empty = await analytics.client.post(f"/v1/surveys/{token}/responses", json={})
    assert empty.status_code == 422
    analytics.clock.advance(timedelta(days=28, seconds=1))
    assert (await analytics.client.get(f"/v1/surveys/{token}")).status_code == 410
    assert (
        await analytics.client.post(f"/v1/surveys/{token}/responses", json={"csat": 5})
    ).status_code == 410


async def test_reopening_withdraws_the_earlier_rating(analytics: Analytics) -> None:
    ticket, token = await resolve_one(analytics)
    await analytics.client.post(f"/v1/surveys/{token}/responses", json={"csat": 1})
    reopened = {
        "ticket": snapshot(ticket, 4, "reopened", START),
        "reason": "low score",
        "reopened_by": "survey",
        "reopened_at": utc_iso(START + 5 * H),
    }
    analytics.clock.advance(6 * H)
    await analytics.deliver("tickets.ticket.reopened.v1", reopened)
    figures = await analytics.client.get(
        "/v1/metrics/satisfaction",
        params={"since": "2026-03-01T00:00:00Z", "until": "2026-03-05T00:00:00Z", "min_n": 1},
        headers=ANALYST,
    )
    assert figures.json()["overall"]["csat"]["status"] == "insufficient"
    assert figures.json()["overall"]["response_rate"]["delivered"] == 0


async def test_a_decided_client_presentation_requests_a_survey(analytics: Analytics) -> None:
    client_id = uuid.uuid4()
    decided: dict[str, Any] = {
        "proposal": {
            "id": str(uuid.uuid4()),
            "brief_id": str(uuid.uuid4()),
            "client_id": str(client_id),
            "round": 1,
            "stage": "client",
        },
        "decision": "approved",
        "decided_by": "client:王总",
        "decided_at": utc_iso(START),
    }
    await analytics.deliver("briefs.proposal.decided.v1", decided)
    (requested,) = await analytics.published("analytics.survey.requested.v1")
    assert requested["client_id"] == str(client_id) and requested["ticket_id"] is None
