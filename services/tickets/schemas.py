"""tickets' request and response bodies."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.tickets.policies import DEFAULT_LADDER
from shared.contracts.common import Channel, ContactKind, Priority, Tier

Text = Field(min_length=1, max_length=20_000)
# Every string and list a client sends is bounded, so no request can make the service store or scan more
# than it was built for (tests/security/test_limits.py checks the OpenAPI for unbounded ones).
Tag = Annotated[str, Field(max_length=50)]
Category = Annotated[str, Field(max_length=100)]
Recipient = Annotated[str, Field(max_length=200)]
Status = Annotated[str, Field(max_length=30)]
ClockTime = Annotated[str, Field(max_length=8, examples=["09:00"])]
Interval = Annotated[list[ClockTime], Field(max_length=2, description="[start, end]")]
DayHours = Annotated[list[Interval], Field(max_length=24)]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class TicketCreate(Body):
    subject: str = Field(min_length=1, max_length=500)
    description: str = Field(default="", max_length=20_000)
    kind: ContactKind
    priority: Priority = Priority.NORMAL
    channel: Channel = Channel.WEB
    category: str | None = Field(default=None, max_length=100)
    customer_id: uuid.UUID | None = None
    customer_name: str | None = Field(default=None, max_length=200)
    customer_tier: Tier = Tier.STANDARD
    assignee: str | None = Field(default=None, max_length=200)
    group: str | None = Field(default=None, max_length=100)
    product_model: str | None = Field(default=None, max_length=200)
    product_serial: str | None = Field(default=None, max_length=200)
    in_warranty: bool | None = None
    tags: list[Tag] = Field(default_factory=list, max_length=50)

    @model_validator(mode="after")
    def _ticket_kinds(self) -> TicketCreate:
        if self.kind not in (ContactKind.COMPLAINT, ContactKind.REPAIR, ContactKind.INQUIRY):
            raise ValueError("tickets are for complaints, repairs and inquiries")
        return self


class TicketOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    contact_id: uuid.UUID | None
    contact_ids: list[str]
    customer_id: uuid.UUID | None
    customer_name: str | None
    customer_tier: Tier
    kind: ContactKind
    priority: Priority
    channel: Channel
    category: str | None
    subject: str
    description: str
    tags: list[str]
    status: str
    assignee: str | None
    group: str | None
    product_model: str | None
    product_serial: str | None
    in_warranty: bool | None
    quote: dict[str, Any] | None
    service_mode: str | None
    appointment_at: datetime | None
    engineer: str | None
    outcome: str | None
    resolution_code: str | None
    resolution_summary: str | None
    first_response_at: datetime | None
    resolved_at: datetime | None
    closed_at: datetime | None
    public_replies: int
    reopen_count: int
    follow_up_due_at: datetime | None
    follow_up_done_at: datetime | None
    policy_id: uuid.UUID | None
    policy_name: str | None
    escalation_level: int
    sla_breached: bool
    sla_at_risk: bool
    next_due_at: datetime | None
    allowed_actions: list[str] = []
    created_at: datetime
    updated_at: datetime
    version: int


class HistoryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    at: datetime
    actor: str
    action: str
    from_status: str | None
    to_status: str | None
    details: dict[str, Any]


# --- action bodies ----------------------------------------------------------------------------------


class AssignBody(Body):
    assignee: str | None = Field(default=None, max_length=200)
    group: str | None = Field(default=None, max_length=100)


class MessageBody(Body):
    body: str = Text


class OptionalMessageBody(Body):
    body: str = Field(default="", max_length=20_000)


class UpdateBody(Body):
    """Only the fields given change; `category: null` clears the category."""

    priority: Priority | None = None
    category: str | None = Field(default=None, max_length=100)
    tags: list[Tag] | None = Field(default=None, max_length=50)

    @model_validator(mode="after")
    def _not_cleared(self) -> UpdateBody:
        # A ticket always has a priority and a list of tags: null is not a value for them.
        for name in ("priority", "tags"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null (omit it to keep it; tags: [] removes every tag)")
        return self


class ReasonBody(Body):
    reason: str = Field(min_length=1, max_length=2000)


class WaitBody(Body):
    reason: str = Field(default="", max_length=2000)


class QuoteItem(Body):
    description: str = Field(min_length=1, max_length=500)
    amount: Decimal = Field(ge=0, max_digits=12, decimal_places=2)


class QuoteBody(Body):
    amount: Decimal = Field(gt=0, max_digits=12, decimal_places=2)
    currency: str = Field(default="CNY", pattern=r"^[A-Z]{3}$")
    items: list[QuoteItem] = Field(default_factory=list, max_length=100)


class ServiceMode(StrEnum):
    REMOTE = "remote"
    ON_SITE = "on_site"
    REPAIR_CENTER = "repair_center"


class DispatchBody(Body):
    mode: ServiceMode
    appointment_at: datetime | None = None
    engineer: str | None = Field(default=None, max_length=200)


class Outcome(StrEnum):
    REPAIRED = "repaired"
    REPLACED = "replaced"
    REFUNDED = "refunded"


class ResolveBody(Body):
    resolution_code: str = Field(min_length=1, max_length=100)
    summary: str = Field(min_length=1, max_length=20_000)
    outcome: Outcome | None = None


class FollowUpBody(Body):
    note: str = Field(default="", max_length=20_000)
    satisfied: bool | None = None


# --- SLA --------------------------------------------------------------------------------------------


class Conditions(Body):
    kinds: list[ContactKind] = Field(default=[], max_length=len(ContactKind))
    priorities: list[Priority] = Field(default=[], max_length=len(Priority))
    channels: list[Channel] = Field(default=[], max_length=len(Channel))
    tiers: list[Tier] = Field(default=[], max_length=len(Tier))
    categories: list[Category] = Field(default=[], max_length=100)


class Targets(Body):
    first_response: int | None = Field(default=None, gt=0, le=365 * 86_400)
    next_response: int | None = Field(default=None, gt=0, le=365 * 86_400)
    resolution: int | None = Field(default=None, gt=0, le=365 * 86_400)

    @model_validator(mode="after")
    def _some(self) -> Targets:
        if self.first_response is None and self.resolution is None:
            raise ValueError("a policy needs a first_response or a resolution target")
        return self


class Warning(Body):
    fraction: float | None = Field(default=None, gt=0, lt=1)
    lead_seconds: int | None = Field(default=None, gt=0, le=365 * 86_400)

    @model_validator(mode="after")
    def _one(self) -> Warning:
        if self.fraction is not None and self.lead_seconds is not None:
            raise ValueError("give a fraction or a lead time, not both")
        return self


class EscalationStep(Body):
    raise_priority: bool = False
    group: str | None = Field(default=None, max_length=100)
    notify: list[Recipient] = Field(default_factory=list, max_length=20)


PAUSABLE = {"new", "open", "in_progress", "waiting_customer", "reopened"}


class PolicyIn(Body):
    name: str = Field(min_length=1, max_length=200)
    position: int = Field(ge=0, le=1_000_000)
    active: bool = True
    conditions: Conditions = Conditions()
    targets: Targets
    calendar_id: uuid.UUID | None = None
    warning: Warning = Warning(fraction=0.8)
    pause_statuses: dict[
        Annotated[str, Field(max_length=30)], Annotated[list[Status], Field(max_length=5)]
    ] = Field(
        default_factory=lambda: {
            m: ["waiting_customer"] for m in ("first_response", "next_response", "resolution")
        },
        max_length=3,
    )
    escalation: list[EscalationStep] = Field(
        default_factory=lambda: [EscalationStep(**step) for step in DEFAULT_LADDER],
        max_length=10,
        description="One step per escalation; a breach past the last step repeats it.",
    )
    follow_up_after_seconds: int = Field(default=3 * 86_400, ge=0, le=365 * 86_400)

    @model_validator(mode="after")
    def _pauses(self) -> PolicyIn:
        for metric, statuses in self.pause_statuses.items():
            if metric not in ("first_response", "next_response", "resolution"):
                raise ValueError(f"unknown metric {metric!r} in pause_statuses")
            if bad := set(statuses) - PAUSABLE:
                raise ValueError(f"{metric} cannot pause in {sorted(bad)}")
        return self


class PolicyOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    position: int
    active: bool
    conditions: dict[str, Any]
    targets: dict[str, Any]
    calendar_id: uuid.UUID | None
    warning: dict[str, Any]
    pause_statuses: dict[str, Any]
    escalation: list[dict[str, Any]]
    follow_up_after_seconds: int
    version: int


class CalendarIn(Body):
    name: str = Field(min_length=1, max_length=200)
    always_open: bool = False
    timezone: str = Field(default="Asia/Shanghai", max_length=64)
    hours: dict[Annotated[str, Field(max_length=3)], DayHours] = Field(
        default={},
        max_length=7,
        examples=[{"mon": [["09:00", "12:00"], ["13:00", "18:00"]]}],
    )
    holidays: list[date] = Field(default_factory=list, max_length=1000)
    working_days: list[date] = Field(default_factory=list, max_length=1000)
    china_holidays: bool = False


class CalendarOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    always_open: bool
    timezone: str
    hours: dict[str, Any]
    holidays: list[str]
    working_days: list[str]
    china_holidays: bool
    version: int


class ClockView(BaseModel):
    metric: str
    cycle: int
    state: str
    target_seconds: int
    elapsed_seconds: float
    paused_seconds: float
    remaining_seconds: float
    started_at: datetime
    due_at: datetime | None
    warn_at: datetime | None
    breached_at: datetime | None
    stopped_at: datetime | None
    calendar: str
    calendar_notes: list[str]
    segments: list[dict[str, Any]]


class SlaView(BaseModel):
    ticket_id: uuid.UUID
    policy_id: uuid.UUID | None
    policy_name: str | None
    breached: bool
    at_risk: bool
    escalation_level: int
    clocks: list[ClockView]
