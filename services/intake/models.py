"""intake's tables."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, Column, Index, UniqueConstraint
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from shared.db import UTCDateTime
from shared.ids import new_id


class IntakeModel(SQLModel, registry=registry()):
    pass


metadata = IntakeModel.metadata


class Customer(IntakeModel, table=True):
    """A customer profile (客户档案). Personal data lives in identifiers and `addresses`."""

    __tablename__ = "customers"

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    display_name: str = Field(max_length=200, index=True)
    company: str | None = Field(default=None, max_length=200)
    tier: str = Field(default="standard", max_length=20, index=True)
    addresses: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    preferences: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    notes: str = Field(default="")
    consent: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    # A merged-away duplicate points at the profile that absorbed it.
    merged_into: uuid.UUID | None = Field(default=None, index=True)
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    updated_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    version: int = Field(default=1)


class CustomerIdentifier(IntakeModel, table=True):
    """A phone, e-mail, handle, external (CRM) id or ID-card number, normalised; each has one owner."""

    __tablename__ = "customer_identifiers"
    __table_args__ = (UniqueConstraint("kind", "value", name="uq_customer_identifiers_kind_value"),)

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    customer_id: uuid.UUID = Field(foreign_key="customers.id", index=True)
    kind: str = Field(max_length=20)
    value: str = Field(max_length=320)


class CustomerTag(IntakeModel, table=True):
    __tablename__ = "customer_tags"

    customer_id: uuid.UUID = Field(foreign_key="customers.id", primary_key=True)
    tag: str = Field(max_length=50, primary_key=True, index=True)


class Purchase(IntakeModel, table=True):
    __tablename__ = "purchases"
    __table_args__ = (UniqueConstraint("order_id", "serial", name="uq_purchases_order_serial"),)

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    customer_id: uuid.UUID = Field(foreign_key="customers.id", index=True)
    product: str = Field(max_length=200)
    model: str = Field(max_length=100)
    serial: str = Field(max_length=100, index=True)
    purchased_at: date
    warranty_months: int = Field(default=12)
    warranty_until: date
    order_id: str | None = Field(default=None, max_length=100, index=True)
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


class Contact(IntakeModel, table=True):
    __tablename__ = "contacts"
    __table_args__ = (
        Index("ix_contacts_customer_received", "customer_id", "received_at"),
        UniqueConstraint("external_id", name="uq_contacts_external_id"),
    )

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    customer_id: uuid.UUID = Field(foreign_key="customers.id", index=True)
    channel: str = Field(max_length=20)
    kind: str = Field(max_length=20, index=True)
    priority: str = Field(max_length=20)
    subject: str = Field(max_length=500)
    body: str
    attachments: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    verification_method: str = Field(default="none", max_length=20)
    verified: bool = Field(default=False)
    verification_note: str | None = Field(default=None, max_length=500)
    purchase_id: uuid.UUID | None = Field(default=None, foreign_key="purchases.id")
    # A channel gateway's message id: the same message can never become two contacts.
    external_id: str | None = Field(default=None, max_length=200)
    received_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


class ClassificationRule(IntakeModel, table=True):
    """A keyword rule: a contact whose subject or body contains a keyword gets this kind or priority."""

    __tablename__ = "classification_rules"

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    target: str = Field(max_length=10, description="kind or priority")
    value: str = Field(max_length=20)
    keywords: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    position: int = Field(default=0, description="Lower positions are tried first.")


class AuditEntry(IntakeModel, table=True):
    """Who saw a customer's personal data unmasked, and when."""

    __tablename__ = "pii_audit_log"

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    actor: str = Field(max_length=200, index=True)
    roles: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    customer_id: uuid.UUID = Field(index=True)
    action: str = Field(max_length=50)
    correlation_id: str | None = Field(default=None, max_length=200)
    at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False, index=True))
