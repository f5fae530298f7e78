"""Recording a contact: who it is from, what it is about, how they were verified, what product."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.intake import profiles, purchases, rules
from services.intake.classification import Classification, classify
from services.intake.identifiers import IdentifierKind
from services.intake.masking import mask_email, mask_phone
from services.intake.models import Contact, Customer, CustomerIdentifier, Purchase
from services.intake.profiles import CustomerLike
from services.intake.schemas import ContactCreate, ContactCustomer
from shared.clock import Clock
from shared.contracts.common import Tier
from shared.contracts.intake import ContactReceived, ProductSnapshot, Verification, VerificationMethod
from shared.errors import Problem, not_found
from shared.ids import new_id
from shared.outbox import Outbox

contacts_table: sa.Table = Contact.__table__  # type: ignore[attr-defined]
# Built once: every contact runs it, and a plain insert skips the ORM's unit of work, which costs more than
# the statement on this, the busiest write path.
_INSERT_CONTACT = contacts_table.insert()


@dataclass(frozen=True, slots=True)
class NewContact:
    """A contact just written, with the same attributes as the `Contact` row it became."""

    id: uuid.UUID
    customer_id: uuid.UUID
    channel: str
    kind: str
    priority: str
    subject: str
    body: str
    attachments: list[dict[str, Any]]
    verification_method: str
    verified: bool
    verification_note: str | None
    purchase_id: uuid.UUID | None
    external_id: str | None
    received_at: datetime
    created_at: datetime


_CONTACT_COLUMNS = tuple(f.name for f in fields(NewContact))


@dataclass(frozen=True)
class Recorded:
    contact: Contact | NewContact
    customer: CustomerLike
    created: bool = True


def identifier_keys(who: ContactCustomer) -> list[tuple[IdentifierKind, str]]:
    keys: list[tuple[IdentifierKind, str]] = []
    if who.phone:
        keys.append((IdentifierKind.PHONE, who.phone))
    if who.email:
        keys.append((IdentifierKind.EMAIL, who.email))
    if who.handle:
        keys.append((IdentifierKind.HANDLE, who.handle))
    return keys


def _fallback_name(who: ContactCustomer) -> str:
    if who.phone:
        return f"客户 {mask_phone(who.phone)}"
    if who.email:
        return f"客户 {mask_email(who.email)}"
    return f"客户 {who.handle}"


async def identify(session: AsyncSession, who: ContactCustomer, *, outbox: Outbox, clock: Clock) -> Customer:
    """The profile behind a contact: by id, else by any identifier (learning new ones), else a new one."""
    keys = identifier_keys(who)
    found = await profiles.owners(session, keys)
    customer: Customer | None = None
    if who.id is not None:
        by_id = await session.get(Customer, who.id)
        if by_id is None:
            raise not_found("customer", who.id)
        customer = await profiles.live(session, by_id)
    else:
        customer = next((found[k] for k in keys if k in found), None)
        customer = await profiles.live(session, customer) if customer is not None else None
    if customer is None:
        try:
            # A savepoint: the same new customer often calls twice at once (a dropped call, a retry), and
            # the loser of that race must find the winner's profile, not fail.
            async with session.begin_nested():
                return await profiles.create_minimal(
                    session,
                    name=who.name or _fallback_name(who),
                    identifiers=keys,
                    outbox=outbox,
                    clock=clock,
                )
        except (IntegrityError, profiles.IdentifierTaken):
            # Lost the race: the other request's profile holds the identifier (committed, or about to).
            found = await profiles.owners(session, keys)
            customer = next((found[k] for k in keys if k in found), None)
            if customer is None:
                raise
            customer = await profiles.live(session, customer)
    for kind, value in keys:
        # A new number or address seen beside a known one joins that profile, unless it is someone else's.
        if (kind, value) not in found:
            session.add(CustomerIdentifier(customer_id=customer.id, kind=kind, value=value))
    return customer


# Verifications that compare what the customer gave with the profile's identifiers, and what a failure says.
IDENTIFIER_CHECKS = {
    VerificationMethod.CALLER_NUMBER: (IdentifierKind.PHONE, "the caller's number is not on the profile"),
    VerificationMethod.EMAIL_REPLY: (IdentifierKind.EMAIL, "the sender's address is not on the profile"),
}


def given_identifier(who: ContactCustomer, kind: IdentifierKind) -> str | None:
    return who.phone if kind == IdentifierKind.PHONE else who.email


async def verify(
    session: AsyncSession, customer: Customer, request: ContactCreate
) -> tuple[VerificationMethod, bool, str | None]:
    """Check what the agent says they checked against the profile; record a failure rather than refuse."""
    method, reference = request.verification.method, request.verification.reference

    async def owns(kind: IdentifierKind, value: str | None) -> bool:
        if not value:
            return False
        row = await session.execute(
            sa.select(CustomerIdentifier.id).where(
                CustomerIdentifier.customer_id == customer.id,
                CustomerIdentifier.kind == kind,
                CustomerIdentifier.value == value,
            )
        )
        return row.first() is not None

    if method in IDENTIFIER_CHECKS:
        kind, failure = IDENTIFIER_CHECKS[method]
        ok = await owns(kind, given_identifier(request.customer, kind))
        return method, ok, None if ok else failure
    match method:
        case VerificationMethod.NONE:
            return method, False, None
        case VerificationMethod.ID_CHECK:
            ok = await owns(IdentifierKind.ID_CARD, (reference or "").strip().upper())
            return method, ok, None if ok else "the ID number does not match the profile"
        case VerificationMethod.ORDER_NUMBER:
            order = (reference or "").strip()
            found = (
                await session.execute(
                    sa.select(Purchase.id).where(
                        Purchase.customer_id == customer.id, Purchase.order_id == order
                    )
                )
            ).first()
            return method, found is not None, None if found else "no purchase with that order number"
    raise Problem(422, f"unknown verification method {method}", slug="validation")  # pragma: no cover


def compose(
    request: ContactCreate,
    *,
    customer: CustomerLike,
    verdict: Classification,
    verification: tuple[VerificationMethod, bool, str | None],
    purchase: Purchase | None,
    external_id: str | None,
    now: datetime,
) -> tuple[NewContact, ContactReceived]:
    """The contact row and its `intake.contact.received.v1` data, once everything about it is known."""
    method, verified, note = verification
    received_at = request.received_at or now
    contact = NewContact(
        id=new_id(),
        customer_id=customer.id,
        channel=request.channel,
        kind=verdict.kind,
        priority=verdict.priority,
        subject=request.subject,
        body=request.body,
        attachments=[a.model_dump() for a in request.attachments],
        verification_method=method,
        verified=verified,
        verification_note=note,
        purchase_id=purchase.id if purchase else None,
        external_id=external_id,
        received_at=received_at,
        created_at=now,
    )
    product = None
    if purchase is not None:
        product = ProductSnapshot(
            purchase_id=purchase.id,
            product=purchase.product,
            model=purchase.model,
            serial=purchase.serial,
            in_warranty=purchases.in_warranty(purchase, received_at.date()),
            warranty_until=purchase.warranty_until,
        )
    elif request.product_serial:
        product = ProductSnapshot(serial=request.product_serial)
    event = ContactReceived(
        contact_id=contact.id,
        customer=profiles.snapshot(customer),
        channel=request.channel,
        kind=verdict.kind,
        priority=verdict.priority,
        subject=contact.subject,
        received_at=received_at,
        verification=Verification(method=method, verified=verified),
        product=product,
    )
    return contact, event


def contact_row(contact: NewContact) -> dict[str, Any]:
    return {c: getattr(contact, c) for c in _CONTACT_COLUMNS}


async def record(
    session: AsyncSession,
    request: ContactCreate,
    *,
    outbox: Outbox,
    clock: Clock,
    external_id: str | None = None,
) -> Recorded:
    if external_id is not None:
        existing = (
            await session.execute(sa.select(Contact).where(Contact.external_id == external_id))
        ).scalar_one_or_none()
        if existing is not None:
            customer = await session.get(Customer, existing.customer_id)
            assert customer is not None
            return Recorded(existing, customer, created=False)
    customer = await identify(session, request.customer, outbox=outbox, clock=clock)
    now = clock.now()
    verdict = classify(
        f"{request.subject}\n{request.body}",
        await rules.current(session),
        tier=Tier(customer.tier),
        kind=request.kind,
        priority=request.priority,
    )
    method, verified, note = await verify(session, customer, request)
    purchase = (
        await purchases.by_serial(session, request.product_serial, customer.id)
        if request.product_serial
        else None
    )
    contact, event = compose(
        request,
        customer=customer,
        verdict=verdict,
        verification=(method, verified, note),
        purchase=purchase,
        external_id=external_id,
        now=now,
    )
    if session.new or session.dirty or session.deleted:
        # A new profile or a newly learnt identifier: written first, so that a clash with someone else's
        # identifier fails here as it would have in one flush, and the contact's customer row exists.
        await session.flush()
    await session.execute(_INSERT_CONTACT, contact_row(contact))
    await outbox.add(session, "intake.contact.received.v1", event, subject=str(contact.id))
    return Recorded(contact, customer)


async def get(session: AsyncSession, contact_id: uuid.UUID) -> Recorded:
    contact = await session.get(Contact, contact_id)
    if contact is None:
        raise not_found("contact", contact_id)
    customer = await session.get(Customer, contact.customer_id)
    assert customer is not None
    return Recorded(contact, customer)
