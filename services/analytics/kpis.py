"""Ticket KPIs: volumes, backlog, response and resolution percentiles, SLA achievement, breakdowns.

Percentiles come from DDSketch (1 % relative accuracy): one sketch per bucket, merged for the totals, so a
bucket's figures and the period's figures come from the same mergeable summaries.

The default report is the headline series per bucket. The breakdowns (per agent, per group, breaches by
dimension, top complaint categories) are computed only when asked for (`include`): per agent and per group
they multiply the sketches a report builds, and most callers chart the series.

On PostgreSQL the facts are not read row by row: every fact carries the DDSketch bin of each duration (a
generated column), and one grouped scan per side (created, resolved) of a covering index returns, per
bucket, the count of durations in each bin. A headline report in a reporting zone the projector keeps
rollups for (rollups.py), filtered on nothing but kind and channel, reads one rollup row per bucket and
side instead (the same counts and bins, kept exact at ingest), and scans the facts only for the partial
buckets at the ends of its window. SQLite (the embedded mode) folds rows in Python.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, fields
from datetime import date, datetime
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from services.analytics import grouped, rollups, sla_clocks
from services.analytics.buckets import Grain, bucket_start, bucket_starts, local_midnight, next_bucket
from services.analytics.models import SlaClock, TicketFact
from services.analytics.statistics import merged, quantiles, rate, sketch_of
from shared.db import dialect_name

_DONE = ("resolved", "closed")
# The breakdowns a report adds on request (`include`).
BREAKDOWNS = ("agents", "groups", "breaches", "categories")


@dataclass(frozen=True)
class TicketFilters:
    kind: str | None = None
    priority: str | None = None
    channel: str | None = None
    group: str | None = None
    agent: str | None = None
    policy: str | None = None
    category: str | None = None
    customer_tier: str | None = None

    def active(self) -> dict[str, str]:
        return {f.name: v for f in fields(self) if (v := getattr(self, f.name)) is not None}

    def on_facts(self) -> list[sa.ColumnElement[bool]]:
        columns = {
            "kind": TicketFact.kind,
            "priority": TicketFact.priority,
            "channel": TicketFact.channel,
            "group": TicketFact.group,
            "agent": TicketFact.assignee,
            "policy": TicketFact.policy_name,
            "category": TicketFact.category,
            "customer_tier": TicketFact.customer_tier,
        }
        return [columns[name] == value for name, value in self.active().items()]  # type: ignore[misc]

    def on_sla(self) -> list[sa.ColumnElement[bool]]:
        columns = {
            "kind": SlaClock.kind,
            "priority": SlaClock.priority,
            "channel": SlaClock.channel,
            "group": SlaClock.group,
            "agent": SlaClock.assignee,
            "policy": SlaClock.policy_name,
        }
        clauses: list[sa.ColumnElement[bool]] = []
        for name, value in self.active().items():
            if name in columns:
                clauses.append(columns[name] == value)  # type: ignore[arg-type]
            else:  # ticket attributes the SLA rows do not carry
                column = TicketFact.category if name == "category" else TicketFact.customer_tier
                clauses.append(
                    SlaClock.ticket_id.in_(sa.select(TicketFact.ticket_id).where(column == value))  # type: ignore[attr-defined]
                )
        return clauses


TIME_KINDS = ("calendar", "business")


def _durations(sketches: dict[str, Any]) -> dict[str, Any]:
    """Percentiles of a bucket's calendar and business sketches (a missing one has no durations)."""
    out = {}
    for time_kind in TIME_KINDS:
        sketch = sketches.get(time_kind)
        figures = quantiles(sketch) if sketch is not None else dict.fromkeys(("p50", "p90", "p99"))
        out[time_kind] = {**figures, "n": int(sketch.count) if sketch is not None else 0, "unit": "seconds"}
    return out


class _Sketches:
    """Calendar and business sketches of one duration, per bucket: DDSketches when rows are folded one
    by one, `grouped.Bins` when the database counted them (a bucket nothing fell in has neither)."""

    def __init__(self) -> None:
        self.sketches: dict[date, dict[str, Any]] = defaultdict(dict)

    def sketch(self, bucket: date, time_kind: str) -> Any:
        """The bucket's DDSketch of `time_kind`, made when first needed."""
        sketches = self.sketches[bucket]
        sketch = sketches.get(time_kind)
        if sketch is None:
            sketch = sketches[time_kind] = sketch_of(())
        return sketch

    def add(self, bucket: date, calendar: float | None, business: float | None) -> None:
        for time_kind, value in zip(TIME_KINDS, (calendar, business), strict=True):
            sketch = self.sketch(bucket, time_kind)
            if value is not None:
                sketch.add(max(0.0, float(value)))

    def per_bucket(self) -> dict[date, dict[str, Any]]:
        return dict(self.sketches)


class _Fold:
    """Accumulates rows into bucket counters, sketches and per-agent / per-group figures."""

    def __init__(self, grain: Grain, tz: ZoneInfo) -> None:
        self.grain, self.tz = grain, tz
        self.created: Counter[date] = Counter()
        self.resolved: Counter[date] = Counter()
        self.response = _Sketches()
        self.resolution = _Sketches()
        self.categories: Counter[str] = Counter()
        self.people: dict[str, dict[str, dict[str, Any]]] = {"agent": {}, "group": {}}
        self.reopened = self.one_touch = self.touched = self.resolutions = 0
        self.sla_by_bucket: dict[date, Counter[str]] = defaultdict(Counter)
        self.sla_totals: dict[str, Counter[str]] = defaultdict(Counter)
        self.breaches_by: dict[str, Counter[str]] = {
            d: Counter() for d in ("policy", "kind", "priority", "channel", "group", "agent")
        }

    def _people(self, agent: str | None, group: str | None) -> list[dict[str, Any]]:
        out = []
        for dimension, key in (("agent", agent), ("group", group)):
            if key is not None:
                person = self.people[dimension].get(key)
                if person is None:
                    person = Counter({"frt": sketch_of(()), "res": sketch_of(())})
                    self.people[dimension][key] = person
                out.append(person)
        return out

    def created_row(self, row: Any) -> None:
        bucket = bucket_start(row.created_at, self.grain, self.tz)
        self.created[bucket] += 1
        self.response.add(bucket, row.first_response_seconds, row.first_response_business_seconds)
        if row.kind == "complaint":
            self.categories[row.category or "uncategorised"] += 1
        for p in self._people(row.assignee, row.group):
            p["created"] += 1
            if row.first_response_seconds is not None:
                p["frt"].add(max(0.0, float(row.first_response_seconds)))

    def resolved_row(self, row: Any) -> None:
        bucket = bucket_start(row.resolved_at, self.grain, self.tz)
        done = row.status in _DONE
        if done:
            self.resolved[bucket] += 1
            self.resolution.add(bucket, row.resolution_seconds, row.resolution_business_seconds)
        was_reopened = row.reopen_count > 0
        is_one_touch = done and row.public_replies == 1 and not was_reopened
        is_touched = done and (row.public_replies or 0) >= 1
        self.resolutions += 1
        self.reopened += was_reopened
        self.one_touch += is_one_touch
        self.touched += is_touched
        for p in self._people(row.assignee, row.group):
            p["resolved"] += done
            p["resolutions"] += 1
            p["reopened"] += was_reopened
            p["one_touch"] += is_one_touch
            p["touched"] += is_touched
            if done and row.resolution_seconds is not None:
                p["res"].add(max(0.0, float(row.resolution_seconds)))

    def sla_counted(self, bucket: date, metric: str, outcome: str, n: int) -> None:
        """`n` clocks of `metric` decided in `bucket` with `outcome` (`met` or `breach`)."""
        outcome = "breached" if outcome == "breach" else "met"
        self.sla_totals[metric][outcome] += n
        self.sla_by_bucket[bucket][f"{metric}:{outcome}"] += n

    def sla_clock(self, row: Any) -> None:
        outcome = "breached" if row.outcome == "breach" else "met"
        self.sla_counted(bucket_start(row.occurred_at, self.grain, self.tz), row.metric, row.outcome, 1)
        for p in self._people(row.assignee, row.group):
            p[outcome] += 1
        if outcome == "breached":
            for dimension, value in (
                ("policy", row.policy_name),
                ("kind", row.kind),
                ("priority", row.priority),
                ("channel", row.channel),
                ("group", row.group),
                ("agent", row.assignee),
            ):
                self.breaches_by[dimension][value or "none"] += 1


async def ticket_kpis(
    session: AsyncSession,
    *,
    since: datetime,
    until: datetime,
    grain: Grain,
    tz: ZoneInfo,
    filters: TicketFilters,
    top: int = 10,
    include: Iterable[str] = (),
    in_database: bool | None = None,
    use_rollups: bool = True,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The ticket KPIs for [since, until), bucketed by `grain` in `tz`; `include` adds breakdowns.

    The headline report reads the rollups where they serve it (`_fold_rollups`), else the facts;
    `use_rollups=False` always reads the facts (tests compare the two). `now` is the moment of the
    report, if the caller knows it: nothing is recorded later, so a window that ends at or after it
    reads the bucket in progress from its rollup row.
    """
    extra = set(include)
    if unknown := extra - set(BREAKDOWNS):
        raise ValueError(f"unknown breakdowns: {sorted(unknown)}")
    where = filters.on_facts()
    starts = bucket_starts(since, until, grain, tz)

    fold = _Fold(grain, tz)
    in_database = in_database if in_database is not None else dialect_name(session) == "postgresql"
    await _fill(
        session,
        fold,
        since=since,
        until=until,
        filters=filters,
        starts=starts,
        extra=extra,
        in_database=in_database,
        use_rollups=use_rollups,
        now=now,
    )
    # Two counts, each a range of its own index, rather than one pass over every fact of the filters.
    created_before = (
        await session.execute(
            sa.select(sa.func.count()).select_from(TicketFact).where(TicketFact.created_at < since, *where)
        )
    ).scalar_one()
    resolved_before = (
        await session.execute(
            sa.select(sa.func.count())
            .select_from(TicketFact)
            .where(TicketFact.resolved_at < since, TicketFact.status.in_(_DONE), *where)  # type: ignore[attr-defined]
        )
    ).scalar_one()
    open_before = (created_before, resolved_before)
    created, resolved, response, resolution = fold.created, fold.resolved, fold.response, fold.resolution
    reopened, one_touch, touched = fold.reopened, fold.one_touch, fold.touched
    sla_by_bucket, sla_totals, breaches_by = fold.sla_by_bucket, fold.sla_totals, fold.breaches_by
    categories, people = fold.categories, fold.people

    response_sketches = response.per_bucket()
    resolution_sketches = resolution.per_bucket()
    backlog = open_before[0] - open_before[1]
    buckets = []
    for start in starts:
        backlog += created[start] - resolved[start]
        counts = sla_by_bucket.get(start, Counter())
        buckets.append(
            {
                "start": local_midnight(start, tz).isoformat(),
                "created": created[start],
                "resolved": resolved[start],
                "backlog": backlog,
                "first_response": _durations(response_sketches.get(start, {})),
                "resolution": _durations(resolution_sketches.get(start, {})),
                "sla_achievement": {
                    metric: rate(
                        counts[f"{metric}:met"], counts[f"{metric}:met"] + counts[f"{metric}:breached"]
                    )
                    for metric in ("first_response", "resolution")
                },
            }
        )

    def total(sketches: dict[date, dict[str, Any]]) -> dict[str, Any]:
        return _durations({k: _merged([s[k] for s in sketches.values() if k in s]) for k in TIME_KINDS})

    report: dict[str, Any] = {
        "totals": {
            "created": sum(created.values()),
            "resolved": sum(resolved.values()),
            "backlog_at_end": backlog,
            "first_response": total(response_sketches),
            "resolution": total(resolution_sketches),
            "reopen_rate": rate(reopened, fold.resolutions),
            "one_touch_resolution_rate": rate(one_touch, touched),
        },
        "buckets": buckets,
        "sla": {
            metric: {
                "met": sla_totals[metric]["met"],
                "breached": sla_totals[metric]["breached"],
                "achievement": rate(
                    sla_totals[metric]["met"], sla_totals[metric]["met"] + sla_totals[metric]["breached"]
                ),
            }
            for metric in ("first_response", "next_response", "resolution")
        },
    }
    if "breaches" in extra:
        report["breaches_by"] = {
            dimension: [{"key": key, "count": count} for key, count in counter.most_common()]
            for dimension, counter in breaches_by.items()
        }
    if "categories" in extra:
        report["top_complaint_categories"] = [
            {"category": c, "count": n} for c, n in categories.most_common(top)
        ]
    if "agents" in extra:
        report["by_agent"] = _performance(people["agent"], "agent")
    if "groups" in extra:
        report["by_group"] = _performance(people["group"], "group")
    return report


async def _fill(
    session: AsyncSession,
    fold: _Fold,
    *,
    since: datetime,
    until: datetime,
    filters: TicketFilters,
    starts: list[date],
    extra: set[str],
    in_database: bool,
    use_rollups: bool,
    now: datetime | None,
) -> None:
    """Fold the window's facts and SLA clocks: from rollups and grouped scans, or row by row."""
    where, on_sla = filters.on_facts(), filters.on_sla()
    # The SLA clocks one by one where a breakdown needs each clock's agent, group or policy (and in the
    # embedded mode); otherwise counted by the database, or read from the rollups.
    clocks_by_row = not in_database or bool(extra & {"agents", "groups", "breaches"})
    if clocks_by_row:
        for row in await sla_clocks.decided_rows(session, since=since, until=until, where=on_sla):
            fold.sla_clock(row)
    if not in_database:
        await _fold_rows(session, fold, since=since, until=until, where=where)
        return
    edges = [local_midnight(start, fold.tz) for start in starts]
    counted = None if clocks_by_row else on_sla
    if extra & {"agents", "groups", "categories"}:
        await grouped.fold_facts(session, fold, since=since, until=until, where=where)
        await _count_clocks(
            session, fold, since=since, until=until, on_sla=counted, starts=starts, edges=edges
        )
        return
    scan = partial(_scan_headline, session, fold, where=where, on_sla=counted, starts=starts, edges=edges)
    if not (
        use_rollups
        and await _fold_rollups(session, fold, scan, since, until, filters, sla=not clocks_by_row, now=now)
    ):
        await scan(since=since, until=until)


async def _scan_headline(
    session: AsyncSession,
    fold: _Fold,
    *,
    since: datetime,
    until: datetime,
    where: list[Any],
    on_sla: list[Any] | None,
    starts: list[date],
    edges: list[datetime],
    large: bool = True,
) -> None:
    """The headline of [since, until) from the facts, with its SLA clocks counted."""
    await grouped.fold_headline(
        session, fold, since=since, until=until, where=where, starts=starts, edges=edges, large=large
    )
    await _count_clocks(session, fold, since=since, until=until, on_sla=on_sla, starts=starts, edges=edges)


async def _count_clocks(
    session: AsyncSession,
    fold: _Fold,
    *,
    since: datetime,
    until: datetime,
    on_sla: list[Any] | None,
    starts: list[date],
    edges: list[datetime],
) -> None:
    """The SLA clocks decided in [since, until) counted by the database (None: folded row by row)."""
    if on_sla is None:
        return
    counts = await sla_clocks.decided_counts(session, since=since, until=until, where=on_sla, edges=edges)
    for b, metric, outcome, n in counts:
        if 1 <= b <= len(starts):
            fold.sla_counted(starts[b - 1], metric, outcome, n)


async def _fold_rollups(
    session: AsyncSession,
    fold: _Fold,
    headline: Callable[..., Awaitable[None]],
    since: datetime,
    until: datetime,
    filters: TicketFilters,
    *,
    sla: bool,
    now: datetime | None = None,
) -> bool:
    """The headline from the rollups, if they serve the report; False (nothing folded) if not.

    They serve a report in a zone whose rollups are built, filtered on nothing but kind and channel.
    The whole weeks (for a weekly report) and then the whole days inside the window come from rollup
    rows; what is left at its ends (a window need not start at midnight) is scanned from the facts as
    before, so the report is the fact scan's, bucket for bucket.
    """
    active = filters.active()
    if not set(active) <= {"kind", "channel"} or not await rollups.built(session, fold.tz.key):
        return False
    tz, used = fold.tz, False
    left = [(since, until)]
    for grain in dict.fromkeys((rollups.rollup_grain(fold.grain), Grain.DAY)):
        rest = []
        for start, stop in left:
            first = bucket_start(start, grain, tz)
            if local_midnight(first, tz) < start:
                first = next_bucket(first, grain)
            end = bucket_start(stop, grain, tz)
            if now is not None and stop >= now:
                # Nothing is recorded after `now`, so the bucket in progress holds only what the window
                # does: its rollup row serves, and the day's facts are not scanned, however many they are
                # (a dashboard's window ends now, and that scan grew with every ticket of the day).
                end = next_bucket(end, grain)
            if first >= end:  # no whole bucket of this grain in there
                rest.append((start, stop))
                continue
            rows = await rollups.read(
                session,
                zone=tz.key,
                grain=grain,
                kind=active.get("kind"),
                channel=active.get("channel"),
                first=first,
                end=end,
            )
            _fold_rollup_rows(fold, rows, same_grain=grain is fold.grain, sla=sla)
            used = True
            if start < (opens := local_midnight(first, tz)):
                rest.append((start, opens))
            if (closes := local_midnight(end, tz)) < stop:
                rest.append((closes, stop))
        left = rest
    if not used:
        return False
    for start, stop in left:
        await headline(since=start, until=stop, large=False)
    return True


def _fold_rollup_rows(fold: _Fold, rows: Iterable[Any], *, same_grain: bool, sla: bool) -> None:
    for row in rows:
        bucket = (
            row.bucket
            if same_grain
            else bucket_start(local_midnight(row.bucket, fold.tz), fold.grain, fold.tz)
        )
        if row.side.startswith(rollups.SLA_SIDE):
            if sla:
                metric = row.side.removeprefix(rollups.SLA_SIDE)
                fold.sla_counted(bucket, metric, "met", row.met)
                fold.sla_counted(bucket, metric, "breach", row.breached)
            continue
        calendar = grouped.Bins.of(row.calendar_keys, row.calendar_counts)
        business = grouped.Bins.of(row.business_keys, row.business_counts)
        if row.side == "created":
            fold.created[bucket] += row.n
            sketches = fold.response.sketches[bucket]
        else:
            fold.resolved[bucket] += row.done
            fold.resolutions += row.n
            fold.reopened += row.reopened
            fold.one_touch += row.one_touch
            fold.touched += row.touched
            sketches = fold.resolution.sketches[bucket]
        grouped.add_bins(sketches, "calendar", calendar)
        grouped.add_bins(sketches, "business", business)


def _merged(sketches: list[Any]) -> Any:
    """The merge of a side's bucket sketches: grouped bins (PostgreSQL) or DDSketches (row by row)."""
    if sketches and isinstance(sketches[0], grouped.Bins):
        total = grouped.Bins()
        for sketch in sketches:
            total.merge(sketch)
        return total
    return merged(sketches)


async def _fold_rows(
    session: AsyncSession, fold: _Fold, *, since: datetime, until: datetime, where: list[Any]
) -> None:
    """Every fact of the window through the Python fold (small databases)."""
    created_rows = (
        await session.execute(
            sa.select(
                TicketFact.created_at,
                TicketFact.kind,
                TicketFact.category,
                TicketFact.assignee,
                TicketFact.group,
                TicketFact.first_response_seconds,
                TicketFact.first_response_business_seconds,
            ).where(TicketFact.created_at >= since, TicketFact.created_at < until, *where)
        )
    ).all()
    resolved_rows = (
        await session.execute(
            sa.select(
                TicketFact.resolved_at,
                TicketFact.status,
                TicketFact.assignee,
                TicketFact.group,
                TicketFact.reopen_count,
                TicketFact.public_replies,
                TicketFact.resolution_seconds,
                TicketFact.resolution_business_seconds,
            ).where(TicketFact.resolved_at >= since, TicketFact.resolved_at < until, *where)
        )
    ).all()
    for row in created_rows:
        fold.created_row(row)
    for row in resolved_rows:
        fold.resolved_row(row)


def _performance(rows: dict[str, dict[str, Any]], label: str) -> list[dict[str, Any]]:
    """Per-agent or per-group figures for performance reviews, busiest first."""
    out = []
    for key, p in sorted(rows.items(), key=lambda item: (-item[1]["resolved"], item[0])):
        out.append(
            {
                label: key,
                "created": p["created"],
                "resolved": p["resolved"],
                "first_response_calendar": {**quantiles(p["frt"], (0.5, 0.9)), "n": int(p["frt"].count)},
                "resolution_calendar": {**quantiles(p["res"], (0.5, 0.9)), "n": int(p["res"].count)},
                "reopen_rate": rate(p["reopened"], p["resolutions"]),
                "one_touch_resolution_rate": rate(p["one_touch"], p["touched"]),
                "sla_achievement": rate(p["met"], p["met"] + p["breached"]),
                "sla_breaches": p["breached"],
            }
        )
    return out
