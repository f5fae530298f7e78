"""Projections: how each event changes the read models."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from services.analytics.models import EventRecord, TicketFact
from shared.contracts.tickets import TicketCreated
from shared.events import CloudEvent


async def log_event(session: AsyncSession, envelope: CloudEvent) -> None:
    session.add(
        EventRecord(
            event_id=envelope.id,
            type=envelope.type,
            source=envelope.source,
            subject=envelope.subject,
            occurred_at=envelope.time,
            data=envelope.data if isinstance(envelope.data, dict) else {"value": envelope.data},
        )
    )


async def count_ticket(session: AsyncSession, created: TicketCreated) -> None:
    ticket = created.ticket
    if await session.get(TicketFact, ticket.id) is not None:
        return
    session.add(
        TicketFact(
            ticket_id=ticket.id,
            kind=ticket.kind,
            priority=ticket.priority,
            channel=ticket.channel,
            created_at=ticket.created_at,
        )
    )
