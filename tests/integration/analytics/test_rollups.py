"""The rollups the projector keeps give the report the fact scan gives, however events arrive."""

from __future__ import annotations

import asyncio
import random
import uuid
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from services.analytics import grouped, rollups
from services.analytics.buckets import Grain
from services.analytics.handlers import reporting_calendar
from services.analytics.kpis import TicketFilters, ticket_kpis
from services.analytics.models import SlaClock, TicketFact, TicketRollup
from services.analytics.projector import Item, project
from services.analytics.rebuild import rebuild
from shared.bus.base import OutcomeKind
from shared.events import registry
from tests.integration.analytics.test_grouped_kpis import tickets
from tests.unit.analytics.conftest import START
from tests.unit.analytics.events import delivery, lifecycle

H = timedelta(hours=1)
SHANGHAI = ZoneInfo("Asia/Shanghai")
MIDNIGHT = datetime(2026, 3, 2, tzinfo=SHANGHAI)  # the Monday START falls on, in Shanghai
CASES = [
    # (since, until, grain, filters): whole buckets, and windows with partial buckets at either end.
    (MIDNIGHT - 7 * 24 * H, MIDNIGHT + 6 * 7 * 24 * H, Grain.WEEK, TicketFilters()),
    (MIDNIGHT, MIDNIGHT + 5 * 7 * 24 * H, Grain.WEEK, TicketFilters(kind="complaint", channel="phone")),
    (START - 5 * H, START + 24 * 30 * H, Grain.WEEK, TicketFilters(kind="complaint", channel="phone")),
    (START + 30 * H, START + 24 * 20 * H + 7 * H, Grain.DAY, TicketFilters(kind="inquiry")),
    (MIDNIGHT - 24 * H, MIDNIGHT + 40 * 24 * H, Grain.DAY, TicketFilters(channel="web")),
    (START - 48 * H, START + 24 * 45 * H, Grain.MONTH, TicketFilters()),
    (START, START + 10 * H, Grain.DAY, TicketFilters()),  # no whole day: the facts alone
    # Not a rollup dimension: the facts alone.
    (MIDNIGHT, MIDNIGHT + 35 * 24 * H, Grain.WEEK, TicketFilters(priority="normal")),
]


async def reports(app: FastAPI, tz: ZoneInfo = SHANGHAI) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    out = []
    for since, until, grain, filters in CASES:
        pair = []
        for use_rollups in (True, False):
            async with app.state.runtime.db.transaction() as session:
                pair.append(
                    await ticket_kpis(
                        session,
                        since=since,
                        until=until,
                        grain=grain,
                        tz=tz,
                        filters=filters,
                        use_rollups=use_rollups,
                    )
                )
        out.append((pair[0], pair[1]))
    return out


async def kept_rows(app: FastAPI) -> list[tuple[Any, ...]]:
    """The rollup rows, less those every count of which went back to zero (a backfill has none)."""
    async with app.state.runtime.db.transaction() as session:
        rows = (await session.execute(sa.select(TicketRollup.__table__))).all()  # type: ignore[attr-defined]
    return sorted(tuple(r) for r in rows if r.n or r.calendar_bins or r.business_bins)


async def backfilled_rows(app: FastAPI) -> list[tuple[Any, ...]]:
    runtime = app.state.runtime
    async with runtime.db.transaction() as session:
        await rollups.backfill(session, rollups.rollup_zones(), now=runtime.clock.now())
    return await kept_rows(app)


async def deliver_shuffled_twice(
    app: FastAPI, events: list[tuple[str, dict[str, Any]]], ids: str = "ev"
) -> None:
    """Every event twice under its id, in shuffled order and concurrently, so batches mix and split."""
    consumer = app.state.runtime.consumer
    numbered = [(f"{ids}-{i}", t, d) for i, (t, d) in enumerate(events)] * 2
    random.Random(11).shuffle(numbered)
    outcomes = await asyncio.gather(*(consumer(delivery(t, d, event_id=i)) for i, t, d in numbered))
    assert {o.kind for o in outcomes} == {OutcomeKind.HANDLED, OutcomeKind.DUPLICATE}


async def test_reordered_and_duplicated_events_keep_rollups_exact(analytics_app: FastAPI) -> None:
    await deliver_shuffled_twice(analytics_app, tickets(150))
    for with_rollups, from_facts in await reports(analytics_app):
        assert with_rollups == from_facts
    assert with_rollups["totals"]["created"] > 0
    kept = await kept_rows(analytics_app)
    assert kept and kept == await backfilled_rows(analytics_app)


async def test_rollups_after_a_rebuild_give_the_same_reports(analytics_app: FastAPI) -> None:
    runtime = analytics_app.state.runtime
    await deliver_shuffled_twice(analytics_app, tickets(60))
    before = await reports(analytics_app)
    kept = await kept_rows(analytics_app)
    await rebuild(runtime.db, registry, runtime.clock, batch=13)
    assert await kept_rows(analytics_app) == kept
    after = await reports(analytics_app)
    assert after == before
    for with_rollups, from_facts in after:
        assert with_rollups == from_facts


async def test_a_report_in_whole_buckets_reads_no_facts(
    analytics_app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    await deliver_shuffled_twice(analytics_app, tickets(30))
    expected = (await reports(analytics_app))[1][1]  # whole weeks, kind and channel

    async def no_scan(*_: Any, **__: Any) -> None:
        raise AssertionError("the facts were scanned")

    monkeypatch.setattr(grouped, "fold_headline", no_scan)
    since, until, grain, filters = CASES[1]
    async with analytics_app.state.runtime.db.transaction() as session:
        report = await ticket_kpis(
            session, since=since, until=until, grain=grain, tz=SHANGHAI, filters=filters
        )
    assert report == expected and report["totals"]["created"] > 0


async def test_a_window_ending_now_reads_the_day_in_progress_from_its_rollup(
    analytics_app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    await deliver_shuffled_twice(analytics_app, tickets(60))
    async with analytics_app.state.runtime.db.transaction() as session:
        latest = max(
            (
                await session.execute(
                    sa.select(
                        sa.select(sa.func.max(TicketFact.created_at)).scalar_subquery(),
                        sa.select(sa.func.max(TicketFact.resolved_at)).scalar_subquery(),
                        sa.select(sa.func.max(SlaClock.occurred_at)).scalar_subquery(),
                    )
                )
            ).one()
        )
    # A report made at 03:00 on the day after the last thing recorded, with three tickets opened and
    # resolved that morning: the day in progress has something in it, and nothing is later than now.
    today = latest.astimezone(SHANGHAI).date() + timedelta(days=1)
    now = datetime.combine(today, time(3), SHANGHAI)
    morning = []
    for n in range(3):
        opened = now - 2 * H + timedelta(minutes=n)
        morning += lifecycle(
            uuid.uuid4(), opened, responded_at=opened + 10 * timedelta(minutes=1), resolved_at=now - H
        )
    await deliver_shuffled_twice(analytics_app, morning, ids="morning")
    since = datetime.combine(now.astimezone(SHANGHAI).date() - timedelta(days=5), time(), SHANGHAI)

    async def report(**options: Any) -> dict[str, Any]:
        async with analytics_app.state.runtime.db.transaction() as session:
            return await ticket_kpis(
                session,
                since=since,
                until=now,
                grain=Grain.DAY,
                tz=SHANGHAI,
                filters=TicketFilters(),
                **options,
            )

    from_facts = await report(use_rollups=False)

    async def no_scan(*_: Any, **__: Any) -> None:
        raise AssertionError("the facts were scanned")

    monkeypatch.setattr(grouped, "fold_headline", no_scan)
    with pytest.raises(AssertionError, match="scanned"):
        await report()  # without `now`, the day in progress is a partial bucket, scanned
    assert await report(now=now) == from_facts
    in_progress = from_facts["buckets"][-1]
    assert (in_progress["start"], in_progress["created"], in_progress["resolved"]) == (
        now.replace(hour=0).isoformat(),
        3,
        3,
    )


async def test_a_zone_without_rollups_is_scanned(analytics_app: FastAPI) -> None:
    await deliver_shuffled_twice(analytics_app, tickets(30))
    for with_rollups, from_facts in await reports(analytics_app, ZoneInfo("America/New_York")):
        assert with_rollups == from_facts


async def test_concurrent_batches_bringing_a_new_tickets_first_events_count_it_once(
    analytics_app: FastAPI,
) -> None:
    """Two batches project at once, each with some of the same new tickets' first events: the second
    waits for the first (the ticket locks), so the rollups count each ticket and clock once."""
    runtime = analytics_app.state.runtime
    events = [
        Item(f"ev-{i}", registry.get(type_).data_model.model_validate(data))
        for i, (type_, data) in enumerate(tickets(40))
    ]

    async def batch(items: list[Item]) -> None:
        async with runtime.db.transaction() as session:
            await project(session, items, calendar=reporting_calendar(), now=runtime.clock.now())

    await asyncio.gather(batch(events[0::2]), batch(events[1::2]))
    kept = await kept_rows(analytics_app)
    assert kept and kept == await backfilled_rows(analytics_app)
    for with_rollups, from_facts in await reports(analytics_app):
        assert with_rollups == from_facts
