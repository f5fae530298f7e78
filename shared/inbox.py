"""Inbox: the event id is written in the same transaction as a handler's effects, so a redelivery is a no-op."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db import UTCDateTime, infra_metadata

inbox_table = sa.Table(
    "inbox",
    infra_metadata,
    sa.Column("event_id", sa.String(200), primary_key=True),
    sa.Column("type", sa.String(200), nullable=False),
    sa.Column("source", sa.String(500), nullable=False),
    sa.Column("handled_at", UTCDateTime(), nullable=False),
)


async def claim(session: AsyncSession, *, event_id: str, type: str, source: str, at: datetime) -> bool:
    """Record the event as handled; False if it already was (then the caller must do nothing)."""
    dialect = session.bind.dialect.name if session.bind is not None else "postgresql"
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    statement = (
        insert(inbox_table)
        .values(event_id=event_id, type=type, source=source, handled_at=at)
        .on_conflict_do_nothing(index_elements=["event_id"])
    )
    result = await session.execute(statement)
    return bool(result.rowcount)
