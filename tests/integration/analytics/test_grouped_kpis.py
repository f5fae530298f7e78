"""On PostgreSQL the KPI report folds grouped bin counts; it must say what the row-by-row fold says."""

from __future__ import annotations

import asyncio
import random
import uuid
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import FastAPI

from services.analytics.buckets import Grain
from services.analytics.grouped import python_bin
from services.analytics.kpis import TicketFilters, ticket_kpis
from services.analytics.rebuild import rebuild
from services.analytics.statistics import bin_sql
from shared.bus.base import OutcomeKind
from shared.events import registry
from tests.unit.analytics.conftest import START
from tests.unit.analytics.events import delivery, lifecycle, sla_outcome, snapshot

H = timedelta(hours=1)


def tickets(n: int) -> list[tuple[str, dict[str, Any]]]:
    rng = random.Random(5)
    events: list[tuple[str, dict[str, Any]]] = []
    for i in range(n):
        ticket = uuid.uuid4()
        created = START + timedelta(minutes=97 * i)
        replied = created + timedelta(minutes=rng.choice([0, 7, 90, 600, 3000]))
        resolved = replied + H * rng.randint(0, 50) if rng.random() < 0.7 else None
        dims = {
            "kind": rng.choice(["complaint", "inquiry"]),
            "channel": rng.choice(["phone", "web"]),
            "assignee": rng.choice(["alice", "bob", None]),
            "group": rng.choice(["desk", None]),
            "category": rng.choice(["billing", None]),
        }
        events += lifecycle(ticket, created, responded_at=replied, resolved_at=resolved, **dims)
        events += clock_events(rng, ticket, created, replied, resolved, dims)
        if resolved is not None and rng.random() < 0.2:
            events.append(
                (
                    "tickets.ticket.reopened.v1",
                    {
                        "ticket": snapshot(ticket, 4, "reopened", created, **dims),
                        "reason": "still broken",
                        "reopened_by": "customer",
                        "reopened_at": (resolved + H).isoformat(),
                    },
                )
            )
    return events


async def deliver(runtime: Any, events: list[tuple[str, dict[str, Any]]]) -> None:
    """Hand every event over at once, as the broker does with a backlog, so they are projected in batches
    (one by one, each would wait out the batch's gathering time alone)."""
    outcomes = await asyncio.gather(*(runtime.consumer(delivery(t, d)) for t, d in events))
    assert {o.kind for o in outcomes} == {OutcomeKind.HANDLED}


def clock_events(
    rng: random.Random,
    ticket: uuid.UUID,
    created: Any,
    replied: Any,
    resolved: Any,
    dims: dict[str, Any],
) -> list[tuple[str, dict[str, Any]]]:
    """The ticket's SLA outcomes: a first response met or breached (now and then both, or a warning
    first), and its resolution met or breached."""
    decided = [("first_response", replied)] + ([("resolution", resolved)] if resolved is not None else [])
    events = []
    for metric, at in decided:
        types = [rng.choice(["tickets.sla.met.v1", "tickets.sla.breached.v1"])]
        if rng.random() < 0.15:
            types = ["tickets.sla.met.v1", "tickets.sla.breached.v1"]
        if rng.random() < 0.1:
            types.insert(0, "tickets.sla.warning.v1")
        for i, type_ in enumerate(types):
            _, data = sla_outcome(type_, ticket, created, at + i * H, metric=metric, **dims)
            data["ticket"] = snapshot(ticket, 1, "new", created, **dims)  # the created event's snapshot
            events.append((type_, data))
    return events


async def test_bins_in_sql_are_the_library_bins(analytics_app: FastAPI) -> None:
    import sqlalchemy as sa

    values = [
        0.0,
        0.4,
        1.0,
        59.9,
        60.0,
        61.5,
        3600.0,
        86400 * 3.3,
        *random.Random(2).sample(range(1, 10**7), 200),
    ]
    # The very SQL of the facts' generated bin columns, over a duration of their column type.
    query = sa.text(f"SELECT {bin_sql('d')} FROM (SELECT CAST(:value AS DOUBLE PRECISION) AS d) AS t")
    async with analytics_app.state.runtime.db.transaction() as session:
        for value in values:
            in_sql = (await session.execute(query, {"value": float(value)})).scalar_one()
            assert in_sql == python_bin(float(value)), value


async def test_stored_bins_are_the_library_bins(analytics_app: FastAPI) -> None:
    import sqlalchemy as sa

    from services.analytics.models import TicketFact

    runtime = analytics_app.state.runtime
    await deliver(runtime, tickets(30))
    async with runtime.db.transaction() as session:
        facts = (await session.execute(sa.select(TicketFact))).scalars().all()
    pairs = [
        ("first_response_seconds", "first_response_bin"),
        ("first_response_business_seconds", "first_response_business_bin"),
        ("resolution_seconds", "resolution_bin"),
        ("resolution_business_seconds", "resolution_business_bin"),
    ]
    checked = 0
    for fact in facts:
        for duration, stored in pairs:
            value = getattr(fact, duration)
            assert getattr(fact, stored) == (None if value is None else python_bin(value))
            checked += value is not None
    assert checked > 30


async def test_grouped_report_equals_the_row_by_row_report(analytics_app: FastAPI) -> None:
    runtime = analytics_app.state.runtime
    await deliver(runtime, tickets(120))
    everything = ("agents", "groups", "breaches", "categories")
    for grain, filters, include, tz in (
        (Grain.DAY, TicketFilters(), (), "Asia/Shanghai"),
        (Grain.DAY, TicketFilters(), everything, "Asia/Shanghai"),
        (Grain.WEEK, TicketFilters(kind="complaint", channel="phone"), (), "Asia/Shanghai"),
        (Grain.WEEK, TicketFilters(kind="complaint", channel="phone"), everything, "Asia/Shanghai"),
        (Grain.MONTH, TicketFilters(agent="bob"), ("groups",), "Asia/Shanghai"),
        # Daylight saving and a zone half an hour off UTC: buckets are local whatever the offset.
        (Grain.DAY, TicketFilters(), (), "America/New_York"),
        (Grain.WEEK, TicketFilters(), (), "Asia/Kolkata"),
    ):
        reports = []
        for in_database in (True, False):
            async with runtime.db.transaction() as session:
                reports.append(
                    await ticket_kpis(
                        session,
                        since=START - 48 * H,
                        until=START + 24 * 30 * H,
                        grain=grain,
                        tz=ZoneInfo(tz),
                        filters=filters,
                        include=include,
                        in_database=in_database,
                    )
                )
        assert reports[0] == reports[1]
        assert reports[0]["totals"]["created"] > 0


async def test_rebuild_on_postgresql_reproduces_what_batches_built(analytics_app: FastAPI) -> None:
    import sqlalchemy as sa

    from services.analytics.models import TicketFact

    runtime = analytics_app.state.runtime
    events = tickets(40)
    random.Random(3).shuffle(events)
    await deliver(runtime, events)

    async def facts() -> list[dict[str, Any]]:
        async with runtime.db.transaction() as session:
            rows = (await session.execute(sa.select(TicketFact).order_by(TicketFact.ticket_id))).scalars()
            return [r.model_dump() for r in rows]

    before = await facts()
    assert len(before) == 40
    await rebuild(runtime.db, registry, runtime.clock, batch=7)
    assert await facts() == before


async def test_a_report_read_without_a_transaction_leaves_work_mem_as_it_was(analytics_app: FastAPI) -> None:
    import sqlalchemy as sa

    runtime = analytics_app.state.runtime
    await deliver(runtime, tickets(20))
    async with runtime.db.reading() as session:  # as the read-only routes run: autocommit
        default = (await session.execute(sa.text("SHOW work_mem"))).scalar_one()
        for include in ((), ("agents", "groups")):
            report = await ticket_kpis(
                session,
                since=START - 48 * H,
                until=START + 24 * 30 * H,
                grain=Grain.WEEK,
                tz=ZoneInfo("Asia/Shanghai"),
                filters=TicketFilters(priority="normal"),  # not served by rollups: the facts are scanned
                include=include,
            )
            assert report["totals"]["created"] == 20
            assert (await session.execute(sa.text("SHOW work_mem"))).scalar_one() == default
