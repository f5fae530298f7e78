"""intake's domain logic: finding or creating the customer behind a contact, and recording the contact."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from services.intake.models import Contact, Customer, CustomerIdentifier
from services.intake.schemas import ContactCreate, ContactCustomer
from shared.clock import Clock
from shared.contracts.common import ContactKind, Priority, Tier
from shared.contracts.intake import ContactReceived, CustomerCreated, CustomerSnapshot
from shared.errors import not_found
from shared.outbox import Outbox


@dataclass(frozen=True)
class Recorded:
    contact: Contact
    customer: Customer


def snapshot(customer: Customer) -> CustomerSnapshot:
    return CustomerSnapshot(id=customer.id, tier=Tier(customer.tier), display_name=customer.display_name)


def _identifiers(who: ContactCustomer) -> list[tuple[str, str]]:
    found = []
    if who.phone:
        found.append(("phone", who.phone))
    if who.email:
        found.append(("email", who.email))
    return found


async def find_or_create_customer(
    session: AsyncSession, who: ContactCustomer, *, outbox: Outbox, clock: Clock
) -> Customer:
    identifiers = _identifiers(who)
    condition = sa.or_(
        *(sa.and_(CustomerIdentifier.kind == k, CustomerIdentifier.value == v) for k, v in identifiers)
    )
    known = (await session.execute(sa.select(CustomerIdentifier).where(condition))).scalars().all()
    if known:
        customer = await session.get(Customer, known[0].customer_id)
        assert customer is not None
        # A new identifier seen alongside a known one becomes part of that profile.
        have = {(i.kind, i.value) for i in known}
        for kind, value in identifiers:
            if (kind, value) not in have:
                session.add(CustomerIdentifier(customer_id=customer.id, kind=kind, value=value))
        return customer
    now = clock.now()
    customer = Customer(display_name=who.name, created_at=now, updated_at=now)
    session.add(customer)
    for kind, value in identifiers:
        session.add(CustomerIdentifier(customer_id=customer.id, kind=kind, value=value))
    await session.flush()
    await outbox.add(
        session,
        "intake.customer.created.v1",
        CustomerCreated(customer=snapshot(customer), created_at=now),
        subject=str(customer.id),
    )
    return customer


async def record_contact(
    session: AsyncSession, request: ContactCreate, *, outbox: Outbox, clock: Clock
) -> Recorded:
    customer = await find_or_create_customer(session, request.customer, outbox=outbox, clock=clock)
    now = clock.now()
    kind = request.kind or ContactKind.INQUIRY
    priority = Priority.HIGH if customer.tier == Tier.VIP else Priority.NORMAL
    contact = Contact(
        customer_id=customer.id,
        channel=request.channel,
        kind=kind,
        priority=priority,
        subject=request.subject,
        body=request.body,
        received_at=request.received_at or now,
        created_at=now,
    )
    session.add(contact)
    await session.flush()
    await outbox.add(
        session,
        "intake.contact.received.v1",
        ContactReceived(
            contact_id=contact.id,
            customer=snapshot(customer),
            channel=request.channel,
            kind=kind,
            priority=priority,
            subject=contact.subject,
            received_at=contact.received_at,
        ),
        subject=str(contact.id),
    )
    return Recorded(contact, customer)


async def get_contact(session: AsyncSession, contact_id: object) -> Recorded:
    contact = await session.get(Contact, contact_id)
    if contact is None:
        raise not_found("contact", contact_id)
    customer = await session.get(Customer, contact.customer_id)
    assert customer is not None
    return Recorded(contact, customer)
