"""Ticket KPIs folded by PostgreSQL: grouped counts per DDSketch bin instead of one row per ticket.

Every fact carries the DDSketch bin of each of its four durations (generated columns, `bin_sql`), and the
bucket of a row is `width_bucket` over the buckets' start instants computed in Python for the requested
zone — a binary search on a timestamp instead of a time-zone conversion per row, right for any zone,
daylight saving included. The headline report (`fold_headline`) is two grouped scans of covering indexes
that return, per bucket, the sorted bins and their counts as two arrays.
"""

from __future__ import annotations

import contextlib
from bisect import bisect_right
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import datetime
from itertools import accumulate
from typing import Any

import sqlalchemy as sa
from ddsketch import DDSketch
from sqlalchemy.dialects.postgresql import ARRAY, TIMESTAMP
from sqlalchemy.ext.asyncio import AsyncSession

from services.analytics.models import TicketFact
from services.analytics.statistics import MAPPING, ZERO

_DONE = ("resolved", "closed")
WORK_MEM = "64MB"


def python_bin(value: float) -> int:
    """The same bin as `statistics.bin_sql`, as the library computes it (for tests)."""
    return ZERO if value <= MAPPING.min_possible else int(MAPPING.key(value))


def add_bin(sketch: DDSketch, key: int, count: int) -> None:
    """Add `count` durations of one bin: the bin's representative value lands in that same bin."""
    sketch.add(0.0 if key == ZERO else MAPPING.value(key), float(count))


class Bins:
    """A DDSketch held as its bins (key → count): built from grouped counts, merged by adding counts.

    `get_quantile_value` is the library's own rule — the rank `q·(n − 1)`, the first bin whose cumulative
    count exceeds it, that bin's value from the library's mapping — over the same bins a `DDSketch` of the
    raw values holds, so the answers are the library's (tests check them against `DDSketch`). Building a
    `DDSketch` bin by bin and walking its store in Python costs several times more per report.
    """

    __slots__ = ("_bins", "_ranks")

    def __init__(self, bins: dict[int, int] | None = None) -> None:
        self._bins: dict[int, int] = bins if bins is not None else {}
        self._ranks: tuple[list[int], list[int]] | None = None  # sorted keys, cumulative counts

    @classmethod
    def of(cls, keys: Iterable[int], counts: Iterable[int]) -> Bins:
        """The bins of parallel key and count arrays (a rollup row's, as the database unpacks them)."""
        return cls(dict(zip(keys, counts, strict=True)))

    @classmethod
    def counted(cls, keys: Iterable[int | None]) -> Bins:
        """The bins of one key per duration (None for a missing duration)."""
        bins = Counter(keys)
        bins.pop(None, None)
        return cls(bins)  # type: ignore[arg-type]

    @property
    def count(self) -> int:
        return sum(self._bins.values())

    def merge(self, other: Bins) -> None:
        bins = self._bins
        for key, n in other._bins.items():
            bins[key] = bins.get(key, 0) + n
        self._ranks = None

    def get_quantile_value(self, quantile: float) -> float | None:
        if self._ranks is None:  # once for the three percentiles a report asks of each sketch
            keys = sorted(self._bins)
            self._ranks = keys, list(accumulate(map(self._bins.__getitem__, keys)))
        keys, cumulative = self._ranks
        count = cumulative[-1] if cumulative else 0
        if not 0 <= quantile <= 1 or count == 0:
            return None
        key = keys[min(bisect_right(cumulative, quantile * (count - 1)), len(keys) - 1)]
        return 0.0 if key == ZERO else float(MAPPING.value(key))


def add_bins(sketches: dict[str, Any], time_kind: str, bins: Bins) -> None:
    """Merge `bins` into a bucket's sketch (the first bins of a bucket become its sketch)."""
    current = sketches.get(time_kind)
    if isinstance(current, Bins):
        current.merge(bins)
    else:
        sketches[time_kind] = bins


def _bucket(column: Any, grain: str, tz: str) -> Any:
    return sa.cast(sa.func.date_trunc(sa.literal_column(f"'{grain}'"), sa.func.timezone(tz, column)), sa.Date)


def _mask(columns: Sequence[Any], grouped: Sequence[Any]) -> int:
    """What GROUPING(…) returns for a grouping set: a 1 bit for each column left out of it."""
    names = {c.name for c in grouped}
    return sum(1 << (len(columns) - 1 - i) for i, c in enumerate(columns) if c.name not in names)


def bucket_index(column: Any, edges: Sequence[datetime]) -> Any:
    """The 1-based index of the bucket a timestamp falls in, given the buckets' start instants."""
    array = sa.cast(
        sa.bindparam("edges", list(edges), type_=ARRAY(TIMESTAMP(timezone=True))),
        ARRAY(TIMESTAMP(timezone=True)),
    )
    return sa.func.width_bucket(column, array)


@contextlib.asynccontextmanager
async def more_work_mem(session: AsyncSession) -> AsyncIterator[None]:
    """`work_mem` raised for the statements inside: for the transaction, or, in a session without one
    (read-only routes run in autocommit), for the connection until reset on the way out."""
    connection = (await session.connection()).sync_connection
    assert connection is not None
    if connection.get_execution_options().get("isolation_level") != "AUTOCOMMIT":
        await session.execute(sa.text(f"SET LOCAL work_mem = '{WORK_MEM}'"))
        yield
        return
    await session.execute(sa.text(f"SET work_mem = '{WORK_MEM}'"))
    try:
        yield
    finally:
        await session.execute(sa.text("RESET work_mem"))


async def fold_headline(
    session: AsyncSession,
    fold: Any,
    *,
    since: datetime,
    until: datetime,
    where: list[Any],
    starts: Sequence[Any],
    edges: Sequence[datetime],
    large: bool = True,
) -> None:
    """Fill `fold`'s buckets (counts, duration bins, resolution flags) from two grouped index scans.

    `large=False` for a short stretch of time (the ends of a window read from rollups): the default
    work memory then suffices and round trips are saved.
    """
    async with more_work_mem(session) if large else contextlib.nullcontext():
        f = TicketFact
        done = f.status.in_(_DONE)  # type: ignore[attr-defined]
        flag = lambda condition: sa.case((condition, 1), else_=0)  # noqa: E731
        sides = {
            "created": (
                f.created_at,
                f.first_response_bin,
                f.first_response_business_bin,
                [
                    sa.literal(1).label("done"),
                    *(sa.literal(0).label(n) for n in ("reopened", "one_touch", "touched")),
                ],
            ),
            "resolved": (
                f.resolved_at,
                f.resolution_bin,
                f.resolution_business_bin,
                [
                    flag(done).label("done"),
                    flag(f.reopen_count > 0).label("reopened"),
                    flag(sa.and_(done, f.public_replies == 1, f.reopen_count == 0)).label("one_touch"),
                    flag(sa.and_(done, sa.func.coalesce(f.public_replies, 0) >= 1)).label("touched"),
                ],
            ),
        }
        counted = ("done", "reopened", "one_touch", "touched")
        for side, (at, k_cal, k_bus, flags) in sides.items():
            inner = (
                sa.select(
                    bucket_index(at, edges).label("b"), k_cal.label("k_cal"), k_bus.label("k_bus"), *flags
                )
                .where(at >= since, at < until, *where)
                .subquery()
            )
            c = inner.c
            # The index yields rows in time order, so grouping by bucket streams; the bins of each bucket
            # come back as two plain arrays and are counted in Python (a C loop), which is cheaper than
            # hashing every (bucket, bin) pair in the database.
            query = sa.select(
                c.b,
                sa.func.array_agg(c.k_cal),
                sa.func.array_agg(c.k_bus),
                *(sa.cast(sa.func.sum(c[name]), sa.BigInteger) for name in counted),
            ).group_by(c.b)
            for b, cal, bus, n_done, reopened, one_touch, touched in (await session.execute(query)).all():
                if not 1 <= b <= len(starts):
                    continue
                bucket = starts[b - 1]
                sketches = (fold.response if side == "created" else fold.resolution).sketches[bucket]
                add_bins(sketches, "calendar", Bins.counted(cal))
                add_bins(sketches, "business", Bins.counted(bus))
                if side == "created":
                    fold.created[bucket] += len(cal)
                else:
                    fold.resolved[bucket] += n_done
                    fold.resolutions += len(cal)
                    fold.reopened += reopened
                    fold.one_touch += one_touch
                    fold.touched += touched


async def fold_facts(
    session: AsyncSession, fold: Any, *, since: datetime, until: datetime, where: list[Any]
) -> None:
    """Fill `fold` (a kpis._Fold) with the breakdowns too: per agent, per group, per complaint category."""
    tz = fold.tz.key
    # The grouping sets hash tens of thousands of (bucket, bin) groups: with the default 4 MB PostgreSQL
    # sorts them on disk instead, several times slower.
    async with more_work_mem(session):
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
            TicketFact.first_response_bin.label("k_cal"),
            TicketFact.first_response_business_bin.label("k_bus"),
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
                    add_bin(fold.response.sketch(bucket, "calendar"), k_cal, n)
            case "bucket_bus" if k_bus is not None:
                add_bin(fold.response.sketch(bucket, "business"), k_bus, n)
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
            TicketFact.resolution_bin.label("k_cal"),
            TicketFact.resolution_business_bin.label("k_bus"),
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
                    add_bin(fold.resolution.sketch(bucket, "calendar"), k_cal, n)
            case "bucket_bus" if k_bus is not None:
                add_bin(fold.resolution.sketch(bucket, "business"), k_bus, n)
            case "agent" | "group" as dimension if (agent if dimension == "agent" else grp) is not None:
                (person,) = fold._people(agent, None) if dimension == "agent" else fold._people(None, grp)
                person["resolved"] += n_done
                person["resolutions"] += n
                person["reopened"] += reopened
                person["one_touch"] += one_touch
                person["touched"] += touched
                if k_cal is not None:
                    add_bin(person["res"], k_cal, n)
