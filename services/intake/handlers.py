"""Events intake consumes from other company systems: CRM master data, purchases, channel messages."""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from pydantic import ValidationError

import shared.contracts  # noqa: F401  (registers the catalogue)
from services.intake import contacts, profiles, purchases
from services.intake.identifiers import IdentifierKind, normalise
from services.intake.models import CustomerIdentifier
from services.intake.schemas import ContactCreate, ContactCustomer, PurchaseCreate
from shared.consumer import EventHandlers, HandlerContext
from shared.contracts.common import Tier
from shared.contracts.external import ChannelMessageReceived, CrmCustomerUpserted, SalesPurchaseRecorded
from shared.errors import Problem
from shared.events import InvalidEvent

handlers = EventHandlers()


def _normalised(kind: IdentifierKind, values: list[str]) -> list[str]:
    try:
        return [normalise(kind, v) for v in values]
    except ValueError as exc:
        raise InvalidEvent(f"invalid {kind}: {exc}") from None


@handlers.on("crm.customer.upserted.v1")
async def upsert_from_crm(ctx: HandlerContext, crm: CrmCustomerUpserted) -> None:
    """The CRM's view of a customer: found by CRM id (or a phone / e-mail), created or brought up to date."""
    phones = _normalised(IdentifierKind.PHONE, crm.phones)
    emails = _normalised(IdentifierKind.EMAIL, crm.emails)
    keys = [(IdentifierKind.EXTERNAL_ID, crm.external_id)]
    keys += [(IdentifierKind.PHONE, p) for p in phones] + [(IdentifierKind.EMAIL, e) for e in emails]
    try:
        customer = await profiles.find(ctx.session, keys[:1]) or await profiles.find(ctx.session, keys[1:])
        if customer is not None and await _known_under_another_crm_id(ctx, customer.id, crm.external_id):
            raise InvalidEvent(
                f"cannot apply CRM record {crm.external_id}: its phone or e-mail belongs to customer "
                f"{customer.id}, who has another CRM id; merge the records in the CRM or in Kefu, then replay"
            )
        if customer is None:
            await profiles.create_minimal(
                ctx.session,
                name=crm.name,
                identifiers=keys,
                tier=crm.tier or Tier.STANDARD,
                company=crm.company,
                outbox=ctx.outbox,
                clock=ctx.clock,
            )
            return
        for kind, value in keys:
            await profiles.attach_identifiers(ctx.session, customer, kind, [value])
    except Problem as exc:
        # An identifier the CRM gives this customer belongs to another profile: someone must merge them.
        raise InvalidEvent(f"cannot apply CRM record {crm.external_id}: {exc.detail}") from None
    changed = False
    for column, value in (("display_name", crm.name), ("tier", crm.tier), ("company", crm.company)):
        if value is not None and getattr(customer, column) != value:
            setattr(customer, column, value)
            changed = True
    if changed:
        customer.version += 1
        customer.updated_at = ctx.clock.now()
        ctx.session.add(customer)
        await ctx.session.flush()
        await profiles.announce_update(ctx.session, customer, outbox=ctx.outbox)


async def _known_under_another_crm_id(ctx: HandlerContext, customer_id: uuid.UUID, external_id: str) -> bool:
    ids = await ctx.session.execute(
        sa.select(CustomerIdentifier.value).where(
            CustomerIdentifier.customer_id == customer_id,
            CustomerIdentifier.kind == IdentifierKind.EXTERNAL_ID,
        )
    )
    known = set(ids.scalars())
    return bool(known) and external_id not in known


@handlers.on("sales.purchase.recorded.v1")
async def record_sale(ctx: HandlerContext, sale: SalesPurchaseRecorded) -> None:
    """A sale for warranty: the buyer must be known; if the CRM has not told us yet, retry later."""
    keys = []
    if sale.customer.external_id:
        keys.append((IdentifierKind.EXTERNAL_ID, sale.customer.external_id.strip()))
    if sale.customer.phone:
        keys += [(IdentifierKind.PHONE, p) for p in _normalised(IdentifierKind.PHONE, [sale.customer.phone])]
    if sale.customer.email:
        keys += [(IdentifierKind.EMAIL, e) for e in _normalised(IdentifierKind.EMAIL, [sale.customer.email])]
    customer = await profiles.find(ctx.session, keys)
    if customer is None:
        # Events arrive in any order: the customer record is usually a moment behind. Retrying (with backoff,
        # then the dead-letter queue) is right; creating a nameless profile would split the customer in two.
        raise LookupError(f"no customer yet for {sale.customer.model_dump(exclude_none=True)}")
    request = PurchaseCreate(
        product=sale.product,
        model=sale.model,
        serial=sale.serial,
        purchased_at=sale.purchased_at,
        warranty_months=sale.warranty_months,
        order_id=sale.order_id,
    )
    await purchases.record(ctx.session, customer.id, request, clock=ctx.clock)


@handlers.on("channel.message.received.v1")
async def contact_from_channel(ctx: HandlerContext, message: ChannelMessageReceived) -> None:
    """A message from a channel gateway becomes a contact, exactly once per gateway message id."""
    sender = message.sender
    try:
        request = ContactCreate(
            channel=message.channel,
            customer=ContactCustomer(
                name=sender.name, phone=sender.phone, email=sender.email, handle=sender.handle
            ),
            subject=(message.subject or message.body.splitlines()[0])[:500],
            body=message.body[:20_000],
            received_at=message.received_at,
        )
    except ValidationError as exc:
        raise InvalidEvent(
            f"cannot make a contact of message {message.external_id}: {exc.errors()[0]['msg']}"
        ) from None
    await contacts.record(
        ctx.session, request, outbox=ctx.outbox, clock=ctx.clock, external_id=message.external_id
    )
