"""tickets' domain logic: opening tickets from contacts and by hand."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from services.tickets.models import Ticket
from services.tickets.schemas import TicketCreate
from shared.clock import Clock
from shared.contracts.common import Channel, ContactKind, Priority, Tier
from shared.contracts.intake import ContactReceived
from shared.contracts.tickets import TicketCreated, TicketSnapshot, TicketStatus
from shared.errors import not_found
from shared.outbox import Outbox

# Feedback and suggestions are recorded by intake and counted, but need no ticket.
TICKET_KINDS = frozenset({ContactKind.COMPLAINT, ContactKind.REPAIR, ContactKind.INQUIRY})


def snapshot(ticket: Ticket) -> TicketSnapshot:
    return TicketSnapshot(
        id=ticket.id,
        version=ticket.version,
        kind=ContactKind(ticket.kind),
        priority=Priority(ticket.priority),
        channel=Channel(ticket.channel),
        status=TicketStatus(ticket.status),
        customer_id=ticket.customer_id,
        customer_tier=Tier(ticket.customer_tier),
        contact_id=ticket.contact_id,
        created_at=ticket.created_at,
    )


async def _announce(session: AsyncSession, ticket: Ticket, outbox: Outbox) -> None:
    await outbox.add(
        session,
        "tickets.ticket.created.v1",
        TicketCreated(ticket=snapshot(ticket)),
        subject=str(ticket.id),
    )


async def open_from_contact(
    session: AsyncSession, contact: ContactReceived, *, outbox: Outbox, clock: Clock
) -> Ticket | None:
    """A ticket for a complaint, repair or inquiry contact — exactly one, however often the event arrives."""
    if contact.kind not in TICKET_KINDS:
        return None
    existing = (
        await session.execute(sa.select(Ticket).where(Ticket.contact_id == contact.contact_id))
    ).scalar_one_or_none()
    if existing is not None:
        return existing
    now = clock.now()
    ticket = Ticket(
        contact_id=contact.contact_id,
        customer_id=contact.customer.id,
        customer_name=contact.customer.display_name,
        customer_tier=contact.customer.tier,
        kind=contact.kind,
        priority=contact.priority,
        channel=contact.channel,
        subject=contact.subject,
        created_at=now,
        updated_at=now,
    )
    session.add(ticket)
    await session.flush()
    await _announce(session, ticket, outbox)
    return ticket


async def open_ticket(
    session: AsyncSession, request: TicketCreate, *, outbox: Outbox, clock: Clock
) -> Ticket:
    now = clock.now()
    ticket = Ticket(**request.model_dump(), created_at=now, updated_at=now)
    session.add(ticket)
    await session.flush()
    await _announce(session, ticket, outbox)
    return ticket


async def get_ticket(session: AsyncSession, ticket_id: object) -> Ticket:
    ticket = await session.get(Ticket, ticket_id)
    if ticket is None:
        raise not_found("ticket", ticket_id)
    return ticket
