"""Batched consumption on SQLite: one transaction per batch, duplicates found, a poison event kept apart."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from shared.bus.base import Delivery, OutcomeKind, OutgoingMessage
from shared.bus.memory import InProcessTransport
from shared.clock import SystemClock
from shared.consumer import (
    BatchContext,
    Claim,
    EventConsumer,
    EventHandlers,
    HandlerContext,
    Received,
    inbox_claim,
)
from shared.db import Database, infra_metadata
from shared.events import EventRegistry
from shared.inbox import inbox_table
from shared.outbox import Outbox
from tests.conftest import eventually

events = EventRegistry()


@events.register("test.parcel.shipped.v1")
class ParcelShipped(BaseModel):
    parcel: str
    weight_kg: float


@events.register("test.parcel.lost.v1")
class ParcelLost(BaseModel):
    parcel: str


@dataclass
class Warehouse:
    """What the batch handler saw: the batches (parcel names) and the parcels that fail."""

    batches: list[list[str]] = field(default_factory=list)
    single: list[str] = field(default_factory=list)
    poison: set[str] = field(default_factory=set)
    fail_batches: int = 0


def body(type_: str, data: dict[str, object], event_id: str | None = None) -> bytes:
    return json.dumps(
        {
            "specversion": "1.0",
            "id": event_id or str(uuid.uuid4()),
            "source": "/test",
            "type": type_,
            "time": "2026-03-02T00:00:00Z",
            "datacontenttype": "application/json",
            "data": data,
        }
    ).encode()


def shipped(parcel: str, event_id: str | None = None) -> Delivery:
    return Delivery(
        body=body("test.parcel.shipped.v1", {"parcel": parcel, "weight_kg": 1.0}, event_id),
        routing_key="test.parcel.shipped.v1",
        headers={},
        content_type="application/cloudevents+json",
        message_id=None,
    )


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path}/unit.db")
    async with database.engine.begin() as connection:
        await connection.run_sync(infra_metadata.create_all)
        await connection.run_sync(ledger_metadata.create_all)
    yield database
    await database.dispose()


# A service's own record of every event, which can serve as its inbox (as analytics' event log does).
ledger_metadata = sa.MetaData()
ledger = sa.Table("ledger", ledger_metadata, sa.Column("event_id", sa.String(200), primary_key=True))


async def ledger_claim(session: AsyncSession, received: list[Received], at: datetime) -> set[str]:
    known = set(
        (
            await session.execute(
                sa.select(ledger.c.event_id).where(ledger.c.event_id.in_([r.envelope.id for r in received]))
            )
        ).scalars()
    )
    fresh = [r.envelope.id for r in received if r.envelope.id not in known]
    if fresh:
        await session.execute(sa.insert(ledger), [{"event_id": i} for i in fresh])
    return set(fresh)


async def in_ledger(db: Database) -> int:
    async with db.transaction() as session:
        return int((await session.execute(sa.select(sa.func.count()).select_from(ledger))).scalar_one())


def consumer_for(
    db: Database,
    warehouse: Warehouse,
    *,
    max_size: int = 10,
    wait_ms: float = 30,
    claim: Claim = inbox_claim,
) -> EventConsumer:
    handlers = EventHandlers()

    @handlers.on_batch(["test.parcel.#"], max_size=max_size, max_wait_ms=wait_ms, claim=claim)
    async def record(ctx: BatchContext, received: list[Received]) -> None:
        parcels = [r.data.parcel for r in received]
        if warehouse.fail_batches:
            warehouse.fail_batches -= 1
            raise RuntimeError("warehouse database is down")
        if warehouse.poison & set(parcels):
            raise RuntimeError(f"cannot store {sorted(warehouse.poison & set(parcels))}")
        warehouse.batches.append(parcels)

    @handlers.on("test.parcel.lost.v1")
    async def lost(ctx: HandlerContext, data: ParcelLost) -> None:
        warehouse.single.append(data.parcel)

    clock = SystemClock()
    return EventConsumer(
        service="warehouse",
        handlers=handlers,
        registry=events,
        db=db,
        outbox=Outbox(source="/kefu/test", registry=events, clock=clock),
        clock=clock,
    )


async def claimed(db: Database) -> int:
    async with db.transaction() as session:
        return int((await session.execute(sa.select(sa.func.count()).select_from(inbox_table))).scalar_one())


async def test_deliveries_arriving_together_are_handled_in_one_batch(db: Database) -> None:
    warehouse = Warehouse()
    consumer = consumer_for(db, warehouse)
    outcomes = await asyncio.gather(*(consumer(shipped(f"P{i}")) for i in range(5)))
    assert [o.kind for o in outcomes] == [OutcomeKind.HANDLED] * 5
    assert warehouse.batches == [["P0", "P1", "P2", "P3", "P4"]]
    assert await claimed(db) == 5


async def test_a_full_batch_does_not_wait(db: Database) -> None:
    warehouse = Warehouse()
    consumer = consumer_for(db, warehouse, max_size=3, wait_ms=60_000)
    outcomes = await asyncio.wait_for(asyncio.gather(*(consumer(shipped(f"P{i}")) for i in range(6))), 10)
    assert {o.kind for o in outcomes} == {OutcomeKind.HANDLED}
    assert sorted(len(b) for b in warehouse.batches) == [3, 3]


async def test_duplicates_within_and_across_batches(db: Database) -> None:
    warehouse = Warehouse()
    consumer = consumer_for(db, warehouse)
    ids = [str(uuid.uuid4()) for _ in range(3)]
    first = await asyncio.gather(
        consumer(shipped("A", ids[0])), consumer(shipped("A", ids[0])), consumer(shipped("B", ids[1]))
    )
    assert [o.kind for o in first] == [OutcomeKind.HANDLED, OutcomeKind.DUPLICATE, OutcomeKind.HANDLED]
    again = await asyncio.gather(consumer(shipped("B", ids[1])), consumer(shipped("C", ids[2])))
    assert [o.kind for o in again] == [OutcomeKind.DUPLICATE, OutcomeKind.HANDLED]
    assert warehouse.batches == [["A", "B"], ["C"]]
    assert await claimed(db) == 3


async def test_a_route_with_its_own_claim_finds_duplicates_there_and_not_in_the_inbox(db: Database) -> None:
    warehouse = Warehouse(poison={"BAD"})
    consumer = consumer_for(db, warehouse, claim=ledger_claim)
    ids = [str(uuid.uuid4()) for _ in range(3)]
    first = await asyncio.gather(
        consumer(shipped("A", ids[0])), consumer(shipped("A", ids[0])), consumer(shipped("B", ids[1]))
    )
    assert [o.kind for o in first] == [OutcomeKind.HANDLED, OutcomeKind.DUPLICATE, OutcomeKind.HANDLED]
    # A failed batch is handled one by one, each event claimed the same way; the poison one is not.
    again = await asyncio.gather(
        consumer(shipped("B", ids[1])), consumer(shipped("C", ids[2])), consumer(shipped("BAD"))
    )
    assert [o.kind for o in again] == [OutcomeKind.DUPLICATE, OutcomeKind.HANDLED, OutcomeKind.RETRY]
    assert warehouse.batches == [["A", "B"], ["C"]]
    assert await in_ledger(db) == 3
    assert await claimed(db) == 0


async def test_a_poison_event_fails_alone_and_its_neighbours_are_handled(db: Database) -> None:
    warehouse = Warehouse(poison={"BAD"})
    consumer = consumer_for(db, warehouse)
    outcomes = await asyncio.gather(
        consumer(shipped("P1")), consumer(shipped("BAD")), consumer(shipped("P2"))
    )
    assert [o.kind for o in outcomes] == [OutcomeKind.HANDLED, OutcomeKind.RETRY, OutcomeKind.HANDLED]
    assert "cannot store ['BAD']" in outcomes[1].reason
    # The failed batch left nothing behind; the good ones were then handled one by one.
    assert warehouse.batches == [["P1"], ["P2"]]
    assert await claimed(db) == 2


async def test_a_failing_batch_falls_back_to_one_by_one(db: Database) -> None:
    warehouse = Warehouse(fail_batches=1)
    consumer = consumer_for(db, warehouse)
    outcomes = await asyncio.gather(*(consumer(shipped(f"P{i}")) for i in range(3)))
    assert [o.kind for o in outcomes] == [OutcomeKind.HANDLED] * 3
    assert warehouse.batches == [["P0"], ["P1"], ["P2"]]


async def test_invalid_messages_are_dead_before_batching(db: Database) -> None:
    warehouse = Warehouse()
    consumer = consumer_for(db, warehouse)
    invalid = Delivery(
        body=body("test.parcel.shipped.v1", {"parcel": "X"}),  # no weight
        routing_key="test.parcel.shipped.v1",
        headers={},
        content_type="application/cloudevents+json",
        message_id=None,
    )
    garbage = Delivery(b"not json", "test.parcel.shipped.v1", {}, "application/cloudevents+json", None)
    outcomes = await asyncio.gather(consumer(invalid), consumer(shipped("P1")), consumer(garbage))
    assert [o.kind for o in outcomes] == [OutcomeKind.DEAD, OutcomeKind.HANDLED, OutcomeKind.DEAD]
    assert warehouse.batches == [["P1"]]


async def test_a_type_with_its_own_handler_is_not_batched(db: Database) -> None:
    warehouse = Warehouse()
    consumer = consumer_for(db, warehouse)
    lost = Delivery(
        body("test.parcel.lost.v1", {"parcel": "L1"}),
        "test.parcel.lost.v1",
        {},
        "application/cloudevents+json",
        None,
    )
    assert (await consumer(lost)).kind is OutcomeKind.HANDLED
    assert warehouse.single == ["L1"] and warehouse.batches == []


async def test_over_the_in_process_bus_every_event_is_handled_once(db: Database) -> None:
    warehouse = Warehouse()
    consumer = consumer_for(db, warehouse, max_size=8, wait_ms=5)
    bus = InProcessTransport(retry_delays_ms=[5], concurrency=16)
    await bus.connect()
    try:
        await bus.consume("warehouse", consumer.handlers.routing_keys, consumer)
        assert consumer.handlers.routing_keys == ["test.parcel.#", "test.parcel.lost.v1"]
        ids = [str(uuid.uuid4()) for _ in range(40)]
        await bus.publish(
            [
                OutgoingMessage(
                    id=event_id,
                    routing_key="test.parcel.shipped.v1",
                    body=body("test.parcel.shipped.v1", {"parcel": f"P{n % 40}", "weight_kg": 1}, event_id),
                    timestamp=datetime.now(UTC),
                )
                for n, event_id in enumerate(ids + ids)  # every event twice
            ]
        )

        async def all_in() -> bool:
            return await claimed(db) == 40

        await eventually(all_in, timeout=10)
        await asyncio.sleep(0.05)
        handled = [p for batch in warehouse.batches for p in batch]
        assert len(handled) == 40 and len(set(handled)) == 40
        assert max(len(b) for b in warehouse.batches) > 1
    finally:
        await bus.close()
