"""tickets' tables."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Column
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from shared.db import UTCDateTime
from shared.ids import new_id


class TicketsModel(SQLModel, registry=registry()):
    pass


metadata = TicketsModel.metadata


class Ticket(TicketsModel, table=True):
    __tablename__ = "tickets"

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    # One ticket per contact, enforced by the database so a redelivered event can never open a second.
    contact_id: uuid.UUID | None = Field(default=None, unique=True)
    customer_id: uuid.UUID | None = Field(default=None, index=True)
    customer_name: str | None = Field(default=None, max_length=200)
    customer_tier: str = Field(default="standard", max_length=20)
    kind: str = Field(max_length=20, index=True)
    priority: str = Field(max_length=20, index=True)
    channel: str = Field(max_length=20)
    subject: str = Field(max_length=500)
    description: str = Field(default="")
    status: str = Field(default="new", max_length=30, index=True)
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    updated_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    version: int = Field(default=1)
