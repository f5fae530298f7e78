"""Deliveries a transport submits without a task each: one outcome each, reported after the batch commits."""

from __future__ import annotations

import asyncio
import uuid

import sqlalchemy as sa

from services.analytics.models import EventRecord, TicketFact
from shared.bus.base import Delivery, Outcome, OutcomeKind
from tests.unit.analytics.conftest import START, Analytics
from tests.unit.analytics.events import delivery, lifecycle


async def outcomes_of(analytics: Analytics, deliveries: list[Delivery]) -> list[Outcome]:
    consumer = analytics.runtime.consumer
    assert consumer is not None
    loop = asyncio.get_running_loop()
    futures: list[asyncio.Future[Outcome]] = [loop.create_future() for _ in deliveries]
    for d, future in zip(deliveries, futures, strict=True):
        assert consumer.submit(d, future.set_result)
    # Nothing is reported before the batch is handled (the transport acks on the report).
    assert not any(f.done() for f in futures)
    return list(await asyncio.wait_for(asyncio.gather(*futures), timeout=10))


async def test_a_submitted_batch_reports_each_outcome_once_committed(analytics: Analytics) -> None:
    ticket = uuid.uuid4()
    events = lifecycle(ticket, START, responded_at=START, resolved_at=START)
    first = [delivery(t, d, event_id=f"e{i}") for i, (t, d) in enumerate(events)]
    again = delivery(*events[0], event_id="e0")  # redelivered: a duplicate, found in the event log
    outcomes = await outcomes_of(analytics, [*first, again])
    assert [o.kind for o in outcomes] == [OutcomeKind.HANDLED] * len(first) + [OutcomeKind.DUPLICATE]
    async with analytics.runtime.db.transaction() as session:
        assert (await session.execute(sa.select(sa.func.count()).select_from(EventRecord))).scalar_one() == 3
        fact = await session.get(TicketFact, ticket)
    assert fact is not None and fact.status == "resolved"
    assert await outcomes_of(analytics, [delivery(*events[1], event_id="e1")]) == [Outcome.duplicate()]


async def test_what_is_not_a_valid_event_is_left_to_the_transport_to_judge(analytics: Analytics) -> None:
    consumer = analytics.runtime.consumer
    assert consumer is not None
    reported: list[Outcome] = []
    garbage = Delivery(b"{not json", "tickets.ticket.created.v1", {}, "application/cloudevents+json", None)
    invalid = delivery("tickets.ticket.created.v1", {"ticket": {"id": "nope"}})
    for d in (garbage, invalid):
        assert not consumer.submit(d, reported.append)
        # The transport then awaits the consumer as usual, which dead-letters it with the reason.
        outcome = await consumer(d)
        assert outcome.kind is OutcomeKind.DEAD and outcome.reason
    assert reported == []
