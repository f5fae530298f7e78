"""Outbox, relay, inbox and consumer on SQLite with the in-process bus: nothing lost, nothing done twice."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa
from pydantic import BaseModel

from shared.bus.base import Delivery, OutgoingMessage, PublishFailed
from shared.bus.memory import InProcessTransport
from shared.clock import SystemClock
from shared.consumer import EventConsumer, EventHandlers, HandlerContext
from shared.db import Database
from shared.events import CloudEvent, EventRegistry, make_event
from shared.inbox import inbox_table
from shared.outbox import Outbox, OutboxRelay, outbox_table
from tests.conftest import eventually

events = EventRegistry()


@events.register("test.parcel.shipped.v1")
class ParcelShipped(BaseModel):
    parcel: str
    weight_kg: float


class Seen:
    """What the handler did, so tests can count effects."""

    def __init__(self) -> None:
        self.parcels: list[str] = []
        self.failures_left = 0


@pytest.fixture
async def bus() -> AsyncIterator[InProcessTransport]:
    transport = InProcessTransport(retry_delays_ms=[5, 10], concurrency=2)
    await transport.connect()
    yield transport
    await transport.close()


def outbox_for(clock: SystemClock | None = None) -> Outbox:
    return Outbox(source="/kefu/test", registry=events, clock=clock or SystemClock())


async def consume(db: Database, bus: InProcessTransport, seen: Seen, outbox: Outbox) -> EventConsumer:
    handlers = EventHandlers()

    @handlers.on("test.parcel.shipped.v1")
    async def record(ctx: HandlerContext, shipped: ParcelShipped) -> None:
        if seen.failures_left:
            seen.failures_left -= 1
            raise RuntimeError("warehouse database is down")
        seen.parcels.append(shipped.parcel)

    consumer = EventConsumer(
        service="warehouse", handlers=handlers, registry=events, db=db, outbox=outbox, clock=SystemClock()
    )
    await bus.consume("warehouse", handlers.routing_keys, consumer)
    return consumer


async def pending(db: Database) -> int:
    async with db.transaction() as session:
        query = (
            sa.select(sa.func.count()).select_from(outbox_table).where(outbox_table.c.published_at.is_(None))
        )
        return int((await session.execute(query)).scalar_one())


async def test_event_row_commits_and_rolls_back_with_the_change(db: Database) -> None:
    outbox = outbox_for()
    async with db.transaction() as session:
        await outbox.add(session, "test.parcel.shipped.v1", ParcelShipped(parcel="P1", weight_kg=1.5))
    with pytest.raises(RuntimeError):
        async with db.transaction() as session:
            await outbox.add(session, "test.parcel.shipped.v1", ParcelShipped(parcel="P2", weight_kg=2))
            raise RuntimeError("the change failed")
    async with db.transaction() as session:
        rows = (await session.execute(sa.select(outbox_table.c.payload))).scalars().all()
    assert [json.loads(r)["data"]["parcel"] for r in rows] == ["P1"]


async def test_outbox_refuses_data_of_the_wrong_schema(db: Database) -> None:
    class Other(BaseModel):
        parcel: str

    async with db.transaction() as session:
        with pytest.raises(TypeError, match="ParcelShipped"):
            await outbox_for().add(session, "test.parcel.shipped.v1", Other(parcel="x"))


async def test_relay_is_woken_by_the_commit_and_the_consumer_handles_once(
    db: Database, bus: InProcessTransport
) -> None:
    outbox, seen = outbox_for(), Seen()
    await consume(db, bus, seen, outbox)
    # An hour-long poll: only the after-commit wake-up can deliver this in time.
    relay = OutboxRelay(
        service="test", db=db, transport=bus, outbox=outbox, clock=SystemClock(), poll_seconds=3600
    )
    relay.start()
    try:
        await asyncio.sleep(0.05)  # let the relay reach its wait
        async with db.transaction() as session:
            await outbox.add(session, "test.parcel.shipped.v1", ParcelShipped(parcel="P1", weight_kg=1))
        assert await eventually(lambda: seen.parcels == ["P1"], timeout=5)
        assert await pending(db) == 0
    finally:
        await relay.stop()


async def test_unconfirmed_events_stay_pending_with_the_reason_and_are_sent_later(
    db: Database, bus: InProcessTransport
) -> None:
    outbox, seen = outbox_for(), Seen()
    relay = OutboxRelay(service="test", db=db, transport=bus, outbox=outbox, clock=SystemClock())
    async with db.transaction() as session:
        await outbox.add(session, "test.parcel.shipped.v1", ParcelShipped(parcel="P1", weight_kg=1))
    # Nobody consumes yet: the event is unroutable, so it must not be marked as sent.
    assert await relay.publish_batch() == 0
    async with db.transaction() as session:
        row = (await session.execute(sa.select(outbox_table))).one()
    assert row.published_at is None
    assert row.attempts == 1
    assert "unroutable" in row.last_error
    await consume(db, bus, seen, outbox)
    async with db.transaction() as session:  # the backoff has passed
        await session.execute(outbox_table.update().values(next_attempt_at=None))
    assert await relay.publish_batch() == 1
    assert await eventually(lambda: seen.parcels == ["P1"])


async def test_same_event_delivered_twice_has_one_effect(db: Database, bus: InProcessTransport) -> None:
    outbox, seen = outbox_for(), Seen()
    consumer = await consume(db, bus, seen, outbox)
    event = await _event("P7")
    delivery = Delivery(event.to_json(), event.type, {}, "application/cloudevents+json", event.id)
    first, second = await consumer(delivery), await consumer(delivery)
    assert (first.kind, second.kind) == ("handled", "duplicate")
    assert seen.parcels == ["P7"]
    async with db.transaction() as session:
        assert (await session.execute(sa.select(sa.func.count()).select_from(inbox_table))).scalar_one() == 1


async def test_failing_handler_is_retried_then_succeeds_without_partial_effects(
    db: Database, bus: InProcessTransport
) -> None:
    outbox, seen = outbox_for(), Seen()
    seen.failures_left = 2  # fewer failures than the retry budget (2 retries + the first attempt)
    await consume(db, bus, seen, outbox)
    event = await _event("P8")
    await bus.publish([_outgoing(event)])
    assert await eventually(lambda: seen.parcels == ["P8"])
    assert await bus.dead_letters("warehouse") == []


async def test_handler_that_keeps_failing_is_dead_lettered_with_its_reason(
    db: Database, bus: InProcessTransport
) -> None:
    outbox, seen = outbox_for(), Seen()
    seen.failures_left = 99
    await consume(db, bus, seen, outbox)
    await bus.publish([_outgoing(await _event("P9"))])
    letters = await eventually(lambda: bus.dead_letters("warehouse"))
    assert "gave up after 3 attempts" in letters[0].reason
    assert "warehouse database is down" in letters[0].reason
    # The handler's transaction never committed, so a replay after the fix handles it once.
    seen.failures_left = 0
    assert await bus.replay_dead_letters("warehouse") == 1
    assert await eventually(lambda: seen.parcels == ["P9"])


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{{{", "not JSON"),
        (b'{"specversion":"1.0","id":"x","source":"/s","type":"test.parcel.lost.v1"}', "unknown event type"),
        (
            b'{"specversion":"1.0","id":"y","source":"/s","type":"test.parcel.shipped.v1","data":{"parcel":"P"}}',
            "weight_kg",
        ),
    ],
)
async def test_poison_goes_straight_to_dead_letters_and_the_next_good_one_is_handled(
    db: Database, bus: InProcessTransport, body: bytes, reason: str
) -> None:
    outbox, seen = outbox_for(), Seen()
    await consume(db, bus, seen, outbox)
    poison = OutgoingMessage(
        id="poison", routing_key="test.parcel.shipped.v1", body=body, timestamp=SystemClock().now()
    )
    await bus.publish([poison, _outgoing(await _event("GOOD"))])
    assert await eventually(lambda: seen.parcels == ["GOOD"])
    letters = await eventually(lambda: bus.dead_letters("warehouse"))
    assert len(letters) == 1
    assert letters[0].attempts == 1
    assert reason in letters[0].reason


async def test_in_process_publish_without_subscriber_is_not_confirmed(bus: InProcessTransport) -> None:
    with pytest.raises(PublishFailed) as failure:
        await bus.publish([_outgoing(await _event("P"))])
    assert "unroutable" in failure.value.reason


async def _event(parcel: str) -> CloudEvent:
    return make_event(
        type="test.parcel.shipped.v1",
        source="/kefu/test",
        data=ParcelShipped(parcel=parcel, weight_kg=1),
        time=SystemClock().now(),
    )


def _outgoing(event: CloudEvent) -> OutgoingMessage:
    return OutgoingMessage(id=event.id, routing_key=event.type, body=event.to_json(), timestamp=event.time)
