"""Customer profiles: creating, finding, changing and merging them, and their identifiers."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from services.intake.identifiers import IdentifierKind, normalise
from services.intake.models import Contact, Customer, CustomerIdentifier, CustomerTag, Purchase
from services.intake.schemas import CustomerCreate, CustomerPatch, as_json
from shared.clock import Clock
from shared.contracts.common import Tier
from shared.contracts.intake import CustomerCreated, CustomerMerged, CustomerSnapshot, CustomerUpdated
from shared.errors import Problem, conflict, not_found
from shared.outbox import Outbox

IDENTIFIER_FIELDS = {
    "phones": IdentifierKind.PHONE,
    "emails": IdentifierKind.EMAIL,
    "handles": IdentifierKind.HANDLE,
    "id_numbers": IdentifierKind.ID_CARD,
    "external_ids": IdentifierKind.EXTERNAL_ID,
}


class CustomerLike(Protocol):
    """What a contact needs of its customer: a `Customer` row, or the few columns a lookup returned."""

    @property
    def id(self) -> uuid.UUID: ...
    @property
    def display_name(self) -> str: ...
    @property
    def tier(self) -> str: ...


@dataclass
class Profile:
    """A customer with its identifiers and tags, as read models and responses need it."""

    customer: Customer
    identifiers: dict[IdentifierKind, list[str]] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)


def snapshot(customer: CustomerLike) -> CustomerSnapshot:
    return CustomerSnapshot(id=customer.id, tier=Tier(customer.tier), display_name=customer.display_name)


async def load(session: AsyncSession, customer_id: uuid.UUID) -> Profile:
    customer = await session.get(Customer, customer_id)
    if customer is None:
        raise not_found("customer", customer_id)
    return (await profiles_of(session, [customer]))[0]


async def profiles_of(session: AsyncSession, customers: Sequence[Customer]) -> list[Profile]:
    ids = [c.id for c in customers]
    identifiers = (
        await session.execute(sa.select(CustomerIdentifier).where(CustomerIdentifier.customer_id.in_(ids)))
    ).scalars()
    tags = (await session.execute(sa.select(CustomerTag).where(CustomerTag.customer_id.in_(ids)))).scalars()
    profiles = {c.id: Profile(c) for c in customers}
    for identifier in sorted(identifiers, key=lambda i: i.id):
        profiles[identifier.customer_id].identifiers.setdefault(IdentifierKind(identifier.kind), []).append(
            identifier.value
        )
    for tag in tags:
        profiles[tag.customer_id].tags.append(tag.tag)
    return [profiles[i] for i in ids]


async def owners(
    session: AsyncSession, keys: Sequence[tuple[IdentifierKind, str]]
) -> dict[tuple[str, str], Customer]:
    """In one query: which profile owns each of these identifiers (those nobody owns are absent)."""
    if not keys:
        return {}
    params: dict[str, str] = {}
    for n, (kind, value) in enumerate(keys):
        params[f"kind_{n}"], params[f"value_{n}"] = kind, value
    rows = await session.execute(_owners_query(len(keys)), params)
    return {(kind, value): customer for kind, value, customer in rows}


@lru_cache(maxsize=64)
def _owners_query(count: int) -> sa.Select[tuple[str, str, Customer]]:
    # Built once per number of keys: every contact looks its customer up, and building the expression
    # anew each time costs more than running it.
    return (
        sa.select(CustomerIdentifier.kind, CustomerIdentifier.value, Customer)
        .join(Customer, Customer.id == CustomerIdentifier.customer_id)  # type: ignore[arg-type]
        .where(
            sa.or_(
                *(
                    sa.and_(
                        CustomerIdentifier.kind == sa.bindparam(f"kind_{n}"),
                        CustomerIdentifier.value == sa.bindparam(f"value_{n}"),
                    )
                    for n in range(count)
                )
            )
        )
    )


async def live(session: AsyncSession, customer: Customer) -> Customer:
    """Follow merges: a merged-away duplicate stands for the profile that absorbed it."""
    while customer.merged_into is not None:
        winner = await session.get(Customer, customer.merged_into)
        if winner is None:
            break
        customer = winner
    return customer


async def find(session: AsyncSession, keys: Sequence[tuple[IdentifierKind, str]]) -> Customer | None:
    """The live profile owning any of these identifiers; the first key that matches decides."""
    found = await owners(session, keys)
    for key in keys:
        if key in found:
            return await live(session, found[key])
    return None


class IdentifierTaken(Problem):
    """A 409: the identifier is on another profile (for a new profile: another request just created it)."""

    def __init__(self, detail: str) -> None:
        super().__init__(409, detail, slug="conflict")


async def attach_identifiers(
    session: AsyncSession, customer: Customer, kind: IdentifierKind, values: Iterable[str]
) -> None:
    """Give these identifiers to the customer; one that belongs to someone else is a 409."""
    wanted = [(kind, value) for value in dict.fromkeys(values)]
    owned = await owners(session, wanted)
    for key in wanted:
        owner = owned.get(key)
        if owner is not None and owner.id != customer.id:
            raise IdentifierTaken(
                f"The {kind} {key[1]!r} already belongs to customer {owner.id}; merge the profiles instead."
            )
        if owner is None:
            session.add(CustomerIdentifier(customer_id=customer.id, kind=kind, value=key[1]))
    await session.flush()


async def replace_identifiers(
    session: AsyncSession, customer: Customer, kind: IdentifierKind, values: Sequence[str]
) -> None:
    await session.execute(
        sa.delete(CustomerIdentifier).where(
            CustomerIdentifier.customer_id == customer.id,
            CustomerIdentifier.kind == kind,
            CustomerIdentifier.value.not_in(values),
        )
    )
    await attach_identifiers(session, customer, kind, values)


async def replace_tags(session: AsyncSession, customer: Customer, tags: Sequence[str]) -> None:
    await session.execute(sa.delete(CustomerTag).where(CustomerTag.customer_id == customer.id))
    for tag in dict.fromkeys(tags):
        session.add(CustomerTag(customer_id=customer.id, tag=tag))


async def create(session: AsyncSession, request: CustomerCreate, *, outbox: Outbox, clock: Clock) -> Customer:
    now = clock.now()
    customer = Customer(
        display_name=request.name,
        company=request.company,
        tier=request.tier,
        addresses=[a.model_dump() for a in request.addresses],
        preferences=request.preferences.model_dump(mode="json"),
        notes=request.notes,
        consent=as_json(request.consent),
        created_at=now,
        updated_at=now,
    )
    session.add(customer)
    await session.flush()
    for name, kind in IDENTIFIER_FIELDS.items():
        await attach_identifiers(session, customer, kind, getattr(request, name))
    await replace_tags(session, customer, request.tags)
    await outbox.add(
        session,
        "intake.customer.created.v1",
        CustomerCreated(customer=snapshot(customer), created_at=now),
        subject=str(customer.id),
    )
    return customer


async def create_minimal(
    session: AsyncSession,
    *,
    name: str,
    identifiers: Sequence[tuple[IdentifierKind, str]],
    outbox: Outbox,
    clock: Clock,
    tier: Tier = Tier.STANDARD,
    company: str | None = None,
) -> Customer:
    """A profile for someone we have not seen before, from what a contact or another system told us."""
    request = CustomerCreate(name=name, tier=tier, company=company)
    customer = await create(session, request, outbox=outbox, clock=clock)
    for kind, value in identifiers:
        await attach_identifiers(session, customer, kind, [value])
    return customer


async def update(
    session: AsyncSession, customer: Customer, patch: CustomerPatch, *, outbox: Outbox, clock: Clock
) -> Customer:
    if customer.merged_into is not None:
        raise conflict(f"Customer {customer.id} was merged into {customer.merged_into}; change that profile.")
    changes = patch.model_dump(exclude_unset=True)
    simple = {"name": "display_name", "company": "company", "tier": "tier", "notes": "notes"}
    for field_name, column in simple.items():
        if field_name in changes:
            if field_name in ("name", "tier", "notes") and changes[field_name] is None:
                raise Problem(422, f"{field_name} cannot be null", slug="validation")
            setattr(customer, column, changes[field_name])
    if "addresses" in changes:
        customer.addresses = [a.model_dump() for a in patch.addresses or []]
    if "preferences" in changes:
        customer.preferences = patch.preferences.model_dump(mode="json") if patch.preferences else {}
    if "consent" in changes:
        customer.consent = as_json(patch.consent)
    for name, kind in IDENTIFIER_FIELDS.items():
        if name in changes:
            await replace_identifiers(session, customer, kind, getattr(patch, name) or [])
    if "tags" in changes:
        await replace_tags(session, customer, patch.tags or [])
    customer.version += 1
    customer.updated_at = clock.now()
    session.add(customer)
    await session.flush()
    await announce_update(session, customer, outbox=outbox)
    return customer


async def announce_update(session: AsyncSession, customer: Customer, *, outbox: Outbox) -> None:
    await outbox.add(
        session,
        "intake.customer.updated.v1",
        CustomerUpdated(
            customer=snapshot(customer), version=customer.version, updated_at=customer.updated_at
        ),
        subject=str(customer.id),
    )


async def merge(
    session: AsyncSession, winner_id: uuid.UUID, loser_id: uuid.UUID, *, outbox: Outbox, clock: Clock
) -> Customer:
    """Fold a duplicate into this profile: identifiers, purchases and contacts move; the loser points on."""
    if winner_id == loser_id:
        raise Problem(422, "A profile cannot be merged into itself.", slug="validation")
    winner = (await load(session, winner_id)).customer
    loser = (await load(session, loser_id)).customer
    for profile in (winner, loser):
        if profile.merged_into is not None:
            raise conflict(f"Customer {profile.id} was already merged into {profile.merged_into}.")
    for model in (CustomerIdentifier, Purchase, Contact):
        await session.execute(
            sa.update(model).where(model.customer_id == loser.id).values(customer_id=winner.id)  # type: ignore[attr-defined]
        )
    loser_tags = (
        await session.execute(sa.select(CustomerTag.tag).where(CustomerTag.customer_id == loser.id))
    ).scalars()
    winner_tags = set(
        (
            await session.execute(sa.select(CustomerTag.tag).where(CustomerTag.customer_id == winner.id))
        ).scalars()
    )
    for tag in set(loser_tags) - winner_tags:
        session.add(CustomerTag(customer_id=winner.id, tag=tag))
    await session.execute(sa.delete(CustomerTag).where(CustomerTag.customer_id == loser.id))
    now = clock.now()
    # The better tier and the addresses survive; the winner's own fields win where both are set.
    if loser.tier == Tier.VIP:
        winner.tier = Tier.VIP
    winner.addresses = [*winner.addresses, *(a for a in loser.addresses if a not in winner.addresses)]
    winner.company = winner.company or loser.company
    winner.notes = "\n".join(n for n in (winner.notes, loser.notes) if n)
    winner.consent = winner.consent or loser.consent
    winner.version += 1
    winner.updated_at = now
    loser.merged_into = winner.id
    loser.version += 1
    loser.updated_at = now
    session.add_all([winner, loser])
    await session.flush()
    await outbox.add(
        session,
        "intake.customer.merged.v1",
        CustomerMerged(winner=snapshot(winner), loser_id=loser.id, merged_at=now),
        subject=str(winner.id),
    )
    return winner


def normalised_query(q: str) -> list[tuple[IdentifierKind, str]]:
    """What a search string could be as an identifier (a phone in any format, an e-mail, an id)."""
    keys: list[tuple[IdentifierKind, str]] = []
    for kind in (
        IdentifierKind.PHONE,
        IdentifierKind.EMAIL,
        IdentifierKind.EXTERNAL_ID,
        IdentifierKind.HANDLE,
    ):
        try:
            keys.append((kind, normalise(kind, q)))
        except ValueError:
            continue
    return keys


def search_filter(q: str) -> sa.ColumnElement[bool]:
    keys = normalised_query(q)
    by_identifier = sa.select(CustomerIdentifier.customer_id).where(
        sa.or_(*(sa.and_(CustomerIdentifier.kind == k, CustomerIdentifier.value == v) for k, v in keys))
    )
    escaped = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return sa.or_(Customer.display_name.ilike(f"%{escaped}%", escape="\\"), Customer.id.in_(by_identifier))  # type: ignore[attr-defined]
