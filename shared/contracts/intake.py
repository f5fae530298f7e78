"""Events the intake service publishes."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import Field

from shared.contracts.common import Channel, ContactKind, EventData, Priority, Tier
from shared.events import registry


class CustomerSnapshot(EventData):
    """Just what consumers need to route and prioritise: no phone numbers, e-mails or addresses."""

    id: uuid.UUID
    tier: Tier
    display_name: str = Field(max_length=200)


@registry.register("intake.customer.created.v1", "A customer profile was created.")
class CustomerCreated(EventData):
    customer: CustomerSnapshot
    created_at: datetime


@registry.register("intake.customer.updated.v1", "A customer profile changed (tier, name).")
class CustomerUpdated(EventData):
    customer: CustomerSnapshot
    updated_at: datetime


@registry.register("intake.contact.received.v1", "A contact from any channel was recorded and classified.")
class ContactReceived(EventData):
    contact_id: uuid.UUID
    customer: CustomerSnapshot
    channel: Channel
    kind: ContactKind
    priority: Priority
    subject: str = Field(max_length=500)
    received_at: datetime
