"""analytics' tables: the append-only event log and the projections read from it."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from shared.db import UTCDateTime


class AnalyticsModel(SQLModel, registry=registry()):
    pass


metadata = AnalyticsModel.metadata


class EventRecord(AnalyticsModel, table=True):
    """Every consumed event, as it arrived; projections can be rebuilt from here."""

    __tablename__ = "event_log"

    seq: int | None = Field(default=None, primary_key=True)
    event_id: str = Field(max_length=200, unique=True)
    type: str = Field(max_length=200, index=True)
    source: str = Field(max_length=500)
    subject: str | None = Field(default=None, max_length=500)
    occurred_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False, index=True))
    data: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))


class TicketFact(AnalyticsModel, table=True):
    """One row per ticket, keyed by ticket id so a duplicate or replayed event cannot count twice."""

    __tablename__ = "ticket_facts"

    ticket_id: uuid.UUID = Field(primary_key=True)
    kind: str = Field(max_length=20, index=True)
    priority: str = Field(max_length=20)
    channel: str = Field(max_length=20)
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False, index=True))
