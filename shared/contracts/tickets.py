"""Events the tickets service publishes."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import Field

from shared.contracts.common import Channel, ContactKind, EventData, Priority
from shared.events import registry


class SlaTarget(EventData):
    metric: str = Field(description="first_response, next_response or resolution")
    target_seconds: int
    due_at: datetime


@registry.register("tickets.ticket.created.v1", "A ticket was opened, with the SLA targets it got.")
class TicketCreated(EventData):
    ticket_id: uuid.UUID
    contact_id: uuid.UUID | None = None
    customer_id: uuid.UUID | None = None
    kind: ContactKind
    priority: Priority
    channel: Channel
    status: str
    created_at: datetime
    sla_targets: list[SlaTarget] = Field(default_factory=list)
