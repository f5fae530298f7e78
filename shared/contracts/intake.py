"""Events the intake service publishes."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from enum import StrEnum

from pydantic import Field

from shared.contracts.common import Channel, ContactKind, EventData, Priority, Tier
from shared.events import registry


class CustomerSnapshot(EventData):
    """Just what consumers need to route and prioritise: no phone numbers, e-mails or addresses."""

    id: uuid.UUID
    tier: Tier
    display_name: str = Field(max_length=200)


class VerificationMethod(StrEnum):
    CALLER_NUMBER = "caller_number"
    EMAIL_REPLY = "email_reply"
    ID_CHECK = "id_check"
    ORDER_NUMBER = "order_number"
    NONE = "none"


class Verification(EventData):
    method: VerificationMethod = VerificationMethod.NONE
    verified: bool = False


class ProductSnapshot(EventData):
    purchase_id: uuid.UUID | None = None
    product: str | None = None
    model: str | None = None
    serial: str | None = None
    in_warranty: bool | None = Field(default=None, description="As of the contact's received time.")
    warranty_until: date | None = None


@registry.register("intake.customer.created.v1", "A customer profile was created.")
class CustomerCreated(EventData):
    customer: CustomerSnapshot
    created_at: datetime


@registry.register("intake.customer.updated.v1", "A customer profile changed (tier, name).")
class CustomerUpdated(EventData):
    customer: CustomerSnapshot
    version: int = Field(default=1, ge=1)
    updated_at: datetime


@registry.register(
    "intake.customer.merged.v1",
    "Two profiles of the same customer were merged: the loser's history now belongs to the winner.",
)
class CustomerMerged(EventData):
    winner: CustomerSnapshot
    loser_id: uuid.UUID
    merged_at: datetime


@registry.register("intake.contact.received.v1", "A contact from any channel was recorded and classified.")
class ContactReceived(EventData):
    contact_id: uuid.UUID
    customer: CustomerSnapshot
    channel: Channel
    kind: ContactKind
    priority: Priority
    subject: str = Field(max_length=500)
    received_at: datetime
    verification: Verification = Field(default_factory=Verification)
    product: ProductSnapshot | None = None
