"""Events the tickets service publishes.

Every lifecycle event carries a `TicketSnapshot` of the ticket as it stood after the change, so a consumer
can apply events in any order (keep the snapshot with the latest `version`).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from pydantic import Field

from shared.contracts.common import Channel, ContactKind, EventData, Priority, Tier
from shared.events import registry


class TicketStatus(StrEnum):
    NEW = "new"
    OPEN = "open"
    IN_PROGRESS = "in_progress"
    WAITING_CUSTOMER = "waiting_customer"
    RESOLVED = "resolved"
    CLOSED = "closed"
    REOPENED = "reopened"


class SlaMetric(StrEnum):
    FIRST_RESPONSE = "first_response"
    NEXT_RESPONSE = "next_response"
    RESOLUTION = "resolution"


class TicketSnapshot(EventData):
    id: uuid.UUID
    version: int = Field(ge=1, description="Grows with every change; the highest wins.")
    kind: ContactKind
    priority: Priority
    channel: Channel
    status: TicketStatus
    category: str | None = None
    customer_id: uuid.UUID | None = None
    customer_tier: Tier = Tier.STANDARD
    contact_id: uuid.UUID | None = None
    assignee: str | None = None
    group: str | None = None
    created_at: datetime
    escalation_level: int = Field(default=0, ge=0)
    sla_breached: bool = Field(default=False, description="Some SLA clock of this ticket breached.")


class SlaTarget(EventData):
    metric: SlaMetric
    target_seconds: int = Field(ge=0)
    due_at: datetime
    calendar_id: uuid.UUID | None = None


@registry.register("tickets.ticket.created.v1", "A ticket was opened, with the SLA targets it got.")
class TicketCreated(EventData):
    ticket: TicketSnapshot
    policy_id: uuid.UUID | None = None
    policy_name: str | None = None
    sla_targets: list[SlaTarget] = Field(default_factory=list)


@registry.register("tickets.ticket.assigned.v1", "A ticket was assigned to an agent or a group.")
class TicketAssigned(EventData):
    ticket: TicketSnapshot
    assigned_by: str
    assigned_at: datetime


@registry.register("tickets.ticket.responded.v1", "An agent replied publicly to the customer.")
class TicketResponded(EventData):
    ticket: TicketSnapshot
    responded_by: str
    responded_at: datetime
    first: bool = Field(description="True for the ticket's first public reply.")


@registry.register("tickets.ticket.status_changed.v1", "A ticket moved from one status to another.")
class TicketStatusChanged(EventData):
    ticket: TicketSnapshot
    from_status: TicketStatus
    to_status: TicketStatus
    changed_by: str
    changed_at: datetime


@registry.register("tickets.ticket.escalated.v1", "A ticket was escalated, by hand or by an SLA breach.")
class TicketEscalated(EventData):
    ticket: TicketSnapshot
    reason: str = Field(max_length=2000)
    level: int = Field(ge=1)
    escalated_by: str = Field(description="A user, or `sla` for the policy's escalation ladder.")
    escalated_at: datetime


@registry.register("tickets.ticket.resolved.v1", "A ticket was resolved.")
class TicketResolved(EventData):
    ticket: TicketSnapshot
    resolution_code: str = Field(max_length=100)
    resolved_by: str
    resolved_at: datetime
    first_response_at: datetime | None = None
    public_replies: int = Field(ge=0, description="Agent replies before resolution (1 = one-touch).")
    reopen_count: int = Field(ge=0)


@registry.register("tickets.ticket.closed.v1", "A resolved ticket was closed.")
class TicketClosed(EventData):
    ticket: TicketSnapshot
    closed_by: str
    closed_at: datetime


@registry.register("tickets.ticket.reopened.v1", "A resolved or closed ticket was reopened.")
class TicketReopened(EventData):
    ticket: TicketSnapshot
    reason: str = Field(max_length=2000)
    reopened_by: str
    reopened_at: datetime


class SlaOutcome(EventData):
    ticket: TicketSnapshot
    policy_id: uuid.UUID | None = None
    policy_name: str | None = None
    metric: SlaMetric
    target_seconds: int = Field(ge=0)
    due_at: datetime
    cycle: int = Field(default=1, ge=1, description="Resolution restarts a cycle on every reopen.")
    business_seconds: int | None = Field(
        default=None, description="Open (calendar business) time the clock had run at this outcome."
    )
    calendar_seconds: int | None = Field(
        default=None, description="Wall-clock time since the clock started, pauses included."
    )
    calendar_id: uuid.UUID | None = None


@registry.register("tickets.sla.warning.v1", "An SLA clock reached its warning threshold.")
class SlaWarning(SlaOutcome):
    warned_at: datetime
    late: bool = Field(default=False, description="Fired after the fact (the service was down at the time).")


@registry.register("tickets.sla.breached.v1", "An SLA clock passed its due time before the target was met.")
class SlaBreached(SlaOutcome):
    breached_at: datetime
    late: bool = Field(default=False, description="Fired after the fact (the service was down at the time).")


@registry.register("tickets.sla.met.v1", "An SLA target was met (the clock stopped before it was due).")
class SlaMet(SlaOutcome):
    met_at: datetime
    elapsed_seconds: int = Field(ge=0, description="Business time the clock ran.")


@registry.register("tickets.follow_up.due.v1", "A resolved ticket's follow-up visit (回访) is due.")
class FollowUpDue(EventData):
    ticket: TicketSnapshot
    due_at: datetime
    resolved_at: datetime | None = None
