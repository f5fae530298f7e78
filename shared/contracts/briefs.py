"""Events the briefs service publishes."""

from __future__ import annotations

import uuid
from datetime import datetime
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


@registry.register("briefs.milestone.missed.v1", "A deadline passed with the work undelivered.")
class MilestoneMissed(EventData):
    milestone_id: uuid.UUID
    client_id: uuid.UUID
    brief_id: uuid.UUID | None = None
    proposal_id: uuid.UUID | None = None
    name: str = Field(max_length=300)
    kind: str = Field(max_length=50)
    owner: str | None = None
    due_at: datetime
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
