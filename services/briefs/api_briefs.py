"""briefs' brief routes: typed briefs and their versions, sign-off actions, booking, and milestones."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

import sqlalchemy as sa
from fastapi import APIRouter, Query, Response

from services.briefs import brief_service, traffic
from services.briefs.deps import IfMatch, TimersDep
from services.briefs.models import Brief
from services.briefs.schemas import (
    BookIn,
    BriefCreate,
    BriefOut,
    BriefUpdate,
    BriefVersionOut,
    ReturnIn,
    SignOffOut,
    SignOffRuleIn,
    SignOffRuleOut,
)
from services.briefs.schemas_work import MilestoneCreate, MilestoneOut, MilestoneUpdate
from services.briefs.signoff import IllegalTransition
from shared.app import ClockDep, OutboxDep, SessionDep
from shared.auth import Principal, require
from shared.concurrency import etag
from shared.contracts.briefs import BriefType
from shared.errors import Problem, conflict, problem_responses
from shared.idempotency import IdempotencyDep
from shared.pagination import Cursor, Limit, Page, keyset_page

router = APIRouter(prefix="/v1/briefs", tags=["briefs"], responses=problem_responses(401, 403))

Reader = Annotated[Principal, require("briefs:read")]
Writer = Annotated[Principal, require("briefs:write")]


async def _answer(session: SessionDep, brief: Brief, response: Response) -> BriefOut:
    response.headers["ETag"] = etag(brief.version)
    return await brief_service.brief_out(session, brief)


# --- sign-off rules and milestones come first: their paths would otherwise read as a brief id ---


@router.get("/sign-off-rules", response_model=list[SignOffRuleOut], tags=["sign-off"])
async def list_signoff_rules(session: SessionDep, _: Reader) -> list[SignOffRuleOut]:
    """The roles that must sign each brief type."""
    return [SignOffRuleOut.model_validate(r) for r in await brief_service.signoff_rules(session)]


@router.put(
    "/sign-off-rules/{brief_type}",
    response_model=SignOffRuleOut,
    tags=["sign-off"],
    responses=problem_responses(422),
)
async def set_signoff_rule(
    brief_type: BriefType,
    body: SignOffRuleIn,
    session: SessionDep,
    clock: ClockDep,
    principal: Annotated[Principal, require("briefs:approve")],
) -> SignOffRuleOut:
    """Set the roles a brief type needs; briefs already submitted keep the roles they were submitted with."""
    if not principal.roles & {"admin", "account_director"}:
        raise Problem(403, "Sign-off rules are set by an account director or an admin.", slug="forbidden")
    rule = await brief_service.set_signoff_rule(
        session, brief_type, list(body.roles), actor=principal.subject, clock=clock
    )
    return SignOffRuleOut.model_validate(rule)


@router.post(
    "/milestones",
    status_code=201,
    response_model=MilestoneOut,
    tags=["traffic"],
    responses=problem_responses(404, 422),
)
async def add_milestone(
    body: MilestoneCreate,
    session: SessionDep,
    clock: ClockDep,
    timers: TimersDep,
    idempotency: IdempotencyDep,
    response: Response,
    principal: Writer,
) -> Any:
    """Promise a date: a milestone on a brief, a proposal round or a client, with an owner."""
    if (replay := await idempotency.replay(session)) is not None:
        return replay
    milestone = await traffic.create(session, body, actor=principal.subject, clock=clock, timers=timers)
    out = MilestoneOut.model_validate(milestone)
    await idempotency.remember(
        session, status=201, body=out.model_dump(mode="json"), headers={"ETag": etag(milestone.version)}
    )
    response.headers["ETag"] = etag(milestone.version)
    return out


@router.get("/milestones", response_model=Page[MilestoneOut], tags=["traffic"])
async def list_milestones(
    session: SessionDep,
    clock: ClockDep,
    _: Reader,
    view: Literal["upcoming", "overdue", "all"] = "upcoming",
    owner: Annotated[str | None, Query(max_length=200, description="A person's milestones.")] = None,
    client_id: uuid.UUID | None = None,
    brief_id: uuid.UUID | None = None,
    within_days: Annotated[int, Query(ge=1, le=366)] = 14,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[MilestoneOut]:
    """Milestones soonest first, per person, client or brief: upcoming, overdue, or all."""
    query = traffic.listing(
        view=view,
        now=clock.now(),
        client_id=client_id,
        owner=owner,
        brief_id=brief_id,
        within_days=within_days,
    )
    rows, next_cursor = await traffic.due_page(session, query, limit=limit, cursor=cursor)
    return Page(items=[MilestoneOut.model_validate(m) for m in rows], next_cursor=next_cursor)


@router.get(
    "/milestones/{milestone_id}",
    response_model=MilestoneOut,
    tags=["traffic"],
    responses=problem_responses(404),
)
async def get_milestone(
    milestone_id: uuid.UUID, session: SessionDep, response: Response, _: Reader
) -> MilestoneOut:
    """One milestone."""
    milestone = await traffic.get(session, milestone_id)
    response.headers["ETag"] = etag(milestone.version)
    return MilestoneOut.model_validate(milestone)


@router.patch(
    "/milestones/{milestone_id}",
    response_model=MilestoneOut,
    tags=["traffic"],
    responses=problem_responses(404, 409, 412, 422),
)
async def update_milestone(
    milestone_id: uuid.UUID,
    body: MilestoneUpdate,
    session: SessionDep,
    timers: TimersDep,
    response: Response,
    _: Writer,
    if_match: IfMatch = None,
) -> MilestoneOut:
    """Rename, reassign or reschedule a milestone (a new date reopens a missed one)."""
    try:
        milestone = await traffic.update(session, milestone_id, body, if_match=if_match, timers=timers)
    except IllegalTransition as exc:
        raise conflict(exc.detail, allowed=exc.allowed) from None
    response.headers["ETag"] = etag(milestone.version)
    return MilestoneOut.model_validate(milestone)


@router.post(
    "/milestones/{milestone_id}/deliver",
    response_model=MilestoneOut,
    tags=["traffic"],
    responses=problem_responses(404, 409),
)
async def deliver_milestone(
    milestone_id: uuid.UUID,
    session: SessionDep,
    clock: ClockDep,
    timers: TimersDep,
    outbox: OutboxDep,
    response: Response,
    principal: Writer,
) -> MilestoneOut:
    """The promised work was delivered."""
    try:
        milestone = await traffic.deliver(
            session, milestone_id, actor=principal.subject, clock=clock, timers=timers, outbox=outbox
        )
    except IllegalTransition as exc:
        raise conflict(exc.detail, allowed=exc.allowed) from None
    response.headers["ETag"] = etag(milestone.version)
    return MilestoneOut.model_validate(milestone)


# --- briefs ---


@router.post("", status_code=201, response_model=BriefOut, responses=problem_responses(400, 404, 409, 422))
async def create_brief(
    body: BriefCreate,
    session: SessionDep,
    clock: ClockDep,
    idempotency: IdempotencyDep,
    response: Response,
    principal: Writer,
) -> Any:
    """Write a client, creative, media or research brief (version 1, a draft)."""
    if (replay := await idempotency.replay(session)) is not None:
        return replay
    brief = await brief_service.create_brief(session, body, actor=principal.subject, clock=clock)
    out = await _answer(session, brief, response)
    await idempotency.remember(
        session, status=201, body=out.model_dump(mode="json"), headers={"ETag": etag(brief.version)}
    )
    return out


@router.get("", response_model=Page[BriefOut])
async def list_briefs(
    session: SessionDep,
    _: Reader,
    client_id: uuid.UUID | None = None,
    type: BriefType | None = None,
    status: Literal["draft", "submitted", "approved", "returned"] | None = None,
    parent_id: uuid.UUID | None = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[BriefOut]:
    """Briefs, newest first, by client, type, status or parent client brief."""
    query = sa.select(Brief)
    for column, value in (
        (Brief.client_id, client_id),
        (Brief.type, type),
        (Brief.status, status),
        (Brief.parent_id, parent_id),
    ):
        if value is not None:
            query = query.where(column == value)
    rows, next_cursor = await keyset_page(session, query, key=Brief.id, limit=limit, cursor=cursor)
    return Page(items=[await brief_service.brief_out(session, b) for b in rows], next_cursor=next_cursor)


@router.get("/{brief_id}", response_model=BriefOut, responses=problem_responses(404))
async def get_brief(brief_id: uuid.UUID, session: SessionDep, response: Response, _: Reader) -> BriefOut:
    """One brief at its current version, with its sign-off state."""
    return await _answer(session, await brief_service.get_brief(session, brief_id), response)


@router.patch("/{brief_id}", response_model=BriefOut, responses=problem_responses(404, 409, 412, 422))
async def edit_brief(
    brief_id: uuid.UUID,
    body: BriefUpdate,
    session: SessionDep,
    clock: ClockDep,
    response: Response,
    principal: Writer,
    if_match: IfMatch = None,
) -> BriefOut:
    """Edit a brief: a new version; an approved brief goes back to draft and must be signed again."""
    brief = await brief_service.edit_brief(
        session, brief_id, body, if_match=if_match, actor=principal.subject, clock=clock
    )
    return await _answer(session, brief, response)


@router.get("/{brief_id}/versions", response_model=list[BriefVersionOut], responses=problem_responses(404))
async def brief_versions(brief_id: uuid.UUID, session: SessionDep, _: Reader) -> list[BriefVersionOut]:
    """Every version of the brief, newest first."""
    return [BriefVersionOut.model_validate(v) for v in await brief_service.versions(session, brief_id)]


@router.get(
    "/{brief_id}/sign-offs",
    response_model=list[SignOffOut],
    tags=["sign-off"],
    responses=problem_responses(404),
)
async def brief_signoffs(brief_id: uuid.UUID, session: SessionDep, _: Reader) -> list[SignOffOut]:
    """Every signature and return, each pinned to the version it was given on."""
    return [SignOffOut.model_validate(s) for s in await brief_service.signoffs(session, brief_id)]


@router.post(
    "/{brief_id}/submit", response_model=BriefOut, tags=["sign-off"], responses=problem_responses(404, 409)
)
async def submit_brief(
    brief_id: uuid.UUID,
    session: SessionDep,
    outbox: OutboxDep,
    clock: ClockDep,
    response: Response,
    principal: Writer,
) -> BriefOut:
    """Submit the current version for the sign-offs its type requires."""
    brief = await brief_service.submit(session, brief_id, actor=principal.subject, outbox=outbox, clock=clock)
    return await _answer(session, brief, response)


@router.post(
    "/{brief_id}/withdraw", response_model=BriefOut, tags=["sign-off"], responses=problem_responses(404, 409)
)
async def withdraw_brief(
    brief_id: uuid.UUID, session: SessionDep, clock: ClockDep, response: Response, _: Writer
) -> BriefOut:
    """Take a submitted brief back to draft."""
    return await _answer(session, await brief_service.withdraw(session, brief_id, clock=clock), response)


@router.post(
    "/{brief_id}/sign", response_model=BriefOut, tags=["sign-off"], responses=problem_responses(404, 409)
)
async def sign_brief(
    brief_id: uuid.UUID,
    session: SessionDep,
    outbox: OutboxDep,
    clock: ClockDep,
    response: Response,
    principal: Reader,
) -> BriefOut:
    """Sign the current version in a required role you hold (403 if you hold none still awaited)."""
    brief = await brief_service.sign(session, brief_id, principal=principal, outbox=outbox, clock=clock)
    return await _answer(session, brief, response)


@router.post(
    "/{brief_id}/return",
    response_model=BriefOut,
    tags=["sign-off"],
    responses=problem_responses(404, 409, 422),
)
async def return_brief(
    brief_id: uuid.UUID,
    body: ReturnIn,
    session: SessionDep,
    outbox: OutboxDep,
    clock: ClockDep,
    response: Response,
    principal: Reader,
) -> BriefOut:
    """Return the brief with comments (a holder of a required role)."""
    brief = await brief_service.give_back(
        session, brief_id, body.comments, principal=principal, outbox=outbox, clock=clock
    )
    return await _answer(session, brief, response)


@router.post(
    "/{brief_id}/book",
    response_model=BriefOut,
    tags=["estimates"],
    responses=problem_responses(404, 409, 422),
)
async def book_media(
    brief_id: uuid.UUID,
    body: BookIn,
    session: SessionDep,
    clock: ClockDep,
    response: Response,
    principal: Writer,
) -> BriefOut:
    """Mark an approved media plan booked; refused (409) without an estimate the client confirmed."""
    brief = await brief_service.book_media(
        session, brief_id, body.estimate_id, actor=principal.subject, clock=clock
    )
    return await _answer(session, brief, response)
