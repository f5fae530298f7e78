"""briefs' client routes: clients, dossiers, and what is reported per client (traffic, money, status)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

import sqlalchemy as sa
from fastapi import APIRouter, Header, Query, Response
from fastapi.responses import HTMLResponse, PlainTextResponse

from services.briefs import reconciliation, service, status_report, traffic
from services.briefs.deps import IfMatch, TimersDep
from services.briefs.dossier import Heading
from services.briefs.models import Client
from services.briefs.schemas import (
    ClientCreate,
    ClientOut,
    ClientUpdate,
    DossierOut,
    DossierSectionIn,
    DossierSectionOut,
)
from services.briefs.schemas_work import MilestoneOut, ReconciliationOut
from shared.app import ClockDep, SessionDep
from shared.auth import Principal, require
from shared.concurrency import etag
from shared.errors import problem_responses
from shared.idempotency import IdempotencyDep
from shared.pagination import Cursor, Limit, Page, keyset_page

router = APIRouter(prefix="/v1", tags=["clients"], responses=problem_responses(401, 403))

View = Literal["upcoming", "overdue", "all"]


@router.post(
    "/clients",
    status_code=201,
    response_model=ClientOut,
    responses=problem_responses(400, 409, 422),
)
async def add_client(
    body: ClientCreate,
    session: SessionDep,
    clock: ClockDep,
    timers: TimersDep,
    idempotency: IdempotencyDep,
    response: Response,
    principal: Annotated[Principal, require("clients:write")],
) -> Any:
    """Add an advertiser the agency serves, with its account team; its yearly formal briefing is scheduled."""
    if (replay := await idempotency.replay(session)) is not None:
        return replay
    client = await service.add_client(session, body, actor=principal.subject, clock=clock, timers=timers)
    out = ClientOut.model_validate(client)
    await idempotency.remember(
        session, status=201, body=out.model_dump(mode="json"), headers={"ETag": etag(client.version)}
    )
    response.headers["ETag"] = etag(client.version)
    return out


@router.get(
    "/clients/{client_id}",
    response_model=ClientOut,
    dependencies=[require("clients:read")],
    responses=problem_responses(404),
)
async def get_client(client_id: uuid.UUID, session: SessionDep, response: Response) -> ClientOut:
    """One client."""
    client = await service.get_client(session, client_id)
    response.headers["ETag"] = etag(client.version)
    return ClientOut.model_validate(client)


@router.patch(
    "/clients/{client_id}",
    response_model=ClientOut,
    dependencies=[require("clients:write")],
    responses=problem_responses(404, 412, 422),
)
async def update_client(
    client_id: uuid.UUID,
    body: ClientUpdate,
    session: SessionDep,
    clock: ClockDep,
    response: Response,
    if_match: IfMatch = None,
) -> ClientOut:
    """Change a client's name, industry or account team."""
    client = await service.update_client(session, client_id, body, if_match=if_match, clock=clock)
    response.headers["ETag"] = etag(client.version)
    return ClientOut.model_validate(client)


@router.get("/clients", response_model=Page[ClientOut], dependencies=[require("clients:read")])
async def list_clients(
    session: SessionDep,
    limit: Limit = 50,
    cursor: Cursor = None,
    status: Annotated[Literal["active", "ended"] | None, Query()] = None,
) -> Page[ClientOut]:
    """Clients, newest first."""
    query = sa.select(Client)
    if status is not None:
        query = query.where(Client.status == status)
    clients, next_cursor = await keyset_page(session, query, key=Client.id, limit=limit, cursor=cursor)
    return Page(items=[ClientOut.model_validate(c) for c in clients], next_cursor=next_cursor)


@router.get(
    "/clients/{client_id}/dossier",
    response_model=DossierOut,
    dependencies=[require("clients:read")],
    tags=["dossier"],
    responses=problem_responses(404),
)
async def get_dossier(
    client_id: uuid.UUID,
    session: SessionDep,
    clock: ClockDep,
    stale_after_days: Annotated[
        int, Query(ge=1, le=3650, description="A section older than this is stale.")
    ] = 180,
) -> DossierOut:
    """The dossier's current sections, its completeness over the sixteen headings, and stale sections."""
    return await service.dossier(session, client_id, stale_after_days=stale_after_days, clock=clock)


@router.put(
    "/clients/{client_id}/dossier/{heading}",
    response_model=DossierSectionOut,
    tags=["dossier"],
    responses=problem_responses(404, 422),
)
async def write_dossier_section(
    client_id: uuid.UUID,
    heading: Heading,
    body: DossierSectionIn,
    session: SessionDep,
    clock: ClockDep,
    principal: Annotated[Principal, require("clients:write")],
) -> DossierSectionOut:
    """Write a new version of one dossier heading; earlier versions are kept."""
    section = await service.write_section(
        session, client_id, heading, body.content, actor=principal.subject, clock=clock
    )
    return service.section_out(section)


@router.get(
    "/clients/{client_id}/dossier/{heading}/versions",
    response_model=list[DossierSectionOut],
    dependencies=[require("clients:read")],
    tags=["dossier"],
    responses=problem_responses(404),
)
async def dossier_section_history(
    client_id: uuid.UUID, heading: Heading, session: SessionDep
) -> list[DossierSectionOut]:
    """Every version of one heading, newest first, with who wrote it and when."""
    return [service.section_out(s) for s in await service.section_history(session, client_id, heading)]


@router.get(
    "/clients/{client_id}/milestones",
    response_model=Page[MilestoneOut],
    dependencies=[require("briefs:read")],
    tags=["traffic"],
    responses=problem_responses(404),
)
async def client_milestones(
    client_id: uuid.UUID,
    session: SessionDep,
    clock: ClockDep,
    view: View = "upcoming",
    within_days: Annotated[int, Query(ge=1, le=366)] = 14,
    owner: Annotated[str | None, Query(max_length=200)] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[MilestoneOut]:
    """A client's milestones, soonest first: upcoming (within `within_days`), overdue, or all."""
    await service.get_client(session, client_id)
    query = traffic.listing(
        view=view, now=clock.now(), client_id=client_id, owner=owner, within_days=within_days
    )
    rows, next_cursor = await traffic.due_page(session, query, limit=limit, cursor=cursor)
    return Page(items=[MilestoneOut.model_validate(m) for m in rows], next_cursor=next_cursor)


@router.get(
    "/clients/{client_id}/reconciliation",
    response_model=ReconciliationOut,
    dependencies=[require("estimates:read")],
    tags=["estimates"],
    responses=problem_responses(404, 422),
)
async def monthly_reconciliation(
    client_id: uuid.UUID,
    session: SessionDep,
    month: Annotated[str, Query(pattern=r"^\d{4}-\d{2}$", examples=["2026-11"])],
) -> ReconciliationOut:
    """A month's budget reconciliation: each estimate's confirmed total against actual costs."""
    return await reconciliation.reconcile(session, client_id, month)


@router.get(
    "/clients/{client_id}/status-report",
    response_model=status_report.StatusReport,
    dependencies=[require("clients:read")],
    tags=["reports"],
    responses={
        **problem_responses(404, 422),
        200: {"content": {"text/markdown": {}, "text/html": {}}, "description": "The report"},
    },
)
async def weekly_status_report(
    client_id: uuid.UUID,
    session: SessionDep,
    clock: ClockDep,
    week: Annotated[
        str | None, Query(examples=["2026-W47"], description="ISO week; this week if absent.")
    ] = None,
    format: Annotated[Literal["json", "markdown", "html"] | None, Query()] = None,
    accept: Annotated[str | None, Header()] = None,
) -> Any:
    """The weekly status report: jobs, status, next steps, dates, overdue items and the week's decisions."""
    now = clock.now()
    report = await status_report.build(
        session, client_id, status_report.parse_week(week or status_report.week_of(now)), now=now
    )
    wanted = format or (
        "html"
        if accept and "text/html" in accept
        else "markdown"
        if accept and "text/markdown" in accept
        else "json"
    )
    if wanted == "markdown":
        return PlainTextResponse(status_report.to_markdown(report), media_type="text/markdown; charset=utf-8")
    if wanted == "html":
        return HTMLResponse(status_report.to_html(report))
    return report
