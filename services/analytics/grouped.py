"""Ticket KPIs folded by PostgreSQL: grouped counts per DDSketch bin instead of one row per ticket."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from ddsketch import DDSketch
from sqlalchemy.ext.asyncio import AsyncSession

from services.analytics.models import TicketFact

_DONE = ("resolved", "closed")
RELATIVE_ACCURACY = 0.01
_MAPPING = DDSketch(RELATIVE_ACCURACY)._mapping
# The library's key is ceil(log2(x) · multiplier); in natural logarithms that is ceil(ln(x) · this).
_LN_MULTIPLIER = _MAPPING._multiplier / math.log(2)
ZERO = -(2**31)  # the bin of zero durations (the sketch's own zero count)
WORK_MEM = "64MB"


def bin_of(column: Any) -> Any:
    """The DDSketch bin of a duration column, in SQL (NULL stays NULL, zero gets its own bin)."""
    return sa.case(
        (column.is_(None), sa.null()),
        (column <= 0, ZERO),
        else_=sa.cast(sa.func.ceil(sa.func.ln(column) * _LN_MULTIPLIER), sa.Integer),
    )


def python_bin(value: float) -> int:
    """The same bin as `bin_of`, as the library computes it (for tests)."""
    return ZERO if value <= _MAPPING.min_possible else int(_MAPPING.key(value))


def add_bin(sketch: DDSketch, key: int, count: int) -> None:
    """Add `count` durations of one bin: the bin's representative value lands in that same bin."""
    sketch.add(0.0 if key == ZERO else _MAPPING.value(key), float(count))


def _bucket(column: Any, grain: str, tz: str) -> Any:
    return sa.cast(sa.func.date_trunc(sa.literal_column(f"'{grain}'"), sa.func.timezone(tz, column)), sa.Date)


def _mask(columns: Sequence[Any], grouped: Sequence[Any]) -> int:
    """What GROUPING(…) returns for a grouping set: a 1 bit for each column left out of it."""
    names = {c.name for c in grouped}
    return sum(1 << (len(columns) - 1 - i) for i, c in enumerate(columns) if c.name not in names)


async def fold_facts(
    session: AsyncSession, fold: Any, *, since: datetime, until: datetime, where: list[Any]
) -> None:
    """Fill `fold` (a kpis._Fold) from two grouped scans of the facts."""
    tz = fold.tz.key
    # The grouping sets hash tens of thousands of (bucket, bin) groups: with the default 4 MB PostgreSQL
    # sorts them on disk instead, several times slower. Local to this read-only transaction.
    await session.execute(sa.text(f"SET LOCAL work_mem = '{WORK_MEM}'"))
    await _created(session, fold, since, until, where, tz)
    await _resolved(session, fold, since, until, where, tz)


async def _created(
    session: AsyncSession, fold: Any, since: datetime, until: datetime, where: list[Any], tz: str
) -> None:
    inner = (
        sa.select(
            _bucket(TicketFact.created_at, fold.grain.value, tz).label("bucket"),
            TicketFact.assignee.label("agent"),  # type: ignore[attr-defined]
            TicketFact.group.label("grp"),  # type: ignore[attr-defined]
            sa.case(
                (TicketFact.kind == "complaint", sa.func.coalesce(TicketFact.category, "uncategorised"))
            ).label("cat"),
            bin_of(TicketFact.first_response_seconds).label("k_cal"),
            bin_of(TicketFact.first_response_business_seconds).label("k_bus"),
        )
        .where(TicketFact.created_at >= since, TicketFact.created_at < until, *where)
        .subquery()
    )
    c = inner.c
    columns = [c.bucket, c.agent, c.grp, c.cat, c.k_cal, c.k_bus]
    sets = {
        "bucket_cal": (c.bucket, c.k_cal),
        "bucket_bus": (c.bucket, c.k_bus),
        "agent": (c.agent, c.k_cal),
        "group": (c.grp, c.k_cal),
        "category": (c.cat,),
    }
    masks = {_mask(columns, cols): name for name, cols in sets.items()}
    query = sa.select(sa.func.grouping(*columns), *columns, sa.func.count()).group_by(
        sa.func.grouping_sets(*(sa.tuple_(*cols) for cols in sets.values()))
    )
    for mask, bucket, agent, grp, cat, k_cal, k_bus, n in (await session.execute(query)).all():
        match masks.get(mask):
            case "bucket_cal":
                fold.created[bucket] += n
                if k_cal is not None:
                    add_bin(fold.response.sketches[bucket]["calendar"], k_cal, n)
            case "bucket_bus" if k_bus is not None:
                add_bin(fold.response.sketches[bucket]["business"], k_bus, n)
            case "agent" | "group" as dimension if (agent if dimension == "agent" else grp) is not None:
                (person,) = fold._people(agent, None) if dimension == "agent" else fold._people(None, grp)
                person["created"] += n
                if k_cal is not None:
                    add_bin(person["frt"], k_cal, n)
            case "category" if cat is not None:
                fold.categories[cat] += n


async def _resolved(
    session: AsyncSession, fold: Any, since: datetime, until: datetime, where: list[Any], tz: str
) -> None:
    done = TicketFact.status.in_(_DONE)  # type: ignore[attr-defined]
    flag = lambda condition: sa.case((condition, 1), else_=0)  # noqa: E731
    inner = (
        sa.select(
            _bucket(TicketFact.resolved_at, fold.grain.value, tz).label("bucket"),
            TicketFact.assignee.label("agent"),  # type: ignore[attr-defined]
            TicketFact.group.label("grp"),  # type: ignore[attr-defined]
            flag(done).label("done"),
            flag(TicketFact.reopen_count > 0).label("reopened"),
            flag(sa.and_(done, TicketFact.public_replies == 1, TicketFact.reopen_count == 0)).label(
                "one_touch"
            ),
            flag(sa.and_(done, sa.func.coalesce(TicketFact.public_replies, 0) >= 1)).label("touched"),
            sa.case((done, bin_of(TicketFact.resolution_seconds))).label("k_cal"),
            sa.case((done, bin_of(TicketFact.resolution_business_seconds))).label("k_bus"),
        )
        .where(TicketFact.resolved_at >= since, TicketFact.resolved_at < until, *where)
        .subquery()
    )
    c = inner.c
    columns = [c.bucket, c.agent, c.grp, c.k_cal, c.k_bus]
    sets = {
        "bucket_cal": (c.bucket, c.k_cal),
        "bucket_bus": (c.bucket, c.k_bus),
        "agent": (c.agent, c.k_cal),
        "group": (c.grp, c.k_cal),
    }
    masks = {_mask(columns, cols): name for name, cols in sets.items()}
    sums = [sa.func.sum(col) for col in (c.done, c.reopened, c.one_touch, c.touched)]
    query = sa.select(sa.func.grouping(*columns), *columns, sa.func.count(), *sums).group_by(
        sa.func.grouping_sets(*(sa.tuple_(*cols) for cols in sets.values()))
    )
    rows = (await session.execute(query)).all()
    for mask, bucket, agent, grp, k_cal, k_bus, n, n_done, reopened, one_touch, touched in rows:
        match masks.get(mask):
            case "bucket_cal":
                fold.resolved[bucket] += n_done
                fold.resolutions += n
                fold.reopened += reopened
                fold.one_touch += one_touch
                fold.touched += touched
                if k_cal is not None:
                    add_bin(fold.resolution.sketches[bucket]["calendar"], k_cal, n)
            case "bucket_bus" if k_bus is not None:
                add_bin(fold.resolution.sketches[bucket]["business"], k_bus, n)
            case "agent" | "group" as dimension if (agent if dimension == "agent" else grp) is not None:
                (person,) = fold._people(agent, None) if dimension == "agent" else fold._people(None, grp)
                person["resolved"] += n_done
                person["resolutions"] += n
                person["reopened"] += reopened
                person["one_touch"] += one_touch
                person["touched"] += touched
                if k_cal is not None:
                    add_bin(person["res"], k_cal, n)
