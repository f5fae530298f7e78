"""Customer profiles, their purchases, contact history, merges and the PII audit log."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Header, Query, Response

from services.intake import profiles, purchases, views
from services.intake.contacts import Recorded
from services.intake.models import AuditEntry, Contact, Customer, CustomerTag, Purchase
from services.intake.schemas import (
    AuditEntryOut,
    ContactOut,
    CustomerCreate,
    CustomerOut,
    CustomerPatch,
    MergeRequest,
    PurchaseCreate,
    PurchaseOut,
)
from shared.app import ClockDep, OutboxDep, SessionDep
from shared.auth import Principal, require
from shared.concurrency import check_if_match, etag
from shared.contracts.common import Tier
from shared.errors import problem_responses
from shared.idempotency import IdempotencyDep
from shared.pagination import Cursor, Limit, Page, keyset_page

router = APIRouter(prefix="/v1/customers", tags=["customers"], responses=problem_responses(401, 403))

Reader = Annotated[Principal, require("customers:read")]
Writer = Annotated[Principal, require("customers:write")]
IfMatch = Annotated[str | None, Header(alias="If-Match", description="The ETag you read; 412 if stale.")]


@router.post("", status_code=201, response_model=CustomerOut, responses=problem_responses(409, 422))
async def create_customer(
    body: CustomerCreate,
    session: SessionDep,
    outbox: OutboxDep,
    clock: ClockDep,
    idempotency: IdempotencyDep,
    principal: Writer,
    response: Response,
) -> Any:
    """Create a customer profile; phone numbers and e-mails are normalised and must be unused."""
    if (replay := await idempotency.replay(session)) is not None:
        return replay
    customer = await profiles.create(session, body, outbox=outbox, clock=clock)
    (out,) = await views.customers_for(
        session, [await profiles.load(session, customer.id)], principal, clock=clock, action="create"
    )
    await idempotency.remember(
        session, status=201, body=out.model_dump(mode="json"), headers={"ETag": etag(customer.version)}
    )
    response.headers["ETag"] = etag(customer.version)
    return out


@router.get("", response_model=Page[CustomerOut])
async def list_customers(
    session: SessionDep,
    clock: ClockDep,
    principal: Reader,
    limit: Limit = 50,
    cursor: Cursor = None,
    q: Annotated[
        str | None, Query(min_length=1, max_length=200, description="Name, phone, e-mail or id.")
    ] = None,
    tier: Annotated[Tier | None, Query()] = None,
    tag: Annotated[str | None, Query(max_length=50)] = None,
    include_merged: Annotated[bool, Query(description="Also list profiles merged into others.")] = False,
) -> Page[CustomerOut]:
    """Search and list customer profiles, newest first."""
    query = sa.select(Customer)
    if q is not None:
        query = query.where(profiles.search_filter(q))
    if tier is not None:
        query = query.where(Customer.tier == tier)
    if tag is not None:
        query = query.where(Customer.id.in_(sa.select(CustomerTag.customer_id).where(CustomerTag.tag == tag)))  # type: ignore[attr-defined]
    if not include_merged:
        query = query.where(Customer.merged_into.is_(None))  # type: ignore[union-attr]
    found, next_cursor = await keyset_page(session, query, key=Customer.id, limit=limit, cursor=cursor)
    items = await views.customers_for(
        session, await profiles.profiles_of(session, found), principal, clock=clock, action="list"
    )
    return Page(items=items, next_cursor=next_cursor)


@router.get("/audit-log", response_model=Page[AuditEntryOut], dependencies=[require("audit:read")])
async def audit_log(
    session: SessionDep,
    limit: Limit = 50,
    cursor: Cursor = None,
    customer_id: Annotated[uuid.UUID | None, Query()] = None,
    actor: Annotated[str | None, Query(max_length=200)] = None,
) -> Page[AuditEntryOut]:
    """Who read which customer's personal data unmasked, newest first."""
    query = sa.select(AuditEntry)
    if customer_id is not None:
        query = query.where(AuditEntry.customer_id == customer_id)
    if actor is not None:
        query = query.where(AuditEntry.actor == actor)
    entries, next_cursor = await keyset_page(session, query, key=AuditEntry.id, limit=limit, cursor=cursor)
    return Page(items=[AuditEntryOut.model_validate(e) for e in entries], next_cursor=next_cursor)


@router.get("/{customer_id}", response_model=CustomerOut, responses=problem_responses(404))
async def get_customer(
    customer_id: uuid.UUID, session: SessionDep, clock: ClockDep, principal: Reader, response: Response
) -> CustomerOut:
    """One profile; personal data masked unless you may read it (and then the read is audited)."""
    profile = await profiles.load(session, customer_id)
    (out,) = await views.customers_for(session, [profile], principal, clock=clock, action="read")
    response.headers["ETag"] = etag(profile.customer.version)
    return out


@router.patch("/{customer_id}", response_model=CustomerOut, responses=problem_responses(404, 409, 412, 422))
async def update_customer(
    customer_id: uuid.UUID,
    body: CustomerPatch,
    session: SessionDep,
    outbox: OutboxDep,
    clock: ClockDep,
    principal: Writer,
    response: Response,
    if_match: IfMatch = None,
) -> CustomerOut:
    """Change a profile; send `If-Match` with the ETag you read to avoid overwriting someone else's edit."""
    profile = await profiles.load(session, customer_id)
    check_if_match(if_match, profile.customer.version)
    customer = await profiles.update(session, profile.customer, body, outbox=outbox, clock=clock)
    (out,) = await views.customers_for(
        session, [await profiles.load(session, customer.id)], principal, clock=clock, action="update"
    )
    response.headers["ETag"] = etag(customer.version)
    return out


@router.post("/{customer_id}/merge", response_model=CustomerOut, responses=problem_responses(404, 409, 422))
async def merge_customers(
    customer_id: uuid.UUID,
    body: MergeRequest,
    session: SessionDep,
    outbox: OutboxDep,
    clock: ClockDep,
    principal: Writer,
) -> CustomerOut:
    """Fold a duplicate profile into this one: its identifiers, purchases and contacts move here."""
    winner = await profiles.merge(session, customer_id, body.duplicate_id, outbox=outbox, clock=clock)
    (out,) = await views.customers_for(
        session, [await profiles.load(session, winner.id)], principal, clock=clock, action="merge"
    )
    return out


@router.get(
    "/{customer_id}/purchases", response_model=Page[PurchaseOut], dependencies=[require("customers:read")]
)
async def list_purchases(
    customer_id: uuid.UUID,
    session: SessionDep,
    clock: ClockDep,
    limit: Limit = 50,
    cursor: Cursor = None,
    as_of: Annotated[
        date | None, Query(description="Warranty status as of this day (default today).")
    ] = None,
) -> Page[PurchaseOut]:
    """What the customer bought, with warranty status."""
    await profiles.load(session, customer_id)
    query = sa.select(Purchase).where(Purchase.customer_id == customer_id)
    found, next_cursor = await keyset_page(session, query, key=Purchase.id, limit=limit, cursor=cursor)
    day = as_of or clock.now().date()
    return Page(items=[purchases.purchase_out(p, day) for p in found], next_cursor=next_cursor)


@router.post(
    "/{customer_id}/purchases",
    status_code=201,
    response_model=PurchaseOut,
    dependencies=[require("customers:write")],
    responses=problem_responses(404, 422),
)
async def record_purchase(
    customer_id: uuid.UUID,
    body: PurchaseCreate,
    session: SessionDep,
    clock: ClockDep,
    idempotency: IdempotencyDep,
) -> Any:
    """Record a purchase; the warranty runs `warranty_months` from the purchase date."""
    if (replay := await idempotency.replay(session)) is not None:
        return replay
    customer = (await profiles.load(session, customer_id)).customer
    purchase, _ = await purchases.record(session, customer.id, body, clock=clock)
    out = purchases.purchase_out(purchase, clock.now().date())
    await idempotency.remember(session, status=201, body=out.model_dump(mode="json"))
    return out


@router.get(
    "/{customer_id}/contacts", response_model=Page[ContactOut], dependencies=[require("contacts:read")]
)
async def contact_history(
    customer_id: uuid.UUID, session: SessionDep, limit: Limit = 50, cursor: Cursor = None
) -> Page[ContactOut]:
    """The customer's contacts across every channel, newest first."""
    customer = (await profiles.load(session, customer_id)).customer
    query = sa.select(Contact).where(Contact.customer_id == customer.id)
    found, next_cursor = await keyset_page(session, query, key=Contact.id, limit=limit, cursor=cursor)
    return Page(items=[views.contact_out(Recorded(c, customer)) for c in found], next_cursor=next_cursor)
