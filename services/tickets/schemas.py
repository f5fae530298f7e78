"""tickets' request and response bodies."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from shared.contracts.common import Channel, ContactKind, Priority, Tier


class TicketCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    subject: str = Field(min_length=1, max_length=500)
    description: str = Field(default="", max_length=20_000)
    kind: ContactKind
    priority: Priority = Priority.NORMAL
    channel: Channel = Channel.WEB
    customer_id: uuid.UUID | None = None
    customer_name: str | None = Field(default=None, max_length=200)


class TicketOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    contact_id: uuid.UUID | None
    customer_id: uuid.UUID | None
    customer_name: str | None
    customer_tier: Tier
    kind: ContactKind
    priority: Priority
    channel: Channel
    subject: str
    description: str
    status: str
    created_at: datetime
    updated_at: datetime
