"""Where the in-process bus keeps deliveries it holds back: those waiting out a retry delay, and dead ones.

RabbitMQ keeps both in durable queues. The in-process bus keeps them in a SQLite file (`bus.db` in the
data folder), so that a delivery waiting to be retried, or dead-lettered, outlives the process, and a
replay from another process (`python -m services replay-dead-letters`) reaches it. A delivery's time is
wall-clock seconds since the epoch: it has to mean the same thing after a restart.

What is queued in memory, on its way to a handler, is not kept here: it ends with the process, like the
rest of the embedded mode. The distributed mode is the one that keeps everything.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from shared.bus.base import DeadLetter, Delivery
from shared.db import Database

BUS_FILE = "bus.db"

_metadata = sa.MetaData()

# The file belongs to the bus, not to a service, so it is created here rather than by a migration. A change
# to this table needs a new file name or a migration of its own.
parked = sa.Table(
    "parked_deliveries",
    _metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("service", sa.String(64), nullable=False),
    sa.Column("message_id", sa.String(255)),
    sa.Column("routing_key", sa.String(255), nullable=False),
    sa.Column("content_type", sa.String(255)),
    sa.Column("headers", sa.JSON, nullable=False),
    sa.Column("body", sa.LargeBinary, nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    # When to deliver it again; NULL for a dead one, which waits for a replay.
    sa.Column("due_at", sa.Float),
    sa.Column("parked_at", sa.Float, nullable=False),
    sa.Index("ix_parked_deliveries_due", "service", "due_at"),
)


@dataclass(frozen=True)
class Due:
    """A parked delivery whose time has come, taken out of the store."""

    service: str
    delivery: Delivery


class ParkedDeliveries:
    """The store; `path` is a SQLite file, or `:memory:` for a bus that lives only as long as its process."""

    def __init__(self, path: Path | str = ":memory:") -> None:
        self.path = str(path)
        self._db: Database | None = None
        self._lock = asyncio.Lock()

    async def open(self) -> None:
        if self._db is None:
            self._db = Database(f"sqlite+aiosqlite:///{self.path}")
            async with self._db.engine.begin() as connection:
                await connection.run_sync(_metadata.create_all)

    async def close(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            await db.dispose()

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[AsyncSession]:
        # One at a time: an in-memory store is one connection, which cannot hold two transactions, and a
        # file's writers would only queue on SQLite's write lock anyway.
        if self._db is None:
            raise RuntimeError("the parked-deliveries store is not open")
        async with self._lock, self._db.transaction() as session:
            yield session

    async def park(
        self, service: str, delivery: Delivery, *, reason: str, now: float, due_at: float | None
    ) -> None:
        """Keep `delivery` for `service`: to deliver again at `due_at`, or dead (`due_at` None)."""
        async with self._transaction() as session:
            await session.execute(
                parked.insert().values(
                    service=service,
                    message_id=delivery.message_id,
                    routing_key=delivery.routing_key,
                    content_type=delivery.content_type,
                    headers=dict(delivery.headers),
                    body=delivery.body,
                    attempt=delivery.attempt,
                    reason=reason,
                    due_at=due_at,
                    parked_at=now,
                )
            )

    async def take_due(
        self, services: Sequence[str], now: float, limit: int = 200
    ) -> tuple[list[Due], float | None]:
        """Remove and return the deliveries of `services` whose time has come, earliest first, and when the
        earliest one left falls due (None: none is waiting), in one transaction: the pump runs this on
        every pass, idle or not."""
        if not services:
            return [], None
        async with self._transaction() as session:
            rows = (
                await session.execute(
                    sa.select(parked)
                    .where(parked.c.service.in_(services), parked.c.due_at <= now)
                    .order_by(parked.c.due_at, parked.c.id)
                    .limit(limit)
                )
            ).all()
            if rows:
                await session.execute(parked.delete().where(parked.c.id.in_([r.id for r in rows])))
            query = sa.select(sa.func.min(parked.c.due_at)).where(parked.c.service.in_(services))
            next_due = (await session.execute(query)).scalar_one()
        due = [
            Due(
                r.service,
                Delivery(r.body, r.routing_key, r.headers, r.content_type, r.message_id, r.attempt),
            )
            for r in rows
        ]
        return due, None if next_due is None else float(next_due)

    async def dead(self, service: str, *, remove: bool = False) -> list[DeadLetter]:
        async with self._transaction() as session:
            dead = sa.and_(parked.c.service == service, parked.c.due_at.is_(None))
            rows = (await session.execute(sa.select(parked).where(dead).order_by(parked.c.id))).all()
            if remove:
                await session.execute(parked.delete().where(dead))
        return [DeadLetter(r.message_id, r.routing_key, r.reason, r.attempt, r.body) for r in rows]

    async def revive(self, service: str, *, now: float, limit: int | None = None) -> int:
        """Make up to `limit` dead letters due now, with a fresh retry budget; returns how many."""
        async with self._transaction() as session:
            query = (
                sa.select(parked.c.id)
                .where(parked.c.service == service, parked.c.due_at.is_(None))
                .order_by(parked.c.id)
            )
            if limit is not None:
                query = query.limit(limit)
            ids = list((await session.execute(query)).scalars())
            if ids:
                await session.execute(
                    parked.update().where(parked.c.id.in_(ids)).values(due_at=now, attempt=1)
                )
        return len(ids)
