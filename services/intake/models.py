"""intake's tables."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Column, UniqueConstraint
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from shared.db import UTCDateTime
from shared.ids import new_id


class IntakeModel(SQLModel, registry=registry()):
    pass


metadata = IntakeModel.metadata


class Customer(IntakeModel, table=True):
    __tablename__ = "customers"

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    display_name: str = Field(max_length=200)
    tier: str = Field(default="standard", max_length=20, index=True)
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    updated_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    version: int = Field(default=1)


class CustomerIdentifier(IntakeModel, table=True):
    """A phone number, e-mail address or handle, normalised; each belongs to exactly one customer."""

    __tablename__ = "customer_identifiers"
    __table_args__ = (UniqueConstraint("kind", "value", name="uq_customer_identifiers_kind_value"),)

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    customer_id: uuid.UUID = Field(foreign_key="customers.id", index=True)
    kind: str = Field(max_length=20)
    value: str = Field(max_length=320)


class Contact(IntakeModel, table=True):
    __tablename__ = "contacts"

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    customer_id: uuid.UUID = Field(foreign_key="customers.id", index=True)
    channel: str = Field(max_length=20)
    kind: str = Field(max_length=20, index=True)
    priority: str = Field(max_length=20)
    subject: str = Field(max_length=500)
    body: str
    received_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
