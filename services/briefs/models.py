"""briefs' tables."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Column
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from shared.db import UTCDateTime
from shared.ids import new_id


class BriefsModel(SQLModel, registry=registry()):
    pass


metadata = BriefsModel.metadata


class Client(BriefsModel, table=True):
    """An advertiser the agency serves."""

    __tablename__ = "clients"

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    name: str = Field(max_length=200, index=True)
    industry: str | None = Field(default=None, max_length=100)
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    updated_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    version: int = Field(default=1)
