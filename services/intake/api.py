"""intake's HTTP routes: thin, they parse, authorise and hand over to `service`."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Query

from services.intake import service
from services.intake.models import Contact, Customer
from services.intake.schemas import ContactCreate, ContactOut, CustomerRef
from shared.app import ClockDep, OutboxDep, SessionDep
from shared.auth import require
from shared.errors import problem_responses
from shared.idempotency import IdempotencyDep
from shared.pagination import Cursor, Limit, Page, keyset_page

router = APIRouter(prefix="/v1", tags=["contacts"], responses=problem_responses(401, 403))


def contact_out(recorded: service.Recorded) -> ContactOut:
    c, customer = recorded.contact, recorded.customer
    return ContactOut(
        id=c.id,
        customer=CustomerRef(id=customer.id, display_name=customer.display_name, tier=customer.tier),  # type: ignore[arg-type]
        channel=c.channel,  # type: ignore[arg-type]
        kind=c.kind,  # type: ignore[arg-type]
        priority=c.priority,  # type: ignore[arg-type]
        subject=c.subject,
        body=c.body,
        received_at=c.received_at,
        created_at=c.created_at,
    )


@router.post(
    "/contacts",
    status_code=201,
    response_model=ContactOut,
    dependencies=[require("contacts:write")],
    responses=problem_responses(400, 409, 413, 422),
)
async def record_contact(
    body: ContactCreate, session: SessionDep, outbox: OutboxDep, clock: ClockDep, idempotency: IdempotencyDep
) -> Any:
    """Record a contact from any channel; the customer is found by phone or e-mail, or created."""
    if (replay := await idempotency.replay(session)) is not None:
        return replay
    recorded = await service.record_contact(session, body, outbox=outbox, clock=clock)
    out = contact_out(recorded)
    await idempotency.remember(session, status=201, body=out.model_dump(mode="json"))
    return out


@router.get(
    "/contacts/{contact_id}",
    response_model=ContactOut,
    dependencies=[require("contacts:read")],
    responses=problem_responses(404),
)
async def get_contact(contact_id: uuid.UUID, session: SessionDep) -> ContactOut:
    """One contact."""
    return contact_out(await service.get_contact(session, contact_id))


@router.get("/contacts", response_model=Page[ContactOut], dependencies=[require("contacts:read")])
async def list_contacts(
    session: SessionDep,
    limit: Limit = 50,
    cursor: Cursor = None,
    customer_id: Annotated[uuid.UUID | None, Query()] = None,
) -> Page[ContactOut]:
    """Contacts, newest first."""
    query = sa.select(Contact)
    if customer_id is not None:
        query = query.where(Contact.customer_id == customer_id)
    contacts, next_cursor = await keyset_page(session, query, key=Contact.id, limit=limit, cursor=cursor)
    customers = {
        c.id: c
        for c in (
            await session.execute(
                sa.select(Customer).where(Customer.id.in_({c.customer_id for c in contacts}))
            )
        ).scalars()
    }
    return Page(
        items=[contact_out(service.Recorded(c, customers[c.customer_id])) for c in contacts],
        next_cursor=next_cursor,
    )
