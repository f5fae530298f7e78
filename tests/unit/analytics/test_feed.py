"""The SLA feed: breach list with cursor, SSE resume, webhook signing and retries, rebuild from the log."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

import httpx
import sqlalchemy as sa

from services.analytics.models import TicketFact, WebhookDelivery
from services.analytics.rebuild import rebuild
from services.analytics.routes.sla import feed_events
from services.analytics.webhooks import SIGNATURE_HEADER, WebhookDispatcher, next_delay, verify
from shared.events import registry
from tests.conftest import bearer
from tests.unit.analytics.conftest import START, Analytics
from tests.unit.analytics.events import lifecycle, sla_outcome

SUPERVISOR = bearer("supervisor", sub="ops")
H = timedelta(hours=1)


async def breach(analytics: Analytics, ticket: uuid.UUID | None = None, **kw: Any) -> uuid.UUID:
    ticket = ticket or uuid.uuid4()
    await analytics.deliver(*sla_outcome("tickets.sla.breached.v1", ticket, START, START + H, **kw))
    return ticket


async def test_breaches_are_listed_oldest_first_with_a_cursor(analytics: Analytics) -> None:
    tickets = [await breach(analytics, assignee="bob", group="desk") for _ in range(3)]
    await analytics.deliver(*sla_outcome("tickets.sla.warning.v1", uuid.uuid4(), START, START + H))
    page = await analytics.client.get("/v1/sla/breaches", params={"limit": 2}, headers=SUPERVISOR)
    assert page.status_code == 200, page.text
    body = page.json()
    assert [i["ticket_id"] for i in body["items"]] == [str(t) for t in tickets[:2]]
    assert body["items"][0]["type"] == "sla.breach" and body["items"][0]["assignee"] == "bob"
    rest = await analytics.client.get(
        "/v1/sla/breaches", params={"limit": 2, "cursor": body["next_cursor"]}, headers=SUPERVISOR
    )
    assert [i["ticket_id"] for i in rest.json()["items"]] == [str(tickets[2])]
    both = await analytics.client.get("/v1/sla/breaches", params={"type": "all"}, headers=SUPERVISOR)
    assert len(both.json()["items"]) == 4
    assert (await analytics.client.get("/v1/sla/breaches", headers=bearer("agent"))).status_code == 403


class _Connected:
    async def is_disconnected(self) -> bool:
        return False


async def test_stream_resumes_after_the_last_event_id(analytics: Analytics) -> None:
    for _ in range(3):
        await breach(analytics)
    stream = feed_events(_Connected(), analytics.runtime, 1, ("breach", "warning"), poll=0.01)  # type: ignore[arg-type]
    first, second = await anext(stream), await anext(stream)
    assert (first["id"], second["id"]) == ("2", "3")
    assert first["event"] == "sla.breach" and json.loads(first["data"])["metric"] == "first_response"
    await stream.aclose()


async def test_webhook_posts_are_signed_and_retried_until_accepted(analytics: Analytics) -> None:
    created = await analytics.client.post(
        "/v1/webhooks", json={"url": "http://ops.example/hook", "events": ["sla.breach"]}, headers=SUPERVISOR
    )
    assert created.status_code == 201, created.text
    secret, hook_id = created.json()["secret"], created.json()["id"]
    await breach(analytics)
    await analytics.deliver(
        *sla_outcome("tickets.sla.warning.v1", uuid.uuid4(), START, START + H)
    )  # not subscribed

    received: list[httpx.Request] = []

    def receiver(request: httpx.Request) -> httpx.Response:
        received.append(request)
        return httpx.Response(500 if len(received) == 1 else 204)

    dispatcher = WebhookDispatcher(
        analytics.runtime.db, analytics.clock, transport=httpx.MockTransport(receiver)
    )
    assert await dispatcher.deliver_due() == 1
    assert await dispatcher.deliver_due() == 0  # backing off
    analytics.clock.advance(timedelta(seconds=1))
    assert await dispatcher.deliver_due() == 1
    await dispatcher.stop()

    assert len(received) == 2
    for request in received:
        assert verify(secret, request.headers[SIGNATURE_HEADER], request.content)
        assert not verify("wrong-secret-wrong", request.headers[SIGNATURE_HEADER], request.content)
    deliveries = await analytics.client.get(f"/v1/webhooks/{hook_id}/deliveries", headers=SUPERVISOR)
    (delivery,) = deliveries.json()["items"]
    assert (delivery["status"], delivery["attempts"], delivery["last_status_code"]) == ("delivered", 2, 204)


def test_backoff_schedule_ends() -> None:
    assert [next_delay(n, [1, 5, 30]) for n in (1, 2, 3, 4)] == [1, 5, 30, None]


async def test_rebuild_reproduces_the_projections(analytics: Analytics) -> None:
    ticket = uuid.uuid4()
    await analytics.deliver_all(lifecycle(ticket, START, responded_at=START + H, resolved_at=START + 3 * H))
    await breach(analytics, ticket)

    async def facts() -> list[dict[str, Any]]:
        async with analytics.runtime.db.transaction() as session:
            rows = (await session.execute(sa.select(TicketFact))).scalars().all()
            return [r.model_dump() for r in rows]

    before = await facts()
    async with analytics.runtime.db.transaction() as session:
        await session.execute(sa.delete(TicketFact))
    applied = await rebuild(analytics.runtime.db, registry, analytics.clock, batch=2)
    assert applied == 4
    assert await facts() == before
    async with analytics.runtime.db.transaction() as session:
        assert (
            await session.execute(sa.select(sa.func.count()).select_from(WebhookDelivery))
        ).scalar_one() == 0
