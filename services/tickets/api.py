"""tickets' HTTP routes."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Query, Response

from services.tickets import service
from services.tickets.models import Ticket
from services.tickets.schemas import TicketCreate, TicketOut
from shared.app import ClockDep, OutboxDep, SessionDep
from shared.auth import require
from shared.concurrency import etag
from shared.contracts.common import ContactKind, Priority
from shared.errors import problem_responses
from shared.idempotency import IdempotencyDep
from shared.pagination import Cursor, Limit, Page, keyset_page

router = APIRouter(prefix="/v1", tags=["tickets"], responses=problem_responses(401, 403))


@router.post(
    "/tickets",
    status_code=201,
    response_model=TicketOut,
    dependencies=[require("tickets:write")],
    responses=problem_responses(400, 409, 422),
)
async def open_ticket(
    body: TicketCreate,
    session: SessionDep,
    outbox: OutboxDep,
    clock: ClockDep,
    idempotency: IdempotencyDep,
    response: Response,
) -> Any:
    """Open a ticket directly (tickets also open by themselves from intake's contacts)."""
    if (replay := await idempotency.replay(session)) is not None:
        return replay
    ticket = await service.open_ticket(session, body, outbox=outbox, clock=clock)
    out = TicketOut.model_validate(ticket)
    await idempotency.remember(
        session, status=201, body=out.model_dump(mode="json"), headers={"ETag": etag(ticket.version)}
    )
    response.headers["ETag"] = etag(ticket.version)
    return out


@router.get(
    "/tickets/{ticket_id}",
    response_model=TicketOut,
    dependencies=[require("tickets:read")],
    responses=problem_responses(404),
)
async def get_ticket(ticket_id: uuid.UUID, session: SessionDep, response: Response) -> TicketOut:
    """One ticket."""
    ticket = await service.get_ticket(session, ticket_id)
    response.headers["ETag"] = etag(ticket.version)
    return TicketOut.model_validate(ticket)


@router.get("/tickets", response_model=Page[TicketOut], dependencies=[require("tickets:read")])
async def list_tickets(
    session: SessionDep,
    limit: Limit = 50,
    cursor: Cursor = None,
    contact_id: Annotated[
        uuid.UUID | None, Query(description="The contact the ticket was opened from.")
    ] = None,
    customer_id: Annotated[uuid.UUID | None, Query()] = None,
    status: Annotated[str | None, Query(max_length=30)] = None,
    kind: Annotated[ContactKind | None, Query()] = None,
    priority: Annotated[Priority | None, Query()] = None,
) -> Page[TicketOut]:
    """Tickets, newest first, filtered."""
    query = sa.select(Ticket)
    for column, value in (
        (Ticket.contact_id, contact_id),
        (Ticket.customer_id, customer_id),
        (Ticket.status, status),
        (Ticket.kind, kind),
        (Ticket.priority, priority),
    ):
        if value is not None:
            query = query.where(column == value)
    tickets, next_cursor = await keyset_page(session, query, key=Ticket.id, limit=limit, cursor=cursor)
    return Page(items=[TicketOut.model_validate(t) for t in tickets], next_cursor=next_cursor)
