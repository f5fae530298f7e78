"""analytics' tables: the append-only event log, the projections read from it, surveys, feed, webhooks."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, Column, Computed, Index, Integer, PrimaryKeyConstraint, UniqueConstraint, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from services.analytics.statistics import bin_sql
from shared.db import DecimalText, UTCDateTime
from shared.ids import new_id


class AnalyticsModel(SQLModel, registry=registry()):
    pass


metadata = AnalyticsModel.metadata


def _at(*, nullable: bool = True, index: bool = False) -> Any:
    return Field(default=None, sa_column=Column(UTCDateTime(), nullable=nullable, index=index))


def _bin(duration: str) -> Any:
    """The DDSketch bin of a duration, kept by the database next to it (see grouped.py)."""
    # Stored on PostgreSQL (its generated columns are); the migration makes it virtual on SQLite, which
    # cannot add a stored one to an existing table and whose report never reads it.
    return Field(
        default=None, sa_column=Column(Integer, Computed(bin_sql(duration), persisted=True), nullable=True)
    )


class EventRecord(AnalyticsModel, table=True):
    """Every consumed event, as it arrived; projections can be rebuilt from here."""

    __tablename__ = "event_log"

    # Read only in `seq` order (a rebuild) and by `event_id` (the consumer's claim): every index beyond
    # those two would be paid for on each of thousands of inserts a second and never used.
    seq: int | None = Field(default=None, primary_key=True)
    event_id: str = Field(max_length=200, unique=True)
    type: str = Field(max_length=200)
    source: str = Field(max_length=500)
    subject: str | None = Field(default=None, max_length=500)
    occurred_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    data: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))


class ProjectionCheckpoint(AnalyticsModel, table=True):
    """How far a rebuild has replayed the log into the projections (a rebuild resumes from here)."""

    __tablename__ = "projection_checkpoints"

    name: str = Field(primary_key=True, max_length=100)
    last_seq: int = 0
    started_at: datetime | None = _at()
    finished_at: datetime | None = _at()


class TicketFact(AnalyticsModel, table=True):
    """One row per ticket, merged from its lifecycle events in any order (the highest snapshot wins)."""

    __tablename__ = "ticket_facts"
    __table_args__ = (
        Index("ix_ticket_facts_created_kind_priority", "created_at", "kind", "priority"),
        # The open-tickets gauge counts unresolved tickets every few seconds: a small partial index
        # instead of a pass over every fact ever resolved.
        Index(
            "ix_ticket_facts_open_status",
            "status",
            postgresql_where=text("status NOT IN ('resolved', 'closed')"),
            sqlite_where=text("status NOT IN ('resolved', 'closed')"),
        ),
        # The KPI report's two grouped scans (see grouped.py), filtered by kind and channel, read only
        # these indexes: the bins they count and the columns the breakdowns group on are included.
        Index(
            "ix_ticket_facts_kind_channel_created",
            "kind",
            "channel",
            "created_at",
            postgresql_include=[
                "first_response_bin",
                "first_response_business_bin",
                "assignee",
                "group",
                "category",
            ],
        ),
        Index(
            "ix_ticket_facts_kind_channel_resolved",
            "kind",
            "channel",
            "resolved_at",
            postgresql_include=[
                "status",
                "reopen_count",
                "public_replies",
                "resolution_bin",
                "resolution_business_bin",
                "assignee",
                "group",
            ],
        ),
    )

    ticket_id: uuid.UUID = Field(primary_key=True)
    version: int = 0
    kind: str = Field(max_length=20, index=True)
    priority: str = Field(max_length=20)
    channel: str = Field(max_length=20)
    status: str = Field(default="new", max_length=30)
    category: str | None = Field(default=None, max_length=200)
    customer_id: uuid.UUID | None = None
    customer_tier: str = Field(default="standard", max_length=20)
    assignee: str | None = Field(default=None, max_length=200, index=True)
    group: str | None = Field(default=None, max_length=200)
    policy_name: str | None = Field(default=None, max_length=200)
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False, index=True))
    first_response_at: datetime | None = _at()
    resolved_at: datetime | None = _at(index=True)
    reopened_at: datetime | None = _at()
    closed_at: datetime | None = _at()
    reopen_count: int = 0
    reopens_seen: int = 0
    public_replies: int | None = None
    first_response_seconds: float | None = None
    first_response_business_seconds: float | None = None
    resolution_seconds: float | None = None
    resolution_business_seconds: float | None = None
    first_response_bin: int | None = _bin("first_response_seconds")
    first_response_business_bin: int | None = _bin("first_response_business_seconds")
    resolution_bin: int | None = _bin("resolution_seconds")
    resolution_business_bin: int | None = _bin("resolution_business_seconds")


def _bins() -> Any:
    """DDSketch bins as `{"key": count}` (JSONB: a batch's delta merges into it in C; JSON on SQLite)."""
    return Field(
        default_factory=dict, sa_column=Column(JSONB().with_variant(JSON(), "sqlite"), nullable=False)
    )


class TicketRollup(AnalyticsModel, table=True):
    """The headline report's figures per (zone, grain, bucket, kind, channel, side), kept by the projector.

    `side` is `created` (tickets created in the bucket: first-response bins), `resolved` (resolutions
    in the bucket: the flags and resolution bins) or `sla:<metric>` (SLA clocks decided in the bucket:
    `n`, `met`, `breached`). A row with `kind` and `channel` both `*` counts every
    kind and channel, so a report filtered on both or neither reads one row per bucket and side. Bins
    are the DDSketch bins of the facts (calendar and business time), key → count: a bucket's sketch is
    exactly the one the fact scan builds. PostgreSQL only (see rollups.py).
    """

    __tablename__ = "ticket_rollups"
    __table_args__ = (
        PrimaryKeyConstraint("zone", "grain", "kind", "channel", "bucket", "side", name="pk_ticket_rollups"),
    )

    zone: str = Field(max_length=64)
    grain: str = Field(max_length=8)
    kind: str = Field(max_length=20)
    channel: str = Field(max_length=20)
    bucket: date
    side: str = Field(max_length=20)
    n: int = 0
    done: int = 0
    reopened: int = 0
    one_touch: int = 0
    touched: int = 0
    met: int = 0
    breached: int = 0
    calendar_bins: dict[str, int] = _bins()
    business_bins: dict[str, int] = _bins()


class RollupZone(AnalyticsModel, table=True):
    """A reporting zone whose rollups were built from the facts and have been kept since."""

    __tablename__ = "ticket_rollup_zones"

    zone: str = Field(primary_key=True, max_length=64)
    built_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


class SlaEvent(AnalyticsModel, table=True):
    """SLA outcomes (warning, breach, met): the operations feed and the SLA-achievement projection."""

    __tablename__ = "sla_events"
    __table_args__ = (Index("ix_sla_events_ticket_clock", "ticket_id", "metric", "cycle"),)

    seq: int | None = Field(default=None, primary_key=True)
    event_id: str = Field(max_length=200, unique=True)
    outcome: str = Field(max_length=10, index=True)  # warning | breach | met
    ticket_id: uuid.UUID
    metric: str = Field(max_length=30)
    cycle: int = 1
    policy_id: uuid.UUID | None = None
    policy_name: str | None = Field(default=None, max_length=200)
    target_seconds: int = 0
    due_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    occurred_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False, index=True))
    late: bool = False
    elapsed_seconds: int | None = None
    kind: str = Field(max_length=20)
    priority: str = Field(max_length=20)
    channel: str = Field(max_length=20)
    assignee: str | None = Field(default=None, max_length=200)
    group: str | None = Field(default=None, max_length=200)


class SlaClock(AnalyticsModel, table=True):
    """One SLA clock (ticket, metric, cycle) and its outcome: what SLA achievement counts.

    Folded from the clock's `met` and `breach` events by a rule that ignores their order (sla_clocks.py):
    a breach outweighs any `met`, and of equals the earliest counts. The descriptive columns are the
    deciding event's.
    """

    __tablename__ = "sla_clocks"
    __table_args__ = (PrimaryKeyConstraint("ticket_id", "metric", "cycle", name="pk_sla_clocks"),)

    ticket_id: uuid.UUID
    metric: str = Field(max_length=30)
    cycle: int = 1
    outcome: str = Field(max_length=10)  # breach | met
    occurred_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False, index=True))
    event_id: str = Field(max_length=200)
    policy_name: str | None = Field(default=None, max_length=200)
    kind: str = Field(max_length=20)
    priority: str = Field(max_length=20)
    channel: str = Field(max_length=20)
    assignee: str | None = Field(default=None, max_length=200)
    group: str | None = Field(default=None, max_length=200)


class Survey(AnalyticsModel, table=True):
    """A satisfaction survey: one per resolution of a ticket, or per client presentation decided."""

    __tablename__ = "surveys"
    __table_args__ = (UniqueConstraint("origin_key", name="uq_surveys_origin_key"),)

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    token_hash: str = Field(max_length=64, unique=True)
    origin_key: str = Field(max_length=200)  # the business identity that made it (no duplicate surveys)
    ticket_id: uuid.UUID | None = Field(default=None, index=True)
    customer_id: uuid.UUID | None = None
    client_id: uuid.UUID | None = Field(default=None, index=True)
    proposal_id: uuid.UUID | None = None
    kind: str | None = Field(default=None, max_length=20)
    priority: str | None = Field(default=None, max_length=20)
    channel: str | None = Field(default=None, max_length=20)
    group: str | None = Field(default=None, max_length=200)
    assignee: str | None = Field(default=None, max_length=200)
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False, index=True))
    expires_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    answered_at: datetime | None = _at()
    invalidated_at: datetime | None = _at()
    csat: int | None = None
    nps: int | None = None
    ces: int | None = None
    comment: str | None = Field(default=None, max_length=5000)


class BriefFact(AnalyticsModel, table=True):
    """One row per brief: first submission, approval, returns and proposal rounds."""

    __tablename__ = "brief_facts"

    brief_id: uuid.UUID = Field(primary_key=True)
    client_id: uuid.UUID = Field(index=True)
    type: str = Field(max_length=20)
    first_submitted_at: datetime | None = _at()
    approved_at: datetime | None = _at()
    last_submitted_at: datetime | None = _at()
    returns: int = 0
    client_rounds: int = 0
    first_client_decision: str | None = Field(default=None, max_length=20)
    first_client_round: int | None = None


class MilestoneFact(AnalyticsModel, table=True):
    """One row per milestone that was missed or delivered: the on-time rate's numerator and denominator.

    `due_at` is the due time in force when the work was delivered (the missed one until then); a
    milestone is on time when it was delivered by it and never missed.
    """

    __tablename__ = "milestone_facts"

    milestone_id: uuid.UUID = Field(primary_key=True)
    client_id: uuid.UUID = Field(index=True)
    due_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    missed_at: datetime | None = _at()
    delivered_at: datetime | None = _at()


class EstimateFact(AnalyticsModel, table=True):
    """A cost estimate the client confirmed: the latest confirmed version's total."""

    __tablename__ = "estimate_facts"

    estimate_id: uuid.UUID = Field(primary_key=True)
    client_id: uuid.UUID = Field(index=True)
    currency: str = Field(max_length=3)
    confirmed_version: int
    confirmed_total: Decimal = Field(sa_column=Column(DecimalText(), nullable=False))
    confirmed_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


class CostFact(AnalyticsModel, table=True):
    """Money actually spent against an estimate; summed per estimate, in whatever order it arrives."""

    __tablename__ = "cost_facts"

    cost_id: uuid.UUID = Field(primary_key=True)
    estimate_id: uuid.UUID = Field(index=True)
    client_id: uuid.UUID
    currency: str = Field(max_length=3)
    amount: Decimal = Field(sa_column=Column(DecimalText(), nullable=False))
    incurred_on: date


class Webhook(AnalyticsModel, table=True):
    """An operator's subscription of a URL to breach and warning events."""

    __tablename__ = "webhooks"

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    url: str = Field(max_length=2000)
    secret: str = Field(max_length=200)  # needed in clear to sign; shown once at creation
    events: list[str] = Field(sa_column=Column(JSON, nullable=False))
    active: bool = True
    created_by: str = Field(max_length=200)
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


class WebhookDelivery(AnalyticsModel, table=True):
    """One feed item to one webhook: attempted until a 2xx or the retry budget is spent."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("webhook_id", "feed_seq", name="uq_webhook_deliveries_item"),
        Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
    )

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    webhook_id: uuid.UUID = Field(foreign_key="webhooks.id", index=True)
    feed_seq: int
    event_type: str = Field(max_length=50)
    payload: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    status: str = Field(default="pending", max_length=20)  # pending | delivered | failed
    attempts: int = 0
    next_attempt_at: datetime | None = _at()
    last_status_code: int | None = None
    last_error: str | None = Field(default=None, max_length=2000)
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    delivered_at: datetime | None = _at()
