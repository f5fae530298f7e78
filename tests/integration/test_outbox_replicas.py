"""Two relay replicas on one PostgreSQL outbox publish every event exactly once between them."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa
from pydantic import BaseModel

from shared.bus.base import Delivery, Outcome
from shared.bus.memory import InProcessTransport
from shared.clock import SystemClock
from shared.db import Database, infra_metadata
from shared.events import EventRegistry
from shared.outbox import Outbox, OutboxRelay, outbox_table
from tests.conftest import eventually

events = EventRegistry()


@events.register("test.meter.read.v1")
class MeterRead(BaseModel):
    n: int


@pytest.fixture
async def db(databases: dict[str, str]) -> AsyncIterator[Database]:
    database = Database(databases["tickets"])
    async with database.engine.begin() as connection:
        await connection.run_sync(infra_metadata.create_all)
    yield database
    await database.dispose()


async def test_two_relays_never_publish_the_same_row(db: Database) -> None:
    bus = InProcessTransport(concurrency=1)
    await bus.connect()
    received: Counter[str] = Counter()

    async def count(delivery: Delivery) -> Outcome:
        received[delivery.message_id or ""] += 1
        return Outcome.handled()

    await bus.consume("meter", ["test.#"], count)
    outbox = Outbox(source="/kefu/test", registry=events, clock=SystemClock())
    total = 2_000
    for start in range(0, total, 200):
        async with db.transaction() as session:
            for n in range(start, start + 200):
                await outbox.add(session, "test.meter.read.v1", MeterRead(n=n))

    relays = [
        OutboxRelay(
            service=f"replica-{i}", db=db, transport=bus, outbox=outbox, clock=SystemClock(), batch_size=50
        )
        for i in range(2)
    ]
    results = await asyncio.gather(*(relay.publish_batch() for relay in relays for _ in range(30)))
    await eventually(lambda: sum(received.values()) >= total, timeout=20)
    await bus.close()

    assert sum(results) == total
    assert len(received) == total
    assert max(received.values()) == 1
    async with db.transaction() as session:
        unsent = await session.execute(
            sa.select(sa.func.count()).select_from(outbox_table).where(outbox_table.c.published_at.is_(None))
        )
        assert unsent.scalar_one() == 0
