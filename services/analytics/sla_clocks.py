"""SLA clocks: the outcome of each (ticket, metric, cycle), which SLA achievement counts.

A clock is decided by its `met` and `breach` events (warnings are not outcomes): a breach outweighs any
`met`, and of two equal outcomes the earlier counts (then the smaller event id, so the rule is total).
Folding by a least-element rule makes the stored clock independent of the order, duplication and
batching of its events, so concurrent batches, redeliveries and a rebuild agree. The report counts
clocks by when their deciding event happened.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.analytics.columnar import column_arrays, unnest_select
from services.analytics.grouped import bucket_index
from services.analytics.models import SlaClock
from shared.db import any_of, dialect_name

OUTCOMES = ("met", "breach")
_clocks = SlaClock.__table__  # type: ignore[attr-defined]
NAMES = [c.name for c in _clocks.c]
Key = tuple[Any, str, int]


def key_of(row: Any) -> Key:
    return (row["ticket_id"], row["metric"], row["cycle"])


def _rank(row: Mapping[str, Any]) -> tuple[bool, datetime, str]:
    """The least rank decides the clock."""
    return (row["outcome"] != "breach", row["occurred_at"], row["event_id"])


def decide(outcomes: Iterable[Mapping[str, Any]]) -> dict[Key, dict[str, Any]]:
    """Each clock's deciding outcome among `outcomes` (rows shaped like `sla_events`), in key order."""
    clocks: dict[Key, dict[str, Any]] = {}
    for row in outcomes:
        if row["outcome"] not in OUTCOMES:
            continue
        key = key_of(row)
        if key not in clocks or _rank(row) < _rank(clocks[key]):
            clocks[key] = {name: row[name] for name in NAMES}
    return dict(sorted(clocks.items(), key=lambda item: (str(item[0][0]), item[0][1], item[0][2])))


def _replaces(new: Any, old: Any, *, binary: str) -> Any:
    """SQL for "`new` decides the clock instead of `old`": the rank of `_rank`, with event ids compared
    byte by byte (collation `binary`) as Python compares them, not in the database's language order."""
    return sa.or_(
        sa.and_(new.outcome == "breach", old.outcome != "breach"),
        sa.and_(
            new.outcome == old.outcome,
            sa.or_(
                new.occurred_at < old.occurred_at,
                sa.and_(
                    new.occurred_at == old.occurred_at,
                    sa.collate(new.event_id, binary) < sa.collate(old.event_id, binary),
                ),
            ),
        ),
    )


def _upsert_pg() -> Any:
    statement = pg_insert(_clocks).from_select(NAMES, unnest_select(_clocks, NAMES))
    return statement.on_conflict_do_update(
        index_elements=["ticket_id", "metric", "cycle"],
        set_={name: statement.excluded[name] for name in NAMES},
        where=_replaces(statement.excluded, _clocks.c, binary="C"),
    ).returning(*_clocks.c)


_UPSERT_PG = _upsert_pg()


async def read(session: AsyncSession, keys: Sequence[Key]) -> dict[Key, Any]:
    """The stored clocks among `keys` (the caller holds the lock that keeps them from changing)."""
    if not keys:
        return {}
    tickets = sorted({k[0] for k in keys}, key=str)
    postgresql = dialect_name(session) == "postgresql"
    rows = await session.execute(
        sa.select(_clocks).where(any_of(_clocks.c.ticket_id, tickets, postgresql=postgresql))
    )
    wanted = set(keys)
    return {k: row for row in rows if (k := (row.ticket_id, row.metric, row.cycle)) in wanted}


async def upsert(session: AsyncSession, clocks: Mapping[Key, Mapping[str, Any]]) -> dict[Key, Any]:
    """Fold the batch's deciding outcomes into the stored clocks; returns the clocks they changed."""
    if not clocks:
        return {}
    rows = list(clocks.values())
    if dialect_name(session) == "postgresql":
        result = await session.execute(_UPSERT_PG, column_arrays(rows, NAMES))
        return {(r.ticket_id, r.metric, r.cycle): r for r in result.all()}
    changed: dict[Key, Any] = {}
    for start in range(0, len(rows), 500):
        statement = sqlite_insert(_clocks).values(rows[start : start + 500])
        statement = statement.on_conflict_do_update(
            index_elements=["ticket_id", "metric", "cycle"],
            set_={name: statement.excluded[name] for name in NAMES},
            where=_replaces(statement.excluded, _clocks.c, binary="BINARY"),
        ).returning(*_clocks.c)
        for r in (await session.execute(statement)).all():
            changed[(r.ticket_id, r.metric, r.cycle)] = r
    return changed


async def decided_rows(
    session: AsyncSession, *, since: datetime, until: datetime, where: Sequence[Any]
) -> Sequence[Any]:
    """The clocks decided in [since, until), row by row (the breakdowns, and the embedded mode)."""
    query = sa.select(_clocks).where(_clocks.c.occurred_at >= since, _clocks.c.occurred_at < until, *where)
    return (await session.execute(query)).all()


async def decided_counts(
    session: AsyncSession,
    *,
    since: datetime,
    until: datetime,
    where: Sequence[Any],
    edges: Sequence[datetime],
) -> Sequence[Any]:
    """Clocks decided in [since, until) counted by the database: (bucket index, metric, outcome, n)."""
    b = bucket_index(_clocks.c.occurred_at, edges)
    query = (
        sa.select(b.label("b"), _clocks.c.metric, _clocks.c.outcome, sa.func.count().label("n"))
        .where(_clocks.c.occurred_at >= since, _clocks.c.occurred_at < until, *where)
        .group_by(b, _clocks.c.metric, _clocks.c.outcome)
    )
    return (await session.execute(query)).all()
