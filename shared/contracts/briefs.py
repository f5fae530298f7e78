"""Events the briefs service publishes."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum

from pydantic import Field

from shared.contracts.common import EventData
from shared.events import registry


class BriefType(StrEnum):
    CLIENT = "client"
    CREATIVE = "creative"
    MEDIA = "media"
    RESEARCH = "research"


class ProposalStage(StrEnum):
    INTERNAL = "internal"
    CLIENT = "client"


class ProposalDecision(StrEnum):
    APPROVED = "approved"
    SENT_BACK = "sent_back"  # internal rounds only
    REVISE = "revise"
    REJECTED = "rejected"


class RejectionFollowUp(StrEnum):
    REDO = "redo"
    TERMINATE = "terminate"


class BriefRef(EventData):
    id: uuid.UUID
    client_id: uuid.UUID
    type: BriefType
    version: int = Field(ge=1)
    title: str = Field(max_length=300)


@registry.register("briefs.brief.submitted.v1", "A brief version was submitted for sign-off.")
class BriefSubmitted(EventData):
    brief: BriefRef
    submitted_by: str
    submitted_at: datetime


@registry.register("briefs.brief.approved.v1", "Every required sign-off of a brief version was given.")
class BriefApproved(EventData):
    brief: BriefRef
    approved_at: datetime
    signed_by: list[str] = Field(description="Who signed, as `role:user`.")


@registry.register("briefs.brief.returned.v1", "A brief version was returned with comments.")
class BriefReturned(EventData):
    brief: BriefRef
    returned_by: str
    returned_at: datetime
    comments: str = Field(max_length=5000)


class ProposalRef(EventData):
    id: uuid.UUID
    brief_id: uuid.UUID
    client_id: uuid.UUID
    round: int = Field(ge=1)
    stage: ProposalStage


@registry.register(
    "briefs.proposal.presented.v1", "A proposal round was presented (internally or to the client)."
)
class ProposalPresented(EventData):
    proposal: ProposalRef
    presented_by: str
    presented_at: datetime


@registry.register("briefs.proposal.decided.v1", "A proposal round was decided.")
class ProposalDecided(EventData):
    proposal: ProposalRef
    decision: ProposalDecision
    follow_up: RejectionFollowUp | None = None
    decided_by: str
    decided_at: datetime
    comments: str | None = Field(default=None, max_length=5000)


class MilestoneEvent(EventData):
    """What every milestone event says of the milestone."""

    milestone_id: uuid.UUID
    client_id: uuid.UUID
    brief_id: uuid.UUID | None = None
    proposal_id: uuid.UUID | None = None
    name: str = Field(max_length=300)
    kind: str = Field(max_length=50)
    owner: str | None = None
    due_at: datetime


@registry.register("briefs.milestone.missed.v1", "A deadline passed with the work undelivered.")
class MilestoneMissed(MilestoneEvent):
    detected_at: datetime
    late: bool = Field(
        default=False, description="Detected after the fact (the service was down at the time)."
    )


@registry.register("briefs.estimate.confirmed.v1", "The client confirmed a cost estimate version in writing.")
class EstimateConfirmed(EventData):
    estimate_id: uuid.UUID
    client_id: uuid.UUID
    brief_id: uuid.UUID | None = None
    version: int = Field(ge=1)
    digest: str = Field(description="SHA-256 of the confirmed version's currency and line items.")
    total: Decimal = Field(description="The confirmed total, exact (a decimal string on the wire).")
    currency: str = Field(default="CNY", min_length=3, max_length=3)
    confirmed_by: str = Field(description="The client's signatory.")
    confirmed_at: datetime
    method: str = Field(description="signed_document, email, letter, fax or wechat.")
    recorded_by: str


@registry.register(
    "briefs.milestone.delivered.v1", "A milestone's work was delivered, by its due time or after it."
)
class MilestoneDelivered(MilestoneEvent):
    """`due_at` is the due time in force when the work was delivered."""

    delivered_at: datetime
    delivered_by: str
    on_time: bool = Field(
        description="Delivered by `due_at`. A milestone that was missed and then rescheduled can be on "
        "time against its new date; `briefs.milestone.missed.v1` records the miss."
    )


@registry.register(
    "briefs.cost.recorded.v1", "Money actually spent against a confirmed cost estimate was recorded."
)
class CostRecorded(EventData):
    cost_id: uuid.UUID
    estimate_id: uuid.UUID
    client_id: uuid.UUID
    brief_id: uuid.UUID | None = None
    amount: Decimal = Field(description="Exact, to the fen (a decimal string on the wire).")
    currency: str = Field(default="CNY", min_length=3, max_length=3)
    incurred_on: date
    recorded_by: str
    recorded_at: datetime
