"""Rollups of the headline ticket report, kept exact by the projector (PostgreSQL).

Per reporting zone (`ANALYTICS_ROLLUP_ZONES`), grain (day, week; months are merged from days), bucket,
kind and channel (plus one row for any kind and channel, `*`) and side (`created`: tickets created in
the bucket with their first-response bins; `resolved`: resolutions in the bucket with their flags and
resolution bins; `sla:<metric>`: SLA clocks decided in the bucket, met and breached), a row holds the
counts and the DDSketch bins (key → count, calendar and business time) of exactly the facts (and
clocks) the report's scan would fold into that bucket. A report for a year by week filtered on kind and
channel then reads 53 rows per side instead of ~83,000 index entries (unfiltered too; filtered on one
of the two, the few rows of each bucket are merged). Rows for "any
kind" or "any channel" alone would save that merge but double what every batch writes.

Exactness as facts change: the projector locks the batch's tickets (`lock_tickets`), reads each touched
fact and SLA clock as it stood, and in the batch's transaction subtracts what the old row contributed and adds
what the new one does — a changed bucket, dimension, bin or flag moves its count — in one statement,
its last before the commit (rows in key order; the bins merged by the database, JSONB, touching only
the delta's keys). The rollup is therefore a function of the facts whatever the order, duplication or
batching of events, and a rebuild replays it with them. `backfill` builds a zone's rows from the facts
in SQL (the migration, the `rollups` command and the benchmark's bulk load use it); reports use a zone
only once it is built.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from services.analytics.buckets import Grain, bucket_start
from services.analytics.grouped import more_work_mem
from services.analytics.models import RollupZone, TicketFact, TicketRollup
from services.analytics.settings import analytics_settings
from shared.db import any_of, dialect_name

ANY = "*"
GRAINS = (Grain.DAY, Grain.WEEK)
_DONE = ("resolved", "closed")
COUNTERS = ("n", "done", "reopened", "one_touch", "touched", "met", "breached")
SLA_SIDE = "sla:"
# What a fact contributes, read before the batch changes it.
FACT_COLUMNS = (
    "ticket_id",
    "kind",
    "channel",
    "status",
    "created_at",
    "resolved_at",
    "reopen_count",
    "public_replies",
    "first_response_bin",
    "first_response_business_bin",
    "resolution_bin",
    "resolution_business_bin",
)
BIN_COLUMNS = FACT_COLUMNS[-4:]

Contribution = tuple[str, datetime, str, str, tuple[int, ...], int | None, int | None]


def rollup_zones() -> list[str]:
    return list(analytics_settings().rollup_zones)


def rollup_grain(grain: Grain) -> Grain:
    """The rows a report of `grain` reads: weeks for weeks, days for days and months."""
    return Grain.WEEK if grain is Grain.WEEK else Grain.DAY


def contributions(row: Any) -> list[Contribution]:
    """What one fact adds to the rollups: its created side, and its resolved side once resolved."""
    out: list[Contribution] = [
        (
            "created",
            row.created_at,
            row.kind,
            row.channel,
            (1, 0, 0, 0, 0, 0, 0),
            row.first_response_bin,
            row.first_response_business_bin,
        )
    ]
    if row.resolved_at is not None:
        done = row.status in _DONE
        reopened = row.reopen_count > 0
        flags = (
            1,
            int(done),
            int(reopened),
            int(done and row.public_replies == 1 and not reopened),
            int(done and (row.public_replies or 0) >= 1),
            0,
            0,
        )
        out.append(
            (
                "resolved",
                row.resolved_at,
                row.kind,
                row.channel,
                flags,
                row.resolution_bin,
                row.resolution_business_bin,
            )
        )
    return out


def clock_contributions(row: Any) -> list[Contribution]:
    """What one decided SLA clock adds: one count, met or breached, when its deciding event happened."""
    breached = int(row.outcome == "breach")
    counters = (1, 0, 0, 0, 0, 1 - breached, breached)
    return [(SLA_SIDE + row.metric, row.occurred_at, row.kind, row.channel, counters, None, None)]


class Deltas:
    """A batch's changes to the rollups, per (zone, grain, bucket, side, kind, channel)."""

    def __init__(self, zones: Sequence[str]) -> None:
        self.zones = [(name, ZoneInfo(name)) for name in zones]
        self.rows: dict[tuple[str, str, date, str, str, str], tuple[list[int], Counter[int], Counter[int]]]
        self.rows = {}

    def change(
        self, old: Any | None, new: Any, of: Callable[[Any], list[Contribution]] = contributions
    ) -> None:
        """Replace what `old` contributed (if it existed) by what `new` does (`of` says what a row adds)."""
        before = of(old) if old is not None else []
        after = of(new)
        for contribution in before:
            if contribution not in after:
                self._add(contribution, -1)
        for contribution in after:
            if contribution not in before:
                self._add(contribution, 1)

    def _add(self, contribution: Contribution, sign: int) -> None:
        side, moment, kind, channel, counters, calendar, business = contribution
        for name, tz in self.zones:
            for grain in GRAINS:
                key = (name, grain.value, bucket_start(moment, grain, tz), side, kind, channel)
                entry = self.rows.get(key)
                if entry is None:
                    entry = self.rows[key] = ([0] * len(COUNTERS), Counter(), Counter())
                totals, calendar_bins, business_bins = entry
                for i, value in enumerate(counters):
                    totals[i] += sign * value
                if calendar is not None:
                    calendar_bins[calendar] += sign
                if business is not None:
                    business_bins[business] += sign

    def parameters(self) -> dict[str, list[Any]]:
        """The deltas as one array per column of `_APPLY` (one entry per counter or bin that changed)."""
        columns: dict[str, list[Any]] = {
            name: []
            for name in ("zone", "grain", "bucket", "side", "kind", "channel", "field", "bin", "count")
        }

        def emit(key: tuple[Any, ...], field: str, bin_: int | None, count: int) -> None:
            for name, value in zip(("zone", "grain", "bucket", "side", "kind", "channel"), key, strict=True):
                columns[name].append(value)
            columns["field"].append(field)
            columns["bin"].append(bin_)
            columns["count"].append(count)

        for key, (totals, calendar_bins, business_bins) in self.rows.items():
            for field, value in zip(COUNTERS, totals, strict=True):
                if value:
                    emit(key, field, None, value)
            for field, bins in (("calendar", calendar_bins), ("business", business_bins)):
                for bin_, count in bins.items():
                    if count:
                        emit(key, field, bin_, count)
        return columns


# A transaction-scoped advisory lock per ticket, taken in key order (the subquery's order is the order the
# locks are taken in). Row locks alone cannot serialise two batches that both bring a ticket's first
# events: neither sees a row to lock, and the second's upsert would update the first's fresh row while
# its deltas assumed there was none. A hash collision only makes two batches wait for each other.
_LOCK_TICKETS = sa.text(
    "SELECT pg_advisory_xact_lock(k) FROM (SELECT DISTINCT hashtextextended(CAST(id AS TEXT), 0) "
    "AS k FROM unnest(CAST(:ids AS UUID[])) AS id ORDER BY k) AS keys"
)


async def lock_tickets(session: AsyncSession, ticket_ids: Sequence[uuid.UUID]) -> None:
    """Hold the batch's tickets until it commits: what is read next is what no other batch is changing."""
    await session.execute(_LOCK_TICKETS, {"ids": list(ticket_ids)})


async def read_facts(session: AsyncSession, ticket_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Any]:
    """The touched facts as stored before the batch (its tickets locked by `lock_tickets`)."""
    facts = TicketFact.__table__  # type: ignore[attr-defined]
    rows = await session.execute(
        sa.select(*(facts.c[name] for name in FACT_COLUMNS)).where(
            any_of(facts.c.ticket_id, ticket_ids, postgresql=True)
        )
    )
    return {row.ticket_id: row for row in rows}


def kept(session: AsyncSession) -> list[str]:
    """The zones whose rollups this projector keeps (none on SQLite, whose report folds rows)."""
    return rollup_zones() if dialect_name(session) == "postgresql" else []


async def apply(session: AsyncSession, deltas: Deltas) -> None:
    """Add the batch's deltas to the rollup rows, in one statement."""
    if deltas.rows:
        await session.execute(_APPLY, deltas.parameters())


def _merge(column: str) -> str:
    """The stored bins plus the delta's: only the delta's keys are looked up and replaced (a count back
    to zero becomes null and is stripped), so the cost follows the delta, not the bucket's ~hundreds of
    bins."""
    return (
        f"{column} = jsonb_strip_nulls(r.{column} || coalesce((SELECT jsonb_object_agg(d.key, "
        f"nullif(coalesce(CAST(r.{column} ->> d.key AS INTEGER), 0) + CAST(d.value AS INTEGER), 0)) "
        f"FROM jsonb_each_text(excluded.{column}) AS d), '{{}}'))"
    )


def _bins_of(field: str) -> str:
    return f"coalesce(jsonb_object_agg(bin, count) FILTER (WHERE field = '{field}' AND count <> 0), '{{}}')"


_COLUMNS = (
    "zone, grain, kind, channel, bucket, side, " + ", ".join(COUNTERS) + ", calendar_bins, business_bins"
)
# Every delta also counts for the "any kind, any channel" row (expanded here, not in Python); rows are
# written in key order, so concurrent batches lock shared rows in one order.
_APPLY = sa.text(
    "WITH delta AS (SELECT * FROM unnest(CAST(:zone AS TEXT[]), CAST(:grain AS TEXT[]), "
    "CAST(:bucket AS DATE[]), CAST(:side AS TEXT[]), CAST(:kind AS TEXT[]), CAST(:channel AS TEXT[]), "
    "CAST(:field AS TEXT[]), CAST(:bin AS INTEGER[]), CAST(:count AS INTEGER[])) "
    "AS d(zone, grain, bucket, side, kind, channel, field, bin, count)), "
    "cubed AS (SELECT d.zone, d.grain, k.kind, k.channel, d.bucket, d.side, d.field, d.bin, "
    "CAST(sum(d.count) AS INTEGER) AS count FROM delta AS d "
    "CROSS JOIN LATERAL (VALUES (d.kind, d.channel), ('*', '*')) AS k(kind, channel) "
    "GROUP BY 1, 2, 3, 4, 5, 6, 7, 8), "
    "folded AS (SELECT zone, grain, kind, channel, bucket, side, "
    + ", ".join(f"CAST(coalesce(sum(count) FILTER (WHERE field = '{c}'), 0) AS INTEGER)" for c in COUNTERS)
    + ", "
    + _bins_of("calendar")
    + ", "
    + _bins_of("business")
    + " FROM cubed GROUP BY 1, 2, 3, 4, 5, 6) "
    f"INSERT INTO ticket_rollups AS r ({_COLUMNS}) "
    "SELECT * FROM folded ORDER BY zone, grain, kind, channel, bucket, side "
    "ON CONFLICT (zone, grain, kind, channel, bucket, side) DO UPDATE SET "
    + ", ".join(f"{c} = r.{c} + excluded.{c}" for c in COUNTERS)
    + f", {_merge('calendar_bins')}, {_merge('business_bins')}"
)


def _backfill_sql(grain: Grain) -> sa.TextClause:
    """One zone's rows of one grain from the facts and the SLA clocks: one pass, the cube by grouping sets."""
    bucket = "CAST(date_trunc('{grain}', timezone(:zone, {at})) AS DATE)"
    done = "status IN ('resolved', 'closed')"

    def cube(*extra: str) -> str:
        columns = ("side, bucket, kind, channel", "side, bucket")
        return "GROUPING SETS (" + ", ".join(f"({', '.join((c, *extra))})" for c in columns) + ")"

    def bins(name: str) -> str:
        return (
            f"{name} AS (SELECT side, bucket, kind, channel, jsonb_object_agg(bin, count) AS bins "
            "FROM (SELECT side, bucket, "
            f"coalesce(kind, '*') AS kind, coalesce(channel, '*') AS channel, {name} AS bin, "
            f"CAST(count(*) AS INTEGER) AS count FROM sides WHERE {name} IS NOT NULL "
            f"GROUP BY {cube(name)}) AS b GROUP BY 1, 2, 3, 4)"
        )

    # Every branch: side, bucket, kind, channel, the COUNTERS, then the calendar and business bins.
    branches = [
        f"SELECT 'created' AS side, {bucket.format(grain=grain.value, at='created_at')} AS bucket, "
        "kind, channel, 1 AS n, 0 AS done, 0 AS reopened, 0 AS one_touch, 0 AS touched, "
        "0 AS met, 0 AS breached, "
        "first_response_bin AS cal, first_response_business_bin AS bus FROM ticket_facts",
        f"SELECT 'resolved', {bucket.format(grain=grain.value, at='resolved_at')}, kind, channel, 1, "
        f"CASE WHEN {done} THEN 1 ELSE 0 END, CASE WHEN reopen_count > 0 THEN 1 ELSE 0 END, "
        f"CASE WHEN {done} AND public_replies = 1 AND reopen_count = 0 THEN 1 ELSE 0 END, "
        f"CASE WHEN {done} AND coalesce(public_replies, 0) >= 1 THEN 1 ELSE 0 END, 0, 0, "
        "resolution_bin, resolution_business_bin FROM ticket_facts WHERE resolved_at IS NOT NULL",
        f"SELECT '{SLA_SIDE}' || metric, {bucket.format(grain=grain.value, at='occurred_at')}, kind, "
        "channel, 1, 0, 0, 0, 0, CASE WHEN outcome = 'breach' THEN 0 ELSE 1 END, "
        "CASE WHEN outcome = 'breach' THEN 1 ELSE 0 END, CAST(NULL AS INTEGER), CAST(NULL AS INTEGER) "
        "FROM sla_clocks",
    ]
    return sa.text(
        "INSERT INTO ticket_rollups (" + _COLUMNS + ") "
        "WITH sides AS (" + " UNION ALL ".join(branches) + "), "
        "totals AS (SELECT side, bucket, coalesce(kind, '*') AS kind, coalesce(channel, '*') AS channel, "
        + ", ".join(f"CAST(sum({c}) AS INTEGER) AS {c}" for c in COUNTERS)
        + f" FROM sides GROUP BY {cube()}), "
        + bins("cal")
        + ", "
        + bins("bus")
        + f" SELECT :zone, '{grain.value}', t.kind, t.channel, t.bucket, t.side, "
        + ", ".join(f"t.{c}" for c in COUNTERS)
        + ", coalesce(cal.bins, '{}'), coalesce(bus.bins, '{}') FROM totals AS t "
        "LEFT JOIN cal USING (side, bucket, kind, channel) LEFT JOIN bus USING (side, bucket, kind, channel)"
    )


async def backfill(session: AsyncSession, zones: Iterable[str], *, now: datetime) -> None:
    """Build the zones' rollups from the facts and the SLA clocks, which no batch may change meanwhile."""
    await session.execute(sa.text("LOCK TABLE ticket_facts, sla_clocks IN SHARE MODE"))
    async with more_work_mem(session):
        for zone in zones:
            ZoneInfo(zone)  # an unknown zone fails here, not half-way
            await session.execute(sa.delete(TicketRollup).where(TicketRollup.zone == zone))  # type: ignore[arg-type]
            for grain in GRAINS:
                await session.execute(_backfill_sql(grain), {"zone": zone})
            await session.merge(RollupZone(zone=zone, built_at=now))


async def built(session: AsyncSession, zone: str) -> bool:
    """Whether reports in `zone` may read rollups: kept by the projector and built from the facts."""
    return zone in kept(session) and await session.get(RollupZone, zone) is not None


async def read(
    session: AsyncSession,
    *,
    zone: str,
    grain: Grain,
    kind: str | None,
    channel: str | None,
    first: date,
    end: date,
) -> Sequence[Any]:
    """The rows of buckets starting in [first, end), both sides: several per bucket for one filter.

    The bins come back as parallel key and count arrays (`calendar_keys`, `calendar_counts`, …): the
    database unpacks the JSONB, and the driver decodes integer arrays without a JSON parse in Python.
    """
    if kind is None and channel is None:
        dimensions = "r.kind = '*' AND r.channel = '*'"
    else:  # the (kind, channel) rows that match: one per bucket and side with both, a few with one
        dimensions = ("r.kind = :kind" if kind is not None else "r.kind <> '*'") + (
            " AND r.channel = :channel" if channel is not None else " AND r.channel <> '*'"
        )
    query = sa.text(
        "SELECT r.bucket, r.side, "
        + ", ".join(f"r.{c}" for c in COUNTERS)
        + ", c.keys AS calendar_keys, c.counts AS calendar_counts, "
        "b.keys AS business_keys, b.counts AS business_counts FROM ticket_rollups AS r "
        + " ".join(
            f"CROSS JOIN LATERAL (SELECT coalesce(array_agg(CAST(key AS INTEGER)), '{{}}') AS keys, "
            f"coalesce(array_agg(CAST(value AS INTEGER)), '{{}}') AS counts "
            f"FROM jsonb_each_text(r.{column})) AS {alias}"
            for column, alias in (("calendar_bins", "c"), ("business_bins", "b"))
        )
        + f" WHERE r.zone = :zone AND r.grain = :grain AND {dimensions} AND r.bucket >= :first "
        "AND r.bucket < :end"
    )
    parameters: dict[str, Any] = {"zone": zone, "grain": grain.value, "first": first, "end": end}
    parameters |= {name: value for name, value in (("kind", kind), ("channel", channel)) if value}
    return (await session.execute(query, parameters)).all()
