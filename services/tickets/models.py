"""tickets' tables: tickets and their history, SLA policies, calendars, clocks, and timers."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Index, UniqueConstraint
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from shared.db import UTCDateTime
from shared.ids import new_id
from shared.timers import timer_table


class TicketsModel(SQLModel, registry=registry()):
    pass


metadata = TicketsModel.metadata
timers = timer_table(metadata)


def _utc(nullable: bool = False, index: bool = False) -> Any:
    return Field(default=None, sa_column=Column(UTCDateTime(), nullable=nullable, index=index))


class Ticket(TicketsModel, table=True):
    __tablename__ = "tickets"

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    # One ticket per contact, enforced by the database so a redelivered event can never open a second.
    contact_id: uuid.UUID | None = Field(default=None, unique=True)
    contact_ids: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    customer_id: uuid.UUID | None = Field(default=None, index=True)
    customer_name: str | None = Field(default=None, max_length=200)
    customer_tier: str = Field(default="standard", max_length=20)
    kind: str = Field(max_length=20, index=True)
    priority: str = Field(max_length=20, index=True)
    channel: str = Field(max_length=20)
    category: str | None = Field(default=None, max_length=100)
    subject: str = Field(max_length=500)
    description: str = Field(default="")
    tags: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    status: str = Field(default="new", max_length=30, index=True)
    assignee: str | None = Field(default=None, max_length=200, index=True)
    group: str | None = Field(default=None, max_length=100, index=True)
    # After-sales
    product_model: str | None = Field(default=None, max_length=200)
    product_serial: str | None = Field(default=None, max_length=200)
    in_warranty: bool | None = None
    quote: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    service_mode: str | None = Field(default=None, max_length=20)
    appointment_at: datetime | None = _utc(nullable=True)
    engineer: str | None = Field(default=None, max_length=200)
    outcome: str | None = Field(default=None, max_length=20)
    # Resolution and follow-up
    resolution_code: str | None = Field(default=None, max_length=100)
    resolution_summary: str | None = None
    first_response_at: datetime | None = _utc(nullable=True)
    resolved_at: datetime | None = _utc(nullable=True)
    closed_at: datetime | None = _utc(nullable=True)
    public_replies: int = 0
    reopen_count: int = 0
    follow_up_due_at: datetime | None = _utc(nullable=True)
    follow_up_done_at: datetime | None = _utc(nullable=True)
    # SLA
    policy_id: uuid.UUID | None = None
    policy_name: str | None = Field(default=None, max_length=200)
    escalation_level: int = 0
    sla_breached: bool = Field(default=False, index=True)
    sla_at_risk: bool = Field(default=False)
    next_due_at: datetime | None = _utc(nullable=True, index=True)
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    updated_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    version: int = Field(default=1)


class TicketHistory(TicketsModel, table=True):
    """Every change to a ticket: who, when, what, and the status before and after."""

    __tablename__ = "ticket_history"
    __table_args__ = (Index("ix_ticket_history_ticket", "ticket_id", "id"),)

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    ticket_id: uuid.UUID
    at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    actor: str = Field(max_length=200)
    action: str = Field(max_length=50)
    from_status: str | None = Field(default=None, max_length=30)
    to_status: str | None = Field(default=None, max_length=30)
    details: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class Calendar(TicketsModel, table=True):
    __tablename__ = "calendars"

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    name: str = Field(max_length=200, unique=True)
    always_open: bool = True
    timezone: str = Field(default="UTC", max_length=64)
    hours: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    holidays: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    working_days: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    china_holidays: bool = False
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    version: int = 1


class SlaPolicy(TicketsModel, table=True):
    __tablename__ = "sla_policies"

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    name: str = Field(max_length=200, unique=True)
    position: int = Field(index=True)
    active: bool = True
    conditions: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    targets: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    calendar_id: uuid.UUID | None = None
    warning: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    pause_statuses: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    escalation: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    follow_up_after_seconds: int = 3 * 86_400
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    version: int = 1


class SlaClock(TicketsModel, table=True):
    """One metric's clock for one ticket (resolution gets a new cycle on every reopen)."""

    __tablename__ = "sla_clocks"
    __table_args__ = (UniqueConstraint("ticket_id", "metric", "cycle", name="uq_sla_clock_cycle"),)

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    ticket_id: uuid.UUID = Field(index=True)
    metric: str = Field(max_length=30)
    cycle: int = 1
    target_seconds: int
    warn_after_seconds: int | None = None
    calendar_id: uuid.UUID | None = None
    state: str = Field(default="running", max_length=20)  # running, paused, stopped
    elapsed_seconds: float = 0.0  # open time counted before `running_since`
    running_since: datetime | None = _utc(nullable=True)
    paused_seconds: float = 0.0  # wall time spent paused
    paused_since: datetime | None = _utc(nullable=True)
    due_at: datetime | None = _utc(nullable=True)
    warn_at: datetime | None = _utc(nullable=True)
    warned: bool = False
    breached: bool = False
    breached_at: datetime | None = _utc(nullable=True)
    stopped_at: datetime | None = _utc(nullable=True)
    started_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    segments: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
