"""Inbox: the event id commits with a handler's effects, so a redelivered event is a no-op."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db import UTCDateTime, dialect_name, infra_metadata

inbox_table = sa.Table(
    "inbox",
    infra_metadata,
    sa.Column("event_id", sa.String(200), primary_key=True),
    sa.Column("type", sa.String(200), nullable=False),
    sa.Column("source", sa.String(500), nullable=False),
    sa.Column("handled_at", UTCDateTime(), nullable=False),
)


# Built once: a statement object keeps its compiled form cached, and this runs for every event consumed.
_CLAIM = {
    "postgresql": pg_insert(inbox_table).on_conflict_do_nothing(index_elements=["event_id"]),
    "sqlite": sqlite_insert(inbox_table).on_conflict_do_nothing(index_elements=["event_id"]),
}


async def claim(session: AsyncSession, *, event_id: str, type: str, source: str, at: datetime) -> bool:
    """Record the event as handled; False if it already was (then the caller must do nothing)."""
    statement = _CLAIM[dialect_name(session)]
    parameters = {"event_id": event_id, "type": type, "source": source, "handled_at": at}
    result = cast("CursorResult[Any]", await session.execute(statement, parameters))
    return bool(result.rowcount)


async def claim_many(session: AsyncSession, events: list[tuple[str, str, str]], *, at: datetime) -> set[str]:
    """Record many `(event_id, type, source)` at once; returns the new ids (the others are duplicates)."""
    if not events:
        return set()
    if len(events) == 1:  # every event of an unbatched type: the plain one-row insert is the cheaper one
        ((event_id, type_, source),) = events
        fresh = await claim(session, event_id=event_id, type=type_, source=source, at=at)
        return {event_id} if fresh else set()
    # Sorted ids take the unique-index locks in one order, so two batches sharing an id cannot deadlock.
    ordered = sorted(events)
    if dialect_name(session) == "postgresql":
        # One statement text whatever the batch size (arrays, not N rows of VALUES), so it is compiled and
        # prepared once instead of for every batch.
        result = await session.execute(
            _CLAIM_MANY_PG,
            {
                "ids": [e[0] for e in ordered],
                "types": [e[1] for e in ordered],
                "sources": [e[2] for e in ordered],
                "at": at,
            },
        )
        return set(result.scalars().all())
    rows = [{"event_id": i, "type": t, "source": s, "handled_at": at} for i, t, s in ordered]
    statement = (
        sqlite_insert(inbox_table)
        .values(rows)
        .on_conflict_do_nothing(index_elements=["event_id"])
        .returning(inbox_table.c.event_id)
    )
    return set((await session.execute(statement)).scalars().all())


_CLAIM_MANY_PG = sa.text(
    "INSERT INTO inbox (event_id, type, source, handled_at) "
    "SELECT event_id, type, source, :at FROM unnest("
    "CAST(:ids AS VARCHAR[]), CAST(:types AS VARCHAR[]), CAST(:sources AS VARCHAR[])"
    ") AS claimed(event_id, type, source) "
    "ON CONFLICT (event_id) DO NOTHING RETURNING event_id"
).bindparams(sa.bindparam("at", type_=UTCDateTime()))
