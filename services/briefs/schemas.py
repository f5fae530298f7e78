"""briefs' request and response bodies: clients, dossiers, briefs, sign-offs and proposal rounds."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from services.briefs.brief_fields import parse_fields, stored
from services.briefs.dossier import Heading
from shared.contracts.briefs import BriefType, ProposalDecision, ProposalStage, RejectionFollowUp
from shared.errors import Problem

AgencyRole = Literal["account_exec", "account_director", "creative_director", "media_planner", "analyst"]
UserId = Annotated[str, Field(min_length=1, max_length=200)]
# Bounded like every other list a client sends; a role has a handful of people, never hundreds.
Members = Annotated[list[UserId], Field(max_length=50)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class ClientCreate(_In):
    name: str = Field(min_length=1, max_length=200, examples=["上海某某日化有限公司"])
    industry: str | None = Field(default=None, max_length=100, examples=["日化"])
    account_team: dict[AgencyRole, Members] = Field(
        default_factory=dict,
        max_length=5,
        examples=[{"account_exec": ["alice"], "account_director": ["dave"]}],
    )


class ClientUpdate(_In):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    industry: str | None = Field(default=None, max_length=100)
    account_team: dict[AgencyRole, Members] | None = Field(default=None, max_length=5)


class ClientOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    industry: str | None
    account_team: dict[str, list[str]]
    status: Literal["active", "ended"]
    ended_at: datetime | None
    ended_reason: str | None
    created_at: datetime
    updated_at: datetime


class DossierSectionIn(_In):
    content: str = Field(min_length=1, max_length=50_000)


class DossierSectionOut(BaseModel):
    heading: Heading
    title: str
    number: int = Field(description="Version of this section, from 1.")
    content: str
    updated_by: str
    updated_at: datetime


class DossierOut(BaseModel):
    client_id: uuid.UUID
    completeness: float = Field(description="Share of the sixteen headings with content, 0–1.")
    missing: list[Heading]
    stale: list[Heading] = Field(description="Headings not updated within `stale_after_days`.")
    stale_after_days: int
    sections: list[DossierSectionOut]
    next_formal_briefing: datetime | None = Field(description="Due time of the yearly formal briefing.")


class BriefCreate(_In):
    client_id: uuid.UUID
    type: BriefType
    title: str = Field(min_length=1, max_length=300)
    parent_id: uuid.UUID | None = Field(
        default=None, description="The client brief an internal brief answers."
    )
    fields: dict[str, Any] = Field(default_factory=dict, description="The type's own fields.")

    @model_validator(mode="after")
    def _typed_fields(self) -> BriefCreate:
        self.fields = stored(parse_fields(self.type, self.fields))
        if self.type is BriefType.CLIENT and self.parent_id is not None:
            raise ValueError("a client brief has no parent; internal briefs link to it")
        return self


class BriefUpdate(_In):
    title: str | None = Field(default=None, min_length=1, max_length=300)
    fields: dict[str, Any] | None = Field(default=None, description="Changed fields; null clears one.")


class Signature(BaseModel):
    role: str
    user: str
    at: datetime


class BriefOut(BaseModel):
    id: uuid.UUID
    client_id: uuid.UUID
    type: BriefType
    parent_id: uuid.UUID | None
    title: str
    fields: dict[str, Any]
    version: int = Field(description="The current content version.")
    status: Literal["draft", "submitted", "approved", "returned"]
    required_roles: list[str]
    signatures: list[Signature] = Field(description="Sign-offs on the current version.")
    missing_roles: list[str]
    missing_fields: list[str] = Field(description="Fields still needed before the brief can be submitted.")
    allowed_actions: list[str]
    created_by: str
    created_at: datetime
    updated_at: datetime
    submitted_at: datetime | None
    approved_at: datetime | None
    booked_at: datetime | None
    booked_by: str | None
    booking_estimate_id: uuid.UUID | None


class BriefVersionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    number: int
    title: str
    fields: dict[str, Any]
    digest: str
    created_by: str
    created_at: datetime


class SignOffOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    number: int = Field(description="The brief version this sign-off is pinned to.")
    role: str
    user: str
    decision: Literal["signed", "returned"]
    comments: str | None
    at: datetime


class ReturnIn(_In):
    comments: str = Field(min_length=1, max_length=5000)


class BookIn(_In):
    estimate_id: uuid.UUID = Field(description="The client-confirmed estimate that covers the booking.")


class SignOffRuleIn(_In):
    roles: list[AgencyRole] = Field(min_length=1, max_length=5)


class SignOffRuleOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    brief_type: BriefType
    roles: list[str]
    updated_by: str
    updated_at: datetime


class ProposalAttachment(_In):
    name: str = Field(min_length=1, max_length=300)
    ref: str = Field(min_length=1, max_length=1000, description="Where the file lives (URL or DAM id).")
    media_type: str | None = Field(default=None, max_length=100)


class ProposalCreate(_In):
    brief_id: uuid.UUID
    stage: ProposalStage
    title: str = Field(min_length=1, max_length=300)
    summary: str = Field(default="", max_length=20_000)
    attachments: list[ProposalAttachment] = Field(default_factory=list, max_length=100)


class DecisionIn(_In):
    decision: ProposalDecision
    follow_up: RejectionFollowUp | None = None
    comments: str | None = Field(default=None, max_length=5000)


class ProposalOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    brief_id: uuid.UUID
    client_id: uuid.UUID
    stage: ProposalStage
    round: int
    brief_version: int = Field(validation_alias="brief_number")
    title: str
    summary: str
    attachments: list[dict[str, Any]]
    status: Literal["prepared", "presented", "decided"]
    presented_by: str | None
    presented_at: datetime | None
    decision: ProposalDecision | None
    follow_up: RejectionFollowUp | None
    decided_by: str | None
    decided_at: datetime | None
    comments: str | None
    created_by: str
    created_at: datetime


class DecidedOut(BaseModel):
    proposal: ProposalOut
    outcome: Literal["next_round", "ready_for_client", "execution", "engagement_ended"]


def validation_problem(exc: ValidationError, *, prefix: tuple[str | int, ...] = ("body",)) -> Problem:
    """A pydantic error raised inside a service as the API's 422 problem."""
    errors = [{"loc": [*prefix, *err["loc"]], "msg": err["msg"], "type": err["type"]} for err in exc.errors()]
    return Problem(
        422,
        "The request does not match the schema.",
        slug="validation",
        title="Validation failed",
        errors=errors,
    )
