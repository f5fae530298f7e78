"""Clients and their dossiers: the account team, versioned dossier sections, the yearly formal briefing."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from services.briefs import traffic
from services.briefs.dossier import TITLES, Heading, health
from services.briefs.models import Client, DossierSection, Milestone
from services.briefs.schemas import ClientCreate, ClientUpdate, DossierOut, DossierSectionOut
from services.briefs.schemas_work import MilestoneKind
from shared.clock import Clock
from shared.concurrency import check_if_match
from shared.errors import conflict, not_found


async def add_client(
    session: AsyncSession, request: ClientCreate, *, actor: str, clock: Clock, timers: traffic.TimerPort
) -> Client:
    now = clock.now()
    client = Client(**request.model_dump(), created_at=now, updated_at=now)
    session.add(client)
    await session.flush()
    # At least one formal briefing a year: the first is due a year after the account starts.
    await traffic.add_milestone(
        session,
        client_id=client.id,
        kind=MilestoneKind.FORMAL_BRIEFING,
        name="Yearly formal briefing",
        owner=_first(client, "account_director") or _first(client, "account_exec"),
        due_at=now + traffic.FORMAL_BRIEFING_EVERY,
        actor=actor,
        clock=clock,
        timers=timers,
    )
    return client


def _first(client: Client, role: str) -> str | None:
    people = client.account_team.get(role) or []
    return str(people[0]) if people else None


async def get_client(session: AsyncSession, client_id: object) -> Client:
    client = await session.get(Client, client_id)
    if client is None:
        raise not_found("client", client_id)
    return client


async def active_client(session: AsyncSession, client_id: uuid.UUID) -> Client:
    """A client the agency still works for; new work for an ended engagement is refused."""
    client = await get_client(session, client_id)
    if client.status != "active":
        raise conflict(f"The engagement with client {client_id} has ended.", allowed=[])
    return client


async def update_client(
    session: AsyncSession, client_id: uuid.UUID, changes: ClientUpdate, *, if_match: str | None, clock: Clock
) -> Client:
    client = await get_client(session, client_id)
    check_if_match(if_match, client.version)
    for name, value in changes.model_dump(exclude_unset=True).items():
        if value is None and name in ("name", "account_team"):
            continue  # required attributes are not cleared by a null
        setattr(client, name, value)
    client.updated_at = clock.now()
    client.version += 1
    await session.flush()
    return client


async def end_engagement(session: AsyncSession, client: Client, *, reason: str, at: datetime) -> None:
    client.status = "ended"
    client.ended_at = at
    client.ended_reason = reason
    client.updated_at = at
    client.version += 1


async def write_section(
    session: AsyncSession, client_id: uuid.UUID, heading: Heading, content: str, *, actor: str, clock: Clock
) -> DossierSection:
    """A new version of one dossier heading; earlier versions are kept."""
    await get_client(session, client_id)
    latest = (
        await session.execute(
            sa.select(sa.func.max(DossierSection.number)).where(
                DossierSection.client_id == client_id, DossierSection.heading == heading.value
            )
        )
    ).scalar_one()
    section = DossierSection(
        client_id=client_id,
        heading=heading.value,
        number=(latest or 0) + 1,
        content=content,
        updated_by=actor,
        updated_at=clock.now(),
    )
    session.add(section)
    await session.flush()
    return section


def section_out(section: DossierSection) -> DossierSectionOut:
    heading = Heading(section.heading)
    return DossierSectionOut(
        heading=heading,
        title=TITLES[heading],
        number=section.number,
        content=section.content,
        updated_by=section.updated_by,
        updated_at=section.updated_at,
    )


async def section_history(
    session: AsyncSession, client_id: uuid.UUID, heading: Heading
) -> list[DossierSection]:
    await get_client(session, client_id)
    rows = await session.execute(
        sa.select(DossierSection)
        .where(DossierSection.client_id == client_id, DossierSection.heading == heading.value)
        .order_by(DossierSection.number.desc())
    )
    return list(rows.scalars())


async def dossier(
    session: AsyncSession, client_id: uuid.UUID, *, stale_after_days: int, clock: Clock
) -> DossierOut:
    await get_client(session, client_id)
    newest = (
        sa.select(DossierSection.heading, sa.func.max(DossierSection.number).label("number"))
        .where(DossierSection.client_id == client_id)
        .group_by(DossierSection.heading)
        .subquery()
    )
    current = list(
        (
            await session.execute(
                sa.select(DossierSection)
                .join(
                    newest,
                    sa.and_(
                        DossierSection.heading == newest.c.heading, DossierSection.number == newest.c.number
                    ),
                )
                .where(DossierSection.client_id == client_id)
            )
        ).scalars()
    )
    order = {h.value: i for i, h in enumerate(Heading)}
    current.sort(key=lambda s: order.get(s.heading, len(order)))
    state = health(
        {Heading(s.heading): s.updated_at for s in current},
        now=clock.now(),
        stale_after=timedelta(days=stale_after_days),
    )
    briefing = (
        await session.execute(
            sa.select(sa.func.min(Milestone.due_at)).where(
                Milestone.client_id == client_id,
                Milestone.kind == MilestoneKind.FORMAL_BRIEFING.value,
                Milestone.status != "delivered",
            )
        )
    ).scalar_one()
    return DossierOut(
        client_id=client_id,
        completeness=state.completeness,
        missing=state.missing,
        stale=state.stale,
        stale_after_days=stale_after_days,
        sections=[section_out(s) for s in current],
        next_formal_briefing=briefing,
    )
