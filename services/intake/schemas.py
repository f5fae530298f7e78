"""intake's request and response bodies."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Any, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, EmailStr, Field, model_validator

from services.intake.identifiers import normalise_email, normalise_handle, normalise_id_card, normalise_phone
from shared.contracts.common import Channel, ContactKind, Priority, Tier
from shared.contracts.intake import VerificationMethod

Phone = Annotated[
    str, Field(min_length=3, max_length=40, examples=["138-0013-8000"]), AfterValidator(normalise_phone)
]
Email = Annotated[EmailStr, Field(max_length=320), AfterValidator(normalise_email)]
Handle = Annotated[
    str, Field(min_length=1, max_length=200, examples=["weibo:@lina"]), AfterValidator(normalise_handle)
]
IdCard = Annotated[str, Field(min_length=18, max_length=18), AfterValidator(normalise_id_card)]
Tag = Annotated[str, Field(min_length=1, max_length=50)]
ExternalId = Annotated[str, Field(min_length=1, max_length=100)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class Address(Strict):
    label: str = Field(default="home", max_length=50, examples=["home", "office"])
    text: str = Field(min_length=1, max_length=500, examples=["上海市浦东新区世纪大道100号"])


class Preferences(Strict):
    language: str | None = Field(default=None, max_length=20, examples=["zh-CN"])
    preferred_channel: Channel | None = None
    contact_hours: str | None = Field(default=None, max_length=100, examples=["工作日 9:00-18:00"])


class Consent(Strict):
    """The customer's written consent to disclose their information (DOMAIN rule 12)."""

    granted_by: str = Field(min_length=1, max_length=200)
    granted_at: datetime
    evidence: str = Field(min_length=1, max_length=500, description="Where the signed consent is kept.")
    scope: str | None = Field(default=None, max_length=500)


class CustomerCreate(Strict):
    name: str = Field(min_length=1, max_length=200, examples=["张伟"])
    phones: list[Phone] = Field(default_factory=list, max_length=10)
    emails: list[Email] = Field(default_factory=list, max_length=10)
    handles: list[Handle] = Field(default_factory=list, max_length=10)
    id_numbers: list[IdCard] = Field(default_factory=list, max_length=3)
    external_ids: list[ExternalId] = Field(default_factory=list, max_length=10)
    addresses: list[Address] = Field(default_factory=list, max_length=10)
    company: str | None = Field(default=None, max_length=200)
    tier: Tier = Tier.STANDARD
    preferences: Preferences = Field(default_factory=Preferences)
    tags: list[Tag] = Field(default_factory=list, max_length=50)
    notes: str = Field(default="", max_length=10_000)
    consent: Consent | None = None


class CustomerPatch(Strict):
    """Only the fields given change; identifier lists given replace the old ones."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    phones: list[Phone] | None = Field(default=None, max_length=10)
    emails: list[Email] | None = Field(default=None, max_length=10)
    handles: list[Handle] | None = Field(default=None, max_length=10)
    id_numbers: list[IdCard] | None = Field(default=None, max_length=3)
    external_ids: list[ExternalId] | None = Field(default=None, max_length=10)
    addresses: list[Address] | None = Field(default=None, max_length=10)
    company: str | None = Field(default=None, max_length=200)
    tier: Tier | None = None
    preferences: Preferences | None = None
    tags: list[Tag] | None = Field(default=None, max_length=50)
    notes: str | None = Field(default=None, max_length=10_000)
    consent: Consent | None = None


class CustomerOut(BaseModel):
    id: uuid.UUID
    name: str
    phones: list[str]
    emails: list[str]
    handles: list[str]
    id_numbers: list[str]
    external_ids: list[str]
    addresses: list[Address]
    company: str | None
    tier: Tier
    preferences: Preferences
    tags: list[str]
    notes: str
    consent: Consent | None
    merged_into: uuid.UUID | None
    masked: bool = Field(description="True when personal data is masked for this caller.")
    created_at: datetime
    updated_at: datetime


class MergeRequest(Strict):
    duplicate_id: uuid.UUID = Field(description="The profile to fold into this one; it will point here.")


class PurchaseCreate(Strict):
    product: str = Field(min_length=1, max_length=200, examples=["滚筒洗衣机"])
    model: str = Field(min_length=1, max_length=100, examples=["XQG100-14"])
    serial: str = Field(min_length=1, max_length=100, examples=["SN2026110001"])
    purchased_at: date
    warranty_months: int = Field(default=12, ge=0, le=240)
    order_id: str | None = Field(default=None, max_length=100)


class PurchaseOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    customer_id: uuid.UUID
    product: str
    model: str
    serial: str
    purchased_at: date
    warranty_months: int
    warranty_until: date
    order_id: str | None
    in_warranty: bool = Field(description="Whether the warranty covers the `as_of` date (today by default).")


class ContactCustomer(Strict):
    """Who is contacting us: found by id, phone, e-mail or social handle, or created."""

    id: uuid.UUID | None = None
    name: str | None = Field(default=None, min_length=1, max_length=200, examples=["张伟"])
    phone: Phone | None = None
    email: Email | None = None
    handle: Handle | None = None

    @model_validator(mode="after")
    def _identified(self) -> Self:
        if not (self.id or self.phone or self.email or self.handle):
            raise ValueError("a customer needs an id, a phone, an email or a handle")
        return self


class VerificationIn(Strict):
    """How the agent verified who they are talking to (DOMAIN rule 3)."""

    method: VerificationMethod = VerificationMethod.NONE
    reference: str | None = Field(
        default=None, max_length=100, description="The order number or ID number the customer gave."
    )


class Attachment(Strict):
    filename: str = Field(min_length=1, max_length=255)
    content_type: str = Field(max_length=100, examples=["image/jpeg"])
    size_bytes: int = Field(ge=0, le=100 * 1024 * 1024)
    url: str | None = Field(default=None, max_length=2000, description="Where the file is stored.")


class ContactCreate(Strict):
    channel: Channel
    customer: ContactCustomer
    subject: str = Field(min_length=1, max_length=500, examples=["洗衣机漏水"])
    body: str = Field(
        min_length=1, max_length=20_000, examples=["我上个月买的洗衣机一直漏水,请尽快派人维修。"]
    )
    kind: ContactKind | None = Field(default=None, description="Classified by the keyword rules when absent.")
    priority: Priority | None = Field(
        default=None, description="From urgency words when absent; VIPs ≥ high."
    )
    product_serial: str | None = Field(default=None, max_length=100, description="Links the purchase.")
    verification: VerificationIn = Field(default_factory=VerificationIn)
    attachments: list[Attachment] = Field(default_factory=list, max_length=20)
    received_at: datetime | None = Field(
        default=None, description="When the channel received it; now if absent."
    )


class CustomerRef(BaseModel):
    id: uuid.UUID
    display_name: str
    tier: Tier


class VerificationOut(BaseModel):
    method: VerificationMethod
    verified: bool
    note: str | None = None


class ContactOut(BaseModel):
    id: uuid.UUID
    customer: CustomerRef
    channel: Channel
    kind: ContactKind
    priority: Priority
    subject: str
    body: str
    attachments: list[Attachment]
    verification: VerificationOut
    purchase_id: uuid.UUID | None
    received_at: datetime
    created_at: datetime


class RuleIn(Strict):
    target: str = Field(pattern="^(kind|priority)$")
    value: str = Field(min_length=1, max_length=20)
    keywords: list[Annotated[str, Field(min_length=1, max_length=50)]] = Field(min_length=1, max_length=200)

    @model_validator(mode="after")
    def _known_value(self) -> Self:
        allowed = {m.value for m in (ContactKind if self.target == "kind" else Priority)}
        if self.value not in allowed:
            raise ValueError(f"value must be one of {sorted(allowed)} for target {self.target}")
        return self


class RulesOut(BaseModel):
    rules: list[RuleIn] = Field(max_length=500)


class AuditEntryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    actor: str
    roles: list[str]
    customer_id: uuid.UUID
    action: str
    correlation_id: str | None
    at: datetime


def as_json(value: BaseModel | None) -> dict[str, Any] | None:
    return None if value is None else value.model_dump(mode="json")
