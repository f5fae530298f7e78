"""Events other company systems publish for Kefu to consume (CRM, e-commerce / ERP, channel gateways).

These are contracts Kefu offers to those systems: documented in `docs/inbound-events.md` and in
`docs/asyncapi.yaml`. Invalid ones are dead-lettered with the reason.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Self

from pydantic import Field, model_validator

from shared.contracts.common import Channel, EventData, Tier
from shared.events import registry


@registry.register("crm.customer.upserted.v1", "Customer master data from the CRM.")
class CrmCustomerUpserted(EventData):
    external_id: str = Field(min_length=1, max_length=100, description="The CRM's customer id.")
    name: str = Field(min_length=1, max_length=200)
    phones: list[str] = Field(default_factory=list, max_length=20)
    emails: list[str] = Field(default_factory=list, max_length=20)
    tier: Tier | None = None
    company: str | None = Field(default=None, max_length=200)


class CustomerKey(EventData):
    """How the selling system knows the customer: at least one of these."""

    external_id: str | None = Field(default=None, max_length=100)
    phone: str | None = Field(default=None, max_length=40)
    email: str | None = Field(default=None, max_length=320)

    @model_validator(mode="after")
    def _one_key(self) -> Self:
        if not (self.external_id or self.phone or self.email):
            raise ValueError("customer needs an external_id, a phone or an email")
        return self


@registry.register("sales.purchase.recorded.v1", "A product was sold (for warranty and after-sales).")
class SalesPurchaseRecorded(EventData):
    customer: CustomerKey
    product: str = Field(min_length=1, max_length=200)
    model: str = Field(min_length=1, max_length=100)
    serial: str = Field(min_length=1, max_length=100)
    purchased_at: date
    warranty_months: int = Field(default=12, ge=0, le=240)
    order_id: str = Field(min_length=1, max_length=100)


class Sender(EventData):
    phone: str | None = Field(default=None, max_length=40)
    email: str | None = Field(default=None, max_length=320)
    handle: str | None = Field(
        default=None, max_length=200, description="A social-media handle, e.g. weibo:@li"
    )
    name: str | None = Field(default=None, max_length=200)

    @model_validator(mode="after")
    def _identified(self) -> Self:
        if not (self.phone or self.email or self.handle):
            raise ValueError("from needs a phone, an email or a handle")
        return self


@registry.register("channel.message.received.v1", "An inbound message from a channel gateway.")
class ChannelMessageReceived(EventData):
    channel: Channel
    sender: Sender = Field(alias="from")
    subject: str | None = Field(default=None, max_length=500)
    body: str = Field(min_length=1, max_length=50_000)
    received_at: datetime
    external_id: str = Field(min_length=1, max_length=200, description="The gateway's message id.")
