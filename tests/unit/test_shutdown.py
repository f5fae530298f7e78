"""Shutting down finishes the work in hand instead of cancelling it midway, and always ends."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa

from shared.background import BackgroundLoop
from shared.bus.base import Delivery, Outcome, OutgoingMessage
from shared.bus.memory import InProcessTransport
from shared.clock import SystemClock
from shared.db import Database
from shared.outbox import OutboxRelay, outbox_table
from tests.unit.test_messaging import ParcelShipped, outbox_for


class SlowBroker(InProcessTransport):
    """Confirms a publish only when told to, so a stop can land while the relay's batch is in hand."""

    def __init__(self) -> None:
        super().__init__()
        self.publishing = asyncio.Event()
        self.confirm = asyncio.Event()

    async def publish(self, messages: Sequence[OutgoingMessage]) -> None:
        self.publishing.set()
        await self.confirm.wait()


async def published(db: Database) -> int:
    async with db.transaction() as session:
        query = sa.select(sa.func.count()).where(outbox_table.c.published_at.is_not(None))
        return int((await session.execute(query)).scalar_one())


async def test_a_relay_stopped_mid_batch_finishes_it_and_marks_it_sent(db: Database) -> None:
    outbox, broker = outbox_for(), SlowBroker()
    relay = OutboxRelay(service="test", db=db, transport=broker, outbox=outbox, clock=SystemClock())
    async with db.transaction() as session:
        await outbox.add(session, "test.parcel.shipped.v1", ParcelShipped(parcel="P1", weight_kg=1))
    relay.start()
    await broker.publishing.wait()

    stopping = asyncio.create_task(relay.stop())
    await asyncio.sleep(0.1)
    assert not stopping.done()  # waiting for the batch, not cancelling it
    broker.confirm.set()
    await asyncio.wait_for(stopping, 5)

    # Cancelled, the confirmed batch would stay unmarked and be sent again on the next start.
    assert await published(db) == 1


async def test_a_pass_that_outlasts_the_grace_is_cancelled_and_stop_returns() -> None:
    wake = asyncio.Event()
    background = BackgroundLoop("stuck", wake, grace_seconds=0.2)
    cancelled = asyncio.Event()

    async def stuck() -> None:
        try:
            await asyncio.Event().wait()  # a pass that never ends by itself
        except asyncio.CancelledError:
            cancelled.set()
            raise

    background.start(stuck)
    await asyncio.sleep(0)
    await asyncio.wait_for(background.stop(), 2)
    assert cancelled.is_set()


async def test_a_sleeping_loop_stops_at_once() -> None:
    wake = asyncio.Event()
    background = BackgroundLoop("idle", wake, grace_seconds=30)
    passes = 0

    async def body() -> None:
        nonlocal passes
        while background.next_pass():
            passes += 1
            await asyncio.wait_for(wake.wait(), 3600)

    background.start(body)
    await asyncio.sleep(0.05)
    await asyncio.wait_for(background.stop(), 1)
    assert passes == 1


async def test_the_in_process_bus_lets_a_handler_in_hand_finish_when_it_closes() -> None:
    bus = InProcessTransport()
    await bus.connect()
    started, finished = asyncio.Event(), asyncio.Event()

    async def handler(delivery: Delivery) -> Outcome:
        started.set()
        await asyncio.sleep(0.2)  # a transaction in progress
        finished.set()
        return Outcome.handled()

    await bus.consume("warehouse", ["test.#"], handler)
    await bus.publish(
        [
            OutgoingMessage(
                id="e1", routing_key="test.parcel.shipped.v1", body=b"{}", timestamp=datetime.now(UTC)
            )
        ]
    )
    await started.wait()
    await asyncio.wait_for(bus.close(), 5)
    assert finished.is_set()


async def test_the_in_process_bus_handles_what_is_queued_before_it_closes() -> None:
    bus = InProcessTransport(concurrency=1)
    await bus.connect()
    handled: list[str] = []

    async def handler(delivery: Delivery) -> Outcome:
        await asyncio.sleep(0.05)
        handled.append(delivery.message_id)
        return Outcome.handled()

    await bus.consume("warehouse", ["test.#"], handler)
    ids = [f"e{n}" for n in range(5)]
    await bus.publish(
        [
            OutgoingMessage(
                id=i, routing_key="test.parcel.shipped.v1", body=b"{}", timestamp=datetime.now(UTC)
            )
            for i in ids
        ]
    )
    # The relay marked these sent when the bus took them: dropping them at close would lose them.
    await asyncio.wait_for(bus.close(), 5)
    assert handled == ids
