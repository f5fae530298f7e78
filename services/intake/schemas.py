"""intake's request and response bodies."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, EmailStr, Field, model_validator

from services.intake.identifiers import normalise_email, normalise_phone
from shared.contracts.common import Channel, ContactKind, Priority, Tier

Phone = Annotated[
    str, Field(min_length=3, max_length=40, examples=["138-0013-8000"]), AfterValidator(normalise_phone)
]
Email = Annotated[EmailStr, Field(max_length=320), AfterValidator(normalise_email)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class ContactCustomer(Strict):
    """Who is contacting us: found by phone or e-mail, or created."""

    name: str = Field(min_length=1, max_length=200, examples=["张伟"])
    phone: Phone | None = None
    email: Email | None = None

    @model_validator(mode="after")
    def _identified(self) -> Self:
        if self.phone is None and self.email is None:
            raise ValueError("a customer needs a phone or an email")
        return self


class ContactCreate(Strict):
    channel: Channel
    customer: ContactCustomer
    subject: str = Field(min_length=1, max_length=500, examples=["洗衣机漏水"])
    body: str = Field(
        min_length=1, max_length=20_000, examples=["我上个月买的洗衣机一直漏水,请尽快派人维修。"]
    )
    kind: ContactKind | None = Field(default=None, description="Classified by rules when absent.")
    received_at: datetime | None = Field(
        default=None, description="When the channel received it; now if absent."
    )


class CustomerRef(BaseModel):
    id: uuid.UUID
    display_name: str
    tier: Tier


class ContactOut(BaseModel):
    id: uuid.UUID
    customer: CustomerRef
    channel: Channel
    kind: ContactKind
    priority: Priority
    subject: str
    body: str
    received_at: datetime
    created_at: datetime
