"""Recording contacts from every channel, and the rules that classify them."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Query

from services.intake import contacts, rules, views
from services.intake.contacts import Recorded
from services.intake.models import Contact, Customer
from services.intake.schemas import ContactCreate, ContactOut, RuleIn, RulesOut
from shared.app import ClockDep, OutboxDep, SessionDep
from shared.auth import require
from shared.contracts.common import Channel, ContactKind
from shared.errors import problem_responses
from shared.idempotency import IdempotencyDep
from shared.pagination import Cursor, Limit, Page, keyset_page

router = APIRouter(prefix="/v1/contacts", tags=["contacts"], responses=problem_responses(401, 403))


@router.post(
    "",
    status_code=201,
    response_model=ContactOut,
    dependencies=[require("contacts:write")],
    responses=problem_responses(400, 404, 409, 413, 422),
)
async def record_contact(
    body: ContactCreate, session: SessionDep, outbox: OutboxDep, clock: ClockDep, idempotency: IdempotencyDep
) -> Any:
    """Record a contact from any channel; the customer is found by id, phone, e-mail or handle, or created."""
    if (replay := await idempotency.replay(session)) is not None:
        return replay
    out = views.contact_out(await contacts.record(session, body, outbox=outbox, clock=clock))
    await idempotency.remember(session, status=201, body=out.model_dump(mode="json"))
    return out


@router.get("/classification-rules", response_model=RulesOut, dependencies=[require("contacts:read")])
async def list_rules(session: SessionDep) -> RulesOut:
    """The keyword rules that set a contact's kind and priority when the caller does not, in order."""
    current = await rules.current(session)
    return RulesOut(
        rules=[RuleIn(target=r.target, value=r.value, keywords=list(r.keywords)) for r in current]
    )


@router.put(
    "/classification-rules",
    response_model=RulesOut,
    dependencies=[require("classification:write")],
    responses=problem_responses(422),
)
async def replace_rules(body: RulesOut, session: SessionDep) -> RulesOut:
    """Replace the rules; the first rule whose keyword appears in the subject or body wins."""
    current = await rules.replace(session, body.rules)
    return RulesOut(
        rules=[RuleIn(target=r.target, value=r.value, keywords=list(r.keywords)) for r in current]
    )


@router.get(
    "/{contact_id}",
    response_model=ContactOut,
    dependencies=[require("contacts:read")],
    responses=problem_responses(404),
)
async def get_contact(contact_id: uuid.UUID, session: SessionDep) -> ContactOut:
    """One contact."""
    return views.contact_out(await contacts.get(session, contact_id))


@router.get("", response_model=Page[ContactOut], dependencies=[require("contacts:read")])
async def list_contacts(
    session: SessionDep,
    limit: Limit = 50,
    cursor: Cursor = None,
    customer_id: Annotated[uuid.UUID | None, Query()] = None,
    channel: Annotated[Channel | None, Query()] = None,
    kind: Annotated[ContactKind | None, Query()] = None,
) -> Page[ContactOut]:
    """Contacts, newest first."""
    query = sa.select(Contact)
    for column, value in (
        (Contact.customer_id, customer_id),
        (Contact.channel, channel),
        (Contact.kind, kind),
    ):
        if value is not None:
            query = query.where(column == value)
    found, next_cursor = await keyset_page(session, query, key=Contact.id, limit=limit, cursor=cursor)
    owners = {
        c.id: c
        for c in (
            await session.execute(sa.select(Customer).where(Customer.id.in_({c.customer_id for c in found})))  # type: ignore[attr-defined]
        ).scalars()
    }
    return Page(
        items=[views.contact_out(Recorded(c, owners[c.customer_id])) for c in found], next_cursor=next_cursor
    )
