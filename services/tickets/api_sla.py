"""tickets' HTTP routes for the SLA engine: policies, calendars, and a ticket's clocks explained."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Header, Response
from sqlalchemy.exc import IntegrityError

from services.tickets import clocks, sla
from services.tickets import schemas as s
from services.tickets.calendars import CalendarError
from services.tickets.models import Calendar, SlaPolicy
from services.tickets.service import get_ticket
from shared.app import ClockDep, SessionDep
from shared.auth import require
from shared.concurrency import check_if_match, etag
from shared.errors import Problem, not_found, problem_responses

router = APIRouter(prefix="/v1", tags=["sla"], responses=problem_responses(401, 403))


def _policy_row(body: s.PolicyIn) -> dict[str, Any]:
    data = body.model_dump(mode="json")
    data["targets"] = {k: v for k, v in data["targets"].items() if v is not None}
    data["warning"] = {k: v for k, v in data["warning"].items() if v is not None}
    data["calendar_id"] = body.calendar_id
    return data


async def _check_calendar(session: Any, calendar_id: uuid.UUID | None) -> None:
    if calendar_id is not None and await session.get(Calendar, calendar_id) is None:
        raise Problem(422, f"Calendar {calendar_id} does not exist.", slug="validation")


@router.get("/sla-policies", response_model=list[s.PolicyOut], dependencies=[require("tickets:read")])
async def list_policies(session: SessionDep) -> list[s.PolicyOut]:
    """All policies in matching order: the first whose conditions match a ticket applies."""
    rows = (
        await session.execute(sa.select(SlaPolicy).order_by(SlaPolicy.position, SlaPolicy.name))
    ).scalars()
    return [s.PolicyOut.model_validate(r) for r in rows]


@router.post(
    "/sla-policies",
    status_code=201,
    response_model=s.PolicyOut,
    dependencies=[require("sla:write")],
    responses=problem_responses(409, 422),
)
async def create_policy(
    body: s.PolicyIn, session: SessionDep, clock: ClockDep, response: Response
) -> s.PolicyOut:
    """Add a policy; it applies to tickets opened from now on."""
    await _check_calendar(session, body.calendar_id)
    policy = SlaPolicy(**_policy_row(body), created_at=clock.now())
    session.add(policy)
    sla.forget_policies(session)
    try:
        await session.flush()
    except IntegrityError:
        raise Problem(409, f"A policy named {body.name!r} exists.", slug="duplicate") from None
    response.headers["ETag"] = etag(policy.version)
    return s.PolicyOut.model_validate(policy)


@router.get(
    "/sla-policies/{policy_id}",
    response_model=s.PolicyOut,
    dependencies=[require("tickets:read")],
    responses=problem_responses(404),
)
async def read_policy(policy_id: uuid.UUID, session: SessionDep, response: Response) -> s.PolicyOut:
    """One policy."""
    policy = await session.get(SlaPolicy, policy_id)
    if policy is None:
        raise not_found("SLA policy", policy_id)
    response.headers["ETag"] = etag(policy.version)
    return s.PolicyOut.model_validate(policy)


@router.put(
    "/sla-policies/{policy_id}",
    response_model=s.PolicyOut,
    dependencies=[require("sla:write")],
    responses=problem_responses(404, 409, 412, 422),
)
async def replace_policy(
    policy_id: uuid.UUID,
    body: s.PolicyIn,
    session: SessionDep,
    response: Response,
    if_match: Annotated[str | None, Header(alias="If-Match")] = None,
) -> s.PolicyOut:
    """Replace a policy (If-Match honoured); running clocks keep the targets they started with."""
    policy = await session.get(SlaPolicy, policy_id)
    if policy is None:
        raise not_found("SLA policy", policy_id)
    check_if_match(if_match, policy.version)
    await _check_calendar(session, body.calendar_id)
    for key, value in _policy_row(body).items():
        setattr(policy, key, value)
    policy.version += 1
    sla.forget_policies(session)
    try:
        await session.flush()
    except IntegrityError:
        raise Problem(409, f"A policy named {body.name!r} exists.", slug="duplicate") from None
    response.headers["ETag"] = etag(policy.version)
    return s.PolicyOut.model_validate(policy)


@router.get("/calendars", response_model=list[s.CalendarOut], dependencies=[require("tickets:read")])
async def list_calendars(session: SessionDep) -> list[s.CalendarOut]:
    """Business calendars SLA policies count time in."""
    rows = (await session.execute(sa.select(Calendar).order_by(Calendar.name))).scalars()
    return [s.CalendarOut.model_validate(r) for r in rows]


@router.post(
    "/calendars",
    status_code=201,
    response_model=s.CalendarOut,
    dependencies=[require("sla:write")],
    responses=problem_responses(409, 422),
)
async def create_calendar(body: s.CalendarIn, session: SessionDep, clock: ClockDep) -> s.CalendarOut:
    """Add a calendar: 24×7, or business hours per weekday in a time zone with holidays."""
    row = Calendar(**body.model_dump(mode="json"), created_at=clock.now())
    try:
        sla.to_calendar(row)
    except CalendarError as exc:
        raise Problem(422, str(exc), slug="validation") from None
    session.add(row)
    try:
        await session.flush()
    except IntegrityError:
        raise Problem(409, f"A calendar named {body.name!r} exists.", slug="duplicate") from None
    return s.CalendarOut.model_validate(row)


@router.get(
    "/calendars/{calendar_id}",
    response_model=s.CalendarOut,
    dependencies=[require("tickets:read")],
    responses=problem_responses(404),
)
async def read_calendar(calendar_id: uuid.UUID, session: SessionDep) -> s.CalendarOut:
    """One calendar."""
    row = await session.get(Calendar, calendar_id)
    if row is None:
        raise not_found("calendar", calendar_id)
    return s.CalendarOut.model_validate(row)


@router.get(
    "/tickets/{ticket_id}/sla",
    response_model=s.SlaView,
    dependencies=[require("tickets:read")],
    responses=problem_responses(404),
    tags=["tickets"],
)
async def ticket_sla(ticket_id: uuid.UUID, session: SessionDep, clock: ClockDep) -> s.SlaView:
    """Each SLA clock explained: target, open time elapsed, paused time, due and warning times, segments."""
    ticket = await get_ticket(session, ticket_id)
    now = clock.now()
    views = []
    for row in await sla.clocks_of(session, ticket.id):
        calendar = await sla.calendar_for(session, row.calendar_id)
        ran = clocks.elapsed(row, calendar, now).total_seconds()
        end = row.stopped_at or row.due_at or now
        views.append(
            s.ClockView(
                metric=row.metric,
                cycle=row.cycle,
                state=clocks.state_of(row),
                target_seconds=row.target_seconds,
                elapsed_seconds=ran,
                paused_seconds=clocks.paused_time(row, now).total_seconds(),
                remaining_seconds=row.target_seconds - ran,
                started_at=row.started_at,
                due_at=row.due_at,
                warn_at=row.warn_at,
                breached_at=row.breached_at,
                stopped_at=row.stopped_at,
                calendar=calendar.name,
                calendar_notes=calendar.explain(row.started_at, max(end, row.started_at)),
                segments=row.segments,
            )
        )
    return s.SlaView(
        ticket_id=ticket.id,
        policy_id=ticket.policy_id,
        policy_name=ticket.policy_name,
        breached=ticket.sla_breached,
        at_risk=ticket.sla_at_risk,
        escalation_level=ticket.escalation_level,
        clocks=views,
    )
