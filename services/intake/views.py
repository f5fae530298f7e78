"""What callers see of a profile: masked unless they hold `pii:read`, and every unmasked read audited."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from services.intake.contacts import Recorded
from services.intake.identifiers import IdentifierKind
from services.intake.masking import mask_address, mask_identifier
from services.intake.models import AuditEntry
from services.intake.profiles import IDENTIFIER_FIELDS, Profile
from services.intake.schemas import (
    Address,
    Attachment,
    Consent,
    ContactOut,
    CustomerOut,
    CustomerRef,
    Preferences,
    VerificationOut,
)
from shared.auth import Principal
from shared.clock import Clock
from shared.contracts.common import Channel, ContactKind, Priority, Tier
from shared.contracts.intake import VerificationMethod
from shared.observability import correlation_id

PII_READ = "pii:read"


def customer_out(profile: Profile, *, unmasked: bool) -> CustomerOut:
    c = profile.customer

    def values(kind: IdentifierKind) -> list[str]:
        raw = profile.identifiers.get(kind, [])
        return raw if unmasked else [mask_identifier(kind, v) for v in raw]

    lists = {name: values(kind) for name, kind in IDENTIFIER_FIELDS.items()}
    addresses = [Address(**a) for a in c.addresses]
    if not unmasked:
        addresses = [Address(label=a.label, text=mask_address(a.text)) for a in addresses]
    return CustomerOut(
        id=c.id,
        name=c.display_name,
        **lists,
        addresses=addresses,
        company=c.company,
        tier=Tier(c.tier),
        preferences=Preferences(**c.preferences),
        tags=sorted(profile.tags),
        notes=c.notes,
        consent=Consent(**c.consent) if c.consent else None,
        merged_into=c.merged_into,
        masked=not unmasked,
        created_at=c.created_at,
        updated_at=c.updated_at,
    )


async def customers_for(
    session: AsyncSession, profiles: Sequence[Profile], principal: Principal, *, clock: Clock, action: str
) -> list[CustomerOut]:
    """Render profiles for this caller; an unmasked view goes to the audit log in the same transaction."""
    unmasked = principal.can(PII_READ)
    if unmasked:
        for profile in profiles:
            session.add(
                AuditEntry(
                    actor=principal.subject,
                    roles=sorted(principal.roles),
                    customer_id=profile.customer.id,
                    action=action,
                    correlation_id=correlation_id.get(),
                    at=clock.now(),
                )
            )
    return [customer_out(p, unmasked=unmasked) for p in profiles]


def contact_out(recorded: Recorded) -> ContactOut:
    c, customer = recorded.contact, recorded.customer
    return ContactOut(
        id=c.id,
        customer=CustomerRef(id=customer.id, display_name=customer.display_name, tier=Tier(customer.tier)),
        channel=Channel(c.channel),
        kind=ContactKind(c.kind),
        priority=Priority(c.priority),
        subject=c.subject,
        body=c.body,
        attachments=[Attachment(**a) for a in c.attachments],
        verification=VerificationOut(
            method=VerificationMethod(c.verification_method), verified=c.verified, note=c.verification_note
        ),
        purchase_id=c.purchase_id,
        received_at=c.received_at,
        created_at=c.created_at,
    )
