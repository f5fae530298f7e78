"""The ticket as events carry it."""

from __future__ import annotations

from services.tickets.models import Ticket
from shared.contracts.common import Channel, ContactKind, Priority, Tier
from shared.contracts.tickets import TicketSnapshot, TicketStatus


def snapshot(ticket: Ticket) -> TicketSnapshot:
    return TicketSnapshot(
        id=ticket.id,
        version=ticket.version,
        kind=ContactKind(ticket.kind),
        priority=Priority(ticket.priority),
        channel=Channel(ticket.channel),
        status=TicketStatus(ticket.status),
        category=ticket.category,
        customer_id=ticket.customer_id,
        customer_tier=Tier(ticket.customer_tier),
        contact_id=ticket.contact_id,
        assignee=ticket.assignee,
        group=ticket.group,
        created_at=ticket.created_at,
        escalation_level=ticket.escalation_level,
        sla_breached=ticket.sla_breached,
    )
