"""briefs' request and response bodies: milestones, estimates and actual costs, meeting reports."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from services.briefs.schemas import UserId

Money = Field(max_digits=16, decimal_places=2)


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class MilestoneKind(StrEnum):
    BRIEFING_MEETING = "briefing_meeting"
    INTERNAL_REVIEW = "internal_review"
    CLIENT_PRESENTATION = "client_presentation"
    MATERIAL_DEADLINE = "material_deadline"
    FORMAL_BRIEFING = "formal_briefing"  # the yearly formal briefing of a client
    ACTION_ITEM = "action_item"  # from a meeting report
    OTHER = "other"


class MilestoneCreate(_In):
    client_id: uuid.UUID | None = Field(default=None, description="Implied by brief_id or proposal_id.")
    brief_id: uuid.UUID | None = None
    proposal_id: uuid.UUID | None = None
    kind: MilestoneKind
    name: str = Field(min_length=1, max_length=300)
    owner: UserId | None = None
    due_at: AwareDatetime

    @model_validator(mode="after")
    def _attached(self) -> MilestoneCreate:
        if self.client_id is None and self.brief_id is None and self.proposal_id is None:
            raise ValueError("a milestone belongs to a client, a brief or a proposal")
        return self


class MilestoneUpdate(_In):
    name: str | None = Field(default=None, min_length=1, max_length=300)
    owner: UserId | None = None
    due_at: AwareDatetime | None = Field(default=None, description="Rescheduling reopens a missed milestone.")


class MilestoneOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    client_id: uuid.UUID
    brief_id: uuid.UUID | None
    proposal_id: uuid.UUID | None
    meeting_id: uuid.UUID | None
    kind: str
    name: str
    owner: str | None
    due_at: datetime
    status: Literal["open", "delivered", "missed"]
    delivered_at: datetime | None
    delivered_by: str | None
    missed_at: datetime | None
    created_by: str
    created_at: datetime


class LineIn(_In):
    description: str = Field(min_length=1, max_length=500)
    category: str | None = Field(default=None, max_length=100, examples=["production"])
    quantity: Decimal = Field(gt=0, max_digits=12, decimal_places=4)
    unit_price: Decimal = Field(ge=0, max_digits=16, decimal_places=4)


class EstimateCreate(_In):
    client_id: uuid.UUID
    brief_id: uuid.UUID | None = None
    title: str = Field(min_length=1, max_length=300)
    currency: str = Field(default="CNY", pattern="^[A-Z]{3}$")
    lines: list[LineIn] = Field(min_length=1, max_length=500)
    tolerance_percent: Decimal = Field(
        default=Decimal("10"),
        ge=0,
        le=100,
        max_digits=5,
        decimal_places=2,
        description="A confirmed estimate changed by more than this share of its total is confirmed again.",
    )


class EstimateUpdate(_In):
    title: str | None = Field(default=None, min_length=1, max_length=300)
    lines: list[LineIn] | None = Field(default=None, min_length=1, max_length=500)
    tolerance_percent: Decimal | None = Field(default=None, ge=0, le=100, max_digits=5, decimal_places=2)


class LineOut(BaseModel):
    description: str
    category: str | None
    quantity: Decimal
    unit_price: Decimal
    amount: Decimal


class ConfirmationMethod(StrEnum):
    SIGNED_DOCUMENT = "signed_document"
    EMAIL = "email"
    LETTER = "letter"
    FAX = "fax"
    WECHAT = "wechat"


class ConfirmIn(_In):
    confirmed_by: str = Field(min_length=1, max_length=200, description="The client's signatory.")
    confirmed_at: AwareDatetime
    method: ConfirmationMethod
    evidence_ref: str = Field(min_length=1, max_length=500, description="Where the written proof is kept.")
    digest: str = Field(
        pattern="^[0-9a-f]{64}$",
        description="The hash of the version the client confirmed (from the estimate).",
    )


class ConfirmationOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    version: int = Field(validation_alias="number")
    digest: str
    total: Decimal
    confirmed_by: str
    confirmed_at: datetime
    method: ConfirmationMethod
    evidence_ref: str
    recorded_by: str
    recorded_at: datetime


class DeclineIn(_In):
    reason: str = Field(min_length=1, max_length=5000)


class EstimateOut(BaseModel):
    id: uuid.UUID
    client_id: uuid.UUID
    brief_id: uuid.UUID | None
    title: str
    currency: str
    lines: list[LineOut]
    total: Decimal
    digest: str = Field(description="SHA-256 of the current version, as the client confirms it.")
    version: int
    status: Literal["draft", "sent", "confirmed", "declined"]
    tolerance_percent: Decimal
    confirmed_version: int | None
    confirmed_total: Decimal | None
    actual_total: Decimal
    remaining: Decimal | None = Field(description="Confirmed total minus actual costs.")
    declined_reason: str | None
    allowed_actions: list[str]
    confirmations: list[ConfirmationOut]
    created_by: str
    created_at: datetime
    updated_at: datetime


class ActualIn(_In):
    description: str = Field(min_length=1, max_length=500)
    amount: Decimal = Field(gt=0, max_digits=16, decimal_places=2)
    incurred_on: date
    reference: str | None = Field(default=None, max_length=200, description="Invoice or PO number.")


class ActualOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    estimate_id: uuid.UUID
    description: str
    amount: Decimal
    incurred_on: date
    reference: str | None
    recorded_by: str
    recorded_at: datetime


class ReconciliationLine(BaseModel):
    estimate_id: uuid.UUID
    title: str
    currency: str
    status: str
    estimated: Decimal = Field(description="The confirmed total (or the current total if not confirmed).")
    actual_in_month: Decimal
    actual_to_date: Decimal
    remaining: Decimal
    over_budget: bool


class ReconciliationOut(BaseModel):
    client_id: uuid.UUID
    month: str
    currency: str
    estimates: list[ReconciliationLine]
    estimated: Decimal
    actual_in_month: Decimal
    actual_to_date: Decimal
    remaining: Decimal


class Attendee(_In):
    name: str = Field(min_length=1, max_length=200)
    side: Literal["agency", "client"]
    role: str | None = Field(default=None, max_length=100)


class ActionItemIn(_In):
    description: str = Field(min_length=1, max_length=1000)
    owner: UserId
    due_at: AwareDatetime


class MeetingCreate(_In):
    client_id: uuid.UUID
    brief_id: uuid.UUID | None = None
    title: str = Field(min_length=1, max_length=300)
    held_at: AwareDatetime
    attendees: list[Attendee] = Field(min_length=1, max_length=100)
    summary: str = Field(default="", max_length=50_000)
    decisions: list[Annotated[str, Field(max_length=2_000)]] = Field(default_factory=list, max_length=100)
    action_items: list[ActionItemIn] = Field(default_factory=list, max_length=100)

    @model_validator(mode="after")
    def _actions_follow_the_meeting(self) -> MeetingCreate:
        if any(item.due_at <= self.held_at for item in self.action_items):
            raise ValueError("an action item is due after the meeting that set it")
        return self


class ActionItemOut(BaseModel):
    description: str
    owner: str
    due_at: datetime
    milestone_id: uuid.UUID


class ClientResponseIn(_In):
    response: Literal["accepted", "commented"]
    comments: str | None = Field(default=None, max_length=10_000)

    @model_validator(mode="after")
    def _comments_when_commenting(self) -> ClientResponseIn:
        if self.response == "commented" and not self.comments:
            raise ValueError("a client comment needs its text")
        return self


class MeetingOut(BaseModel):
    id: uuid.UUID
    client_id: uuid.UUID
    brief_id: uuid.UUID | None
    title: str
    held_at: datetime
    attendees: list[Attendee]
    summary: str
    decisions: list[str]
    action_items: list[ActionItemOut]
    report_due_at: datetime = Field(description="24 working hours after the meeting.")
    issued_by: str
    issued_at: datetime
    issued_on_time: bool
    status: Literal["awaiting_client", "accepted", "deemed_accepted", "commented"]
    deemed_accepted_at: datetime = Field(description="48 working hours after issue, without client comment.")
    client_comments: str | None
    responded_at: datetime | None
