"""briefs' tables: clients and dossiers, briefs and sign-offs, proposals, traffic, money, meetings."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, Column, Index, UniqueConstraint
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from shared.db import DecimalText, UTCDateTime
from shared.ids import new_id
from shared.timers import timer_table


class BriefsModel(SQLModel, registry=registry()):
    pass


metadata = BriefsModel.metadata


def _when(nullable: bool = False) -> Any:
    return Field(default=None, sa_column=Column(UTCDateTime(), nullable=nullable))


def _json(default: Any = list) -> Any:
    return Field(default_factory=default, sa_column=Column(JSON, nullable=False))


class Client(BriefsModel, table=True):
    """An advertiser the agency serves."""

    __tablename__ = "clients"

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    name: str = Field(max_length=200, index=True)
    industry: str | None = Field(default=None, max_length=100)
    # role -> list of user ids: who serves this client (AE, account director, creative director, ...)
    account_team: dict[str, Any] = _json(dict)
    status: str = Field(default="active", max_length=20)
    ended_at: datetime | None = _when(nullable=True)
    ended_reason: str | None = Field(default=None, max_length=2000)
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    updated_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    version: int = Field(default=1)


class DossierSection(BriefsModel, table=True):
    """One version of one heading of a client's dossier; the newest version is the current text."""

    __tablename__ = "dossier_sections"
    __table_args__ = (UniqueConstraint("client_id", "heading", "number", name="uq_dossier_sections_version"),)

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    client_id: uuid.UUID = Field(foreign_key="clients.id", index=True)
    heading: str = Field(max_length=50)
    number: int
    content: str
    updated_by: str = Field(max_length=200)
    updated_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


class SignOffRule(BriefsModel, table=True):
    """Which roles must sign a brief of a type; data, so an agency can change it."""

    __tablename__ = "signoff_rules"

    brief_type: str = Field(max_length=20, primary_key=True)
    roles: list[str] = _json()
    updated_by: str = Field(max_length=200)
    updated_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


class Brief(BriefsModel, table=True):
    """A client, creative, media or research brief; `number` is its current content version."""

    __tablename__ = "briefs"

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    client_id: uuid.UUID = Field(foreign_key="clients.id", index=True)
    type: str = Field(max_length=20)
    parent_id: uuid.UUID | None = Field(default=None, foreign_key="briefs.id", index=True)
    title: str = Field(max_length=300)
    fields: dict[str, Any] = _json(dict)
    number: int = Field(default=1)
    status: str = Field(default="draft", max_length=20)
    required_roles: list[str] = _json()
    created_by: str = Field(max_length=200)
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    updated_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    submitted_at: datetime | None = _when(nullable=True)
    approved_at: datetime | None = _when(nullable=True)
    booked_at: datetime | None = _when(nullable=True)
    booked_by: str | None = Field(default=None, max_length=200)
    booking_estimate_id: uuid.UUID | None = Field(default=None)
    execution_started_at: datetime | None = _when(nullable=True)
    version: int = Field(default=1)


class BriefVersion(BriefsModel, table=True):
    """A brief's content as it was at one version: what a sign-off or a proposal is pinned to."""

    __tablename__ = "brief_versions"
    __table_args__ = (UniqueConstraint("brief_id", "number", name="uq_brief_versions_number"),)

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    brief_id: uuid.UUID = Field(foreign_key="briefs.id", index=True)
    number: int
    title: str = Field(max_length=300)
    fields: dict[str, Any] = _json(dict)
    digest: str = Field(max_length=64)
    created_by: str = Field(max_length=200)
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


class SignOff(BriefsModel, table=True):
    """A role's signature on (or return of) one version of a brief."""

    __tablename__ = "signoffs"

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    brief_id: uuid.UUID = Field(foreign_key="briefs.id", index=True)
    number: int
    role: str = Field(max_length=50)
    user: str = Field(max_length=200)
    decision: str = Field(max_length=20)  # signed | returned
    completes_approval: bool = Field(default=False)  # the last required signature of the version
    comments: str | None = Field(default=None)
    at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False, index=True))


class Proposal(BriefsModel, table=True):
    """One round of work presented internally or to the client, pinned to the brief version it answers."""

    __tablename__ = "proposals"
    __table_args__ = (UniqueConstraint("brief_id", "stage", "round", name="uq_proposals_round"),)

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    brief_id: uuid.UUID = Field(foreign_key="briefs.id", index=True)
    client_id: uuid.UUID = Field(foreign_key="clients.id", index=True)
    stage: str = Field(max_length=20)
    round: int
    brief_number: int
    title: str = Field(max_length=300)
    summary: str = Field(default="")
    attachments: list[dict[str, Any]] = _json()
    status: str = Field(default="prepared", max_length=20)
    presented_by: str | None = Field(default=None, max_length=200)
    presented_at: datetime | None = _when(nullable=True)
    decision: str | None = Field(default=None, max_length=20)
    follow_up: str | None = Field(default=None, max_length=20)
    decided_by: str | None = Field(default=None, max_length=200)
    decided_at: datetime | None = _when(nullable=True)
    comments: str | None = Field(default=None)
    created_by: str = Field(max_length=200)
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    version: int = Field(default=1)


class Milestone(BriefsModel, table=True):
    """A promised date (traffic): a briefing, a review, a presentation, a material deadline, an action."""

    __tablename__ = "milestones"
    __table_args__ = (Index("ix_milestones_status_due", "status", "due_at"),)

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    client_id: uuid.UUID = Field(foreign_key="clients.id", index=True)
    brief_id: uuid.UUID | None = Field(default=None, foreign_key="briefs.id", index=True)
    proposal_id: uuid.UUID | None = Field(default=None, foreign_key="proposals.id")
    meeting_id: uuid.UUID | None = Field(default=None, foreign_key="meetings.id")
    kind: str = Field(max_length=50)
    name: str = Field(max_length=300)
    owner: str | None = Field(default=None, max_length=200, index=True)
    due_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    status: str = Field(default="open", max_length=20)
    delivered_at: datetime | None = _when(nullable=True)
    delivered_by: str | None = Field(default=None, max_length=200)
    missed_at: datetime | None = _when(nullable=True)
    created_by: str = Field(max_length=200)
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    version: int = Field(default=1)


class Estimate(BriefsModel, table=True):
    """A job's cost estimate; `number` is its current content version."""

    __tablename__ = "estimates"

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    client_id: uuid.UUID = Field(foreign_key="clients.id", index=True)
    brief_id: uuid.UUID | None = Field(default=None, foreign_key="briefs.id", index=True)
    title: str = Field(max_length=300)
    currency: str = Field(default="CNY", max_length=3)
    lines: list[dict[str, Any]] = _json()
    total: Decimal = Field(sa_column=Column(DecimalText(), nullable=False))
    digest: str = Field(max_length=64)
    number: int = Field(default=1)
    status: str = Field(default="draft", max_length=20)
    # A change to a confirmed estimate within this share of the confirmed total keeps the confirmation.
    tolerance_percent: Decimal = Field(sa_column=Column(DecimalText(), nullable=False))
    confirmed_number: int | None = Field(default=None)
    confirmed_total: Decimal | None = Field(default=None, sa_column=Column(DecimalText(), nullable=True))
    sent_at: datetime | None = _when(nullable=True)
    declined_reason: str | None = Field(default=None)
    created_by: str = Field(max_length=200)
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    updated_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    version: int = Field(default=1)


class EstimateVersion(BriefsModel, table=True):
    """An estimate's lines as they were at one version."""

    __tablename__ = "estimate_versions"
    __table_args__ = (UniqueConstraint("estimate_id", "number", name="uq_estimate_versions_number"),)

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    estimate_id: uuid.UUID = Field(foreign_key="estimates.id", index=True)
    number: int
    lines: list[dict[str, Any]] = _json()
    total: Decimal = Field(sa_column=Column(DecimalText(), nullable=False))
    digest: str = Field(max_length=64)
    created_by: str = Field(max_length=200)
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


class EstimateConfirmation(BriefsModel, table=True):
    """The client's written confirmation of one estimate version: who, when, how, and the evidence."""

    __tablename__ = "estimate_confirmations"

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    estimate_id: uuid.UUID = Field(foreign_key="estimates.id", index=True)
    number: int
    digest: str = Field(max_length=64)
    total: Decimal = Field(sa_column=Column(DecimalText(), nullable=False))
    confirmed_by: str = Field(max_length=200)
    confirmed_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    method: str = Field(max_length=30)
    evidence_ref: str = Field(max_length=500)
    recorded_by: str = Field(max_length=200)
    recorded_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


class ActualCost(BriefsModel, table=True):
    """Money actually spent against an estimate."""

    __tablename__ = "actual_costs"

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    estimate_id: uuid.UUID = Field(foreign_key="estimates.id", index=True)
    client_id: uuid.UUID = Field(foreign_key="clients.id", index=True)
    description: str = Field(max_length=500)
    amount: Decimal = Field(sa_column=Column(DecimalText(), nullable=False))
    incurred_on: date
    reference: str | None = Field(default=None, max_length=200)
    recorded_by: str = Field(max_length=200)
    recorded_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


class Meeting(BriefsModel, table=True):
    """A meeting (contact) report: who met, what was decided, who does what by when."""

    __tablename__ = "meetings"

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    client_id: uuid.UUID = Field(foreign_key="clients.id", index=True)
    brief_id: uuid.UUID | None = Field(default=None, foreign_key="briefs.id")
    title: str = Field(max_length=300)
    held_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    attendees: list[dict[str, Any]] = _json()
    summary: str = Field(default="")
    decisions: list[str] = _json()
    action_items: list[dict[str, Any]] = _json()
    report_due_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    issued_by: str = Field(max_length=200)
    issued_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    deemed_accepted_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    client_response: str | None = Field(default=None, max_length=20)  # accepted | commented
    client_comments: str | None = Field(default=None)
    responded_at: datetime | None = _when(nullable=True)
    version: int = Field(default=1)


# One timer per open milestone (kind `briefs.milestone.due`), fired by the shared scheduler.
timers = timer_table(metadata)
