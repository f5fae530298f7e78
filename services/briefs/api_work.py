"""briefs' routes for proposal rounds, cost estimates and meeting reports."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

import sqlalchemy as sa
from fastapi import APIRouter, Response

from services.briefs import estimate_service, meeting_service, proposal_service
from services.briefs.deps import IfMatch, TimersDep
from services.briefs.models import Estimate, Meeting, Proposal
from services.briefs.schemas import DecidedOut, DecisionIn, ProposalCreate, ProposalOut
from services.briefs.schemas_work import (
    ActualIn,
    ActualOut,
    ClientResponseIn,
    ConfirmIn,
    DeclineIn,
    EstimateCreate,
    EstimateOut,
    EstimateUpdate,
    MeetingCreate,
    MeetingOut,
)
from shared.app import ClockDep, OutboxDep, SessionDep
from shared.auth import Principal, require
from shared.concurrency import etag
from shared.contracts.briefs import ProposalStage
from shared.errors import problem_responses
from shared.idempotency import IdempotencyDep
from shared.pagination import Cursor, Limit, Page, keyset_page

proposals = APIRouter(prefix="/v1/proposals", tags=["proposals"], responses=problem_responses(401, 403))
estimates = APIRouter(prefix="/v1/estimates", tags=["estimates"], responses=problem_responses(401, 403))
meetings = APIRouter(prefix="/v1/meetings", tags=["meetings"], responses=problem_responses(401, 403))


def _proposal(p: Proposal, response: Response) -> ProposalOut:
    response.headers["ETag"] = etag(p.version)
    return ProposalOut.model_validate(p)


@proposals.post("", status_code=201, response_model=ProposalOut, responses=problem_responses(404, 409, 422))
async def add_round(
    body: ProposalCreate,
    session: SessionDep,
    clock: ClockDep,
    idempotency: IdempotencyDep,
    response: Response,
    principal: Annotated[Principal, require("proposals:write")],
) -> Any:
    """Prepare the next round (internal or client) of work on an approved brief; rounds are numbered."""
    if (replay := await idempotency.replay(session)) is not None:
        return replay
    proposal = await proposal_service.create_round(session, body, actor=principal.subject, clock=clock)
    out = _proposal(proposal, response)
    await idempotency.remember(
        session, status=201, body=out.model_dump(mode="json"), headers={"ETag": etag(proposal.version)}
    )
    return out


@proposals.get("", response_model=Page[ProposalOut], dependencies=[require("proposals:read")])
async def list_rounds(
    session: SessionDep,
    brief_id: uuid.UUID | None = None,
    client_id: uuid.UUID | None = None,
    stage: ProposalStage | None = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[ProposalOut]:
    """Proposal rounds, newest first, by brief, client or stage."""
    query = sa.select(Proposal)
    for column, value in (
        (Proposal.brief_id, brief_id),
        (Proposal.client_id, client_id),
        (Proposal.stage, stage),
    ):
        if value is not None:
            query = query.where(column == value)
    rows, next_cursor = await keyset_page(session, query, key=Proposal.id, limit=limit, cursor=cursor)
    return Page(items=[ProposalOut.model_validate(p) for p in rows], next_cursor=next_cursor)


@proposals.get(
    "/{proposal_id}",
    response_model=ProposalOut,
    dependencies=[require("proposals:read")],
    responses=problem_responses(404),
)
async def get_round(proposal_id: uuid.UUID, session: SessionDep, response: Response) -> ProposalOut:
    """One round."""
    return _proposal(await proposal_service.get_round(session, proposal_id), response)


@proposals.post("/{proposal_id}/present", response_model=ProposalOut, responses=problem_responses(404, 409))
async def present_round(
    proposal_id: uuid.UUID,
    session: SessionDep,
    outbox: OutboxDep,
    clock: ClockDep,
    response: Response,
    principal: Annotated[Principal, require("proposals:write")],
) -> ProposalOut:
    """The round was presented."""
    proposal = await proposal_service.present(
        session, proposal_id, actor=principal.subject, outbox=outbox, clock=clock
    )
    return _proposal(proposal, response)


@proposals.post(
    "/{proposal_id}/decide", response_model=DecidedOut, responses=problem_responses(404, 409, 422)
)
async def decide_round(
    proposal_id: uuid.UUID,
    body: DecisionIn,
    session: SessionDep,
    outbox: OutboxDep,
    clock: ClockDep,
    response: Response,
    principal: Annotated[Principal, require("proposals:write")],
) -> DecidedOut:
    """Decide the round: internal approved or sent_back; client approved, revise or rejected."""
    proposal, outcome = await proposal_service.decide(
        session, proposal_id, body, actor=principal.subject, outbox=outbox, clock=clock
    )
    return DecidedOut(proposal=_proposal(proposal, response), outcome=outcome.value)


async def _estimate(session: SessionDep, estimate: Estimate, response: Response) -> EstimateOut:
    response.headers["ETag"] = etag(estimate.version)
    return await estimate_service.estimate_out(session, estimate)


EstimateWriter = Annotated[Principal, require("estimates:write")]


@estimates.post("", status_code=201, response_model=EstimateOut, responses=problem_responses(404, 409, 422))
async def add_estimate(
    body: EstimateCreate,
    session: SessionDep,
    clock: ClockDep,
    idempotency: IdempotencyDep,
    response: Response,
    principal: EstimateWriter,
) -> Any:
    """A cost estimate with line items (exact decimals; CNY unless said otherwise), as a draft."""
    if (replay := await idempotency.replay(session)) is not None:
        return replay
    estimate = await estimate_service.create(session, body, actor=principal.subject, clock=clock)
    out = await _estimate(session, estimate, response)
    await idempotency.remember(
        session, status=201, body=out.model_dump(mode="json"), headers={"ETag": etag(estimate.version)}
    )
    return out


@estimates.get("", response_model=Page[EstimateOut], dependencies=[require("estimates:read")])
async def list_estimates(
    session: SessionDep,
    client_id: uuid.UUID | None = None,
    brief_id: uuid.UUID | None = None,
    status: Literal["draft", "sent", "confirmed", "declined"] | None = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[EstimateOut]:
    """Estimates, newest first."""
    query = sa.select(Estimate)
    for column, value in (
        (Estimate.client_id, client_id),
        (Estimate.brief_id, brief_id),
        (Estimate.status, status),
    ):
        if value is not None:
            query = query.where(column == value)
    rows, next_cursor = await keyset_page(session, query, key=Estimate.id, limit=limit, cursor=cursor)
    return Page(
        items=[await estimate_service.estimate_out(session, e) for e in rows], next_cursor=next_cursor
    )


@estimates.get(
    "/{estimate_id}",
    response_model=EstimateOut,
    dependencies=[require("estimates:read")],
    responses=problem_responses(404),
)
async def get_estimate(estimate_id: uuid.UUID, session: SessionDep, response: Response) -> EstimateOut:
    """One estimate at its current version, with its confirmations and spending."""
    return await _estimate(session, await estimate_service.get(session, estimate_id), response)


@estimates.patch(
    "/{estimate_id}", response_model=EstimateOut, responses=problem_responses(404, 409, 412, 422)
)
async def edit_estimate(
    estimate_id: uuid.UUID,
    body: EstimateUpdate,
    session: SessionDep,
    clock: ClockDep,
    response: Response,
    principal: EstimateWriter,
    if_match: IfMatch = None,
) -> EstimateOut:
    """Change the lines (a new version); beyond its tolerance a confirmed estimate is confirmed again."""
    estimate = await estimate_service.edit(
        session, estimate_id, body, if_match=if_match, actor=principal.subject, clock=clock
    )
    return await _estimate(session, estimate, response)


@estimates.post("/{estimate_id}/send", response_model=EstimateOut, responses=problem_responses(404, 409))
async def send_estimate(
    estimate_id: uuid.UUID, session: SessionDep, clock: ClockDep, response: Response, _: EstimateWriter
) -> EstimateOut:
    """The estimate went to the client for written confirmation."""
    return await _estimate(session, await estimate_service.send(session, estimate_id, clock=clock), response)


@estimates.post(
    "/{estimate_id}/confirm", response_model=EstimateOut, responses=problem_responses(404, 409, 422)
)
async def confirm_estimate(
    estimate_id: uuid.UUID,
    body: ConfirmIn,
    session: SessionDep,
    outbox: OutboxDep,
    clock: ClockDep,
    response: Response,
    principal: EstimateWriter,
) -> EstimateOut:
    """Record the client's written confirmation of the version whose digest it quotes."""
    estimate = await estimate_service.confirm(
        session, estimate_id, body, actor=principal.subject, outbox=outbox, clock=clock
    )
    return await _estimate(session, estimate, response)


@estimates.post(
    "/{estimate_id}/decline", response_model=EstimateOut, responses=problem_responses(404, 409, 422)
)
async def decline_estimate(
    estimate_id: uuid.UUID,
    body: DeclineIn,
    session: SessionDep,
    clock: ClockDep,
    response: Response,
    _: EstimateWriter,
) -> EstimateOut:
    """The client declined the estimate."""
    return await _estimate(
        session, await estimate_service.decline(session, estimate_id, body.reason, clock=clock), response
    )


@estimates.post(
    "/{estimate_id}/actuals",
    status_code=201,
    response_model=ActualOut,
    responses=problem_responses(404, 409, 422),
)
async def record_actual(
    estimate_id: uuid.UUID,
    body: ActualIn,
    session: SessionDep,
    clock: ClockDep,
    outbox: OutboxDep,
    idempotency: IdempotencyDep,
    principal: EstimateWriter,
) -> Any:
    """Record money actually spent against a confirmed estimate."""
    if (replay := await idempotency.replay(session)) is not None:
        return replay
    cost = await estimate_service.record_actual(
        session, estimate_id, body, actor=principal.subject, clock=clock, outbox=outbox
    )
    out = ActualOut.model_validate(cost)
    await idempotency.remember(session, status=201, body=out.model_dump(mode="json"))
    return out


@estimates.get(
    "/{estimate_id}/actuals",
    response_model=list[ActualOut],
    dependencies=[require("estimates:read")],
    responses=problem_responses(404),
)
async def list_actuals(estimate_id: uuid.UUID, session: SessionDep) -> list[ActualOut]:
    """Actual costs recorded against the estimate."""
    return [ActualOut.model_validate(c) for c in await estimate_service.actuals(session, estimate_id)]


@meetings.post("", status_code=201, response_model=MeetingOut, responses=problem_responses(404, 409, 422))
async def report_meeting(
    body: MeetingCreate,
    session: SessionDep,
    clock: ClockDep,
    timers: TimersDep,
    idempotency: IdempotencyDep,
    response: Response,
    principal: Annotated[Principal, require("meetings:write")],
) -> Any:
    """Issue a meeting report; its action items become milestones for their owners."""
    if (replay := await idempotency.replay(session)) is not None:
        return replay
    meeting = await meeting_service.record(session, body, actor=principal.subject, clock=clock, timers=timers)
    out = meeting_service.meeting_out(meeting, clock.now())
    await idempotency.remember(
        session, status=201, body=out.model_dump(mode="json"), headers={"ETag": etag(meeting.version)}
    )
    response.headers["ETag"] = etag(meeting.version)
    return out


@meetings.get("", response_model=Page[MeetingOut], dependencies=[require("meetings:read")])
async def list_meetings(
    session: SessionDep,
    clock: ClockDep,
    client_id: uuid.UUID | None = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[MeetingOut]:
    """Meeting reports, newest first."""
    query = sa.select(Meeting)
    if client_id is not None:
        query = query.where(Meeting.client_id == client_id)
    rows, next_cursor = await keyset_page(session, query, key=Meeting.id, limit=limit, cursor=cursor)
    now = clock.now()
    return Page(items=[meeting_service.meeting_out(m, now) for m in rows], next_cursor=next_cursor)


@meetings.get(
    "/{meeting_id}",
    response_model=MeetingOut,
    dependencies=[require("meetings:read")],
    responses=problem_responses(404),
)
async def get_meeting(
    meeting_id: uuid.UUID, session: SessionDep, clock: ClockDep, response: Response
) -> MeetingOut:
    """One meeting report with its acceptance status."""
    meeting = await meeting_service.get(session, meeting_id)
    response.headers["ETag"] = etag(meeting.version)
    return meeting_service.meeting_out(meeting, clock.now())


@meetings.post(
    "/{meeting_id}/client-response",
    response_model=MeetingOut,
    dependencies=[require("meetings:write")],
    responses=problem_responses(404, 409, 422),
)
async def client_response(
    meeting_id: uuid.UUID, body: ClientResponseIn, session: SessionDep, clock: ClockDep, response: Response
) -> MeetingOut:
    """Record the client's acceptance of, or comments on, the report (before it is deemed accepted)."""
    meeting = await meeting_service.respond(session, meeting_id, body, clock=clock)
    response.headers["ETag"] = etag(meeting.version)
    return meeting_service.meeting_out(meeting, clock.now())
