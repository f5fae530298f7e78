"""Over the real broker: KPIs from published events (duplicates too), the survey round trip, SSE, webhooks."""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from datetime import timedelta
from typing import Any

import aio_pika
import httpx
import uvicorn
from fastapi import FastAPI, Request, Response

from services.analytics.webhooks import SIGNATURE_HEADER, verify
from tests.conftest import bearer, eventually
from tests.integration.analytics.conftest import raw
from tests.integration.conftest import Broker
from tests.unit.analytics.conftest import START
from tests.unit.analytics.events import lifecycle, sla_outcome

ANALYST = bearer("analyst")
SUPERVISOR = bearer("supervisor", sub="ops")
H = timedelta(hours=1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def publish(
    broker: Broker, events: list[tuple[str, dict[str, Any]]], ids: list[str] | None = None
) -> None:
    for i, (type_, data) in enumerate(events):
        key, body = raw(type_, data, ids[i] if ids else None)
        await broker.publish_raw(key, body, content_type="application/cloudevents+json")


async def totals(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get(
        "/v1/metrics/tickets",
        params={"since": "2026-03-01T00:00:00Z", "until": "2026-03-05T00:00:00Z", "include": "breaches"},
        headers=ANALYST,
    )
    body: dict[str, Any] = response.json()
    return body


async def test_events_over_the_broker_give_kpis_and_duplicates_change_nothing(
    broker: Broker, analytics_client: httpx.AsyncClient
) -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    events = [
        *lifecycle(a, START, responded_at=START + H, resolved_at=START + 2 * H, assignee="alice"),
        *lifecycle(b, START, responded_at=START + 3 * H, assignee="bob"),
        sla_outcome("tickets.sla.breached.v1", b, START, START + 2 * H, assignee="bob"),
    ]
    ids = [str(uuid.uuid4()) for _ in events]
    await publish(broker, list(reversed(events)), list(reversed(ids)))
    await publish(broker, events, ids)  # every event delivered again

    async def settled() -> bool:
        body = await totals(analytics_client)
        return bool(body["totals"]["created"] == 2 and body["sla"]["first_response"]["breached"] == 1)

    await eventually(settled, timeout=20)
    await asyncio.sleep(0.5)  # let the duplicates land too
    body = await totals(analytics_client)
    assert body["totals"]["created"] == 2 and body["totals"]["resolved"] == 1
    assert body["totals"]["first_response"]["calendar"]["n"] == 2
    assert body["breaches_by"]["agent"] == [{"key": "bob", "count": 1}]


async def test_survey_round_trip_publishes_the_low_score_for_tickets(
    broker: Broker, analytics_client: httpx.AsyncClient
) -> None:
    connection = await aio_pika.connect(broker.url)
    async with connection:
        channel = await connection.channel()
        exchange = await channel.declare_exchange(broker.exchange, aio_pika.ExchangeType.TOPIC, durable=True)
        queue = await channel.declare_queue(exclusive=True)
        await queue.bind(exchange, "analytics.survey.*.v1")

        ticket = uuid.uuid4()
        await publish(broker, lifecycle(ticket, START, responded_at=START + H, resolved_at=START + 2 * H))

        requested = await eventually(lambda: _get(queue), timeout=20)
        assert requested["type"] == "analytics.survey.requested.v1"
        token = requested["data"]["token"]
        answer = await analytics_client.post(f"/v1/surveys/{token}/responses", json={"csat": 1, "nps": 2})
        assert answer.status_code == 201, answer.text
        completed = await eventually(lambda: _get(queue), timeout=20)
        assert completed["type"] == "analytics.survey.completed.v1"
        assert completed["data"]["ticket_id"] == str(ticket) and completed["data"]["csat"] == 1


async def _get(queue: aio_pika.abc.AbstractQueue) -> dict[str, Any] | None:
    message = await queue.get(fail=False)
    if message is None:
        return None
    await message.ack()
    body: dict[str, Any] = json.loads(message.body)
    return body


async def test_sse_stream_delivers_a_breach_and_resumes_from_last_event_id(
    broker: Broker, analytics_app: FastAPI
) -> None:
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(analytics_app, host="127.0.0.1", port=port, log_config=None, lifespan="off")
    )
    serving = asyncio.create_task(server.serve())
    try:
        await eventually(lambda: server.started, timeout=10)
        base = f"http://127.0.0.1:{port}"

        async def read_events(headers: dict[str, str], count: int) -> list[dict[str, str]]:
            events: list[dict[str, str]] = []
            current: dict[str, str] = {}
            async with (
                httpx.AsyncClient(base_url=base, timeout=20) as http,
                http.stream("GET", "/v1/sla/breaches/stream", headers={**SUPERVISOR, **headers}) as r,
            ):
                assert r.status_code == 200
                async for line in r.aiter_lines():
                    if not line:
                        if "id" in current:
                            events.append(current)
                        current = {}
                        if len(events) == count:
                            break
                        continue
                    field, _, value = line.partition(":")
                    current[field] = value.strip()
            return events

        first, second = uuid.uuid4(), uuid.uuid4()
        reader = asyncio.create_task(read_events({}, 1))
        await asyncio.sleep(1.0)  # the stream starts "now": publish after it is open
        await publish(broker, [sla_outcome("tickets.sla.breached.v1", first, START, START + H)])
        (live,) = await asyncio.wait_for(reader, 20)
        assert live["event"] == "sla.breach" and json.loads(live["data"])["ticket_id"] == str(first)

        await publish(broker, [sla_outcome("tickets.sla.warning.v1", second, START, START + H)])
        resumed = await asyncio.wait_for(read_events({"Last-Event-ID": live["id"]}, 1), 20)
        assert resumed[0]["event"] == "sla.warning" and json.loads(resumed[0]["data"])["ticket_id"] == str(
            second
        )
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, 10)


async def test_webhook_receiver_on_localhost_gets_a_signed_post_and_a_retry_after_a_500(
    broker: Broker, analytics_client: httpx.AsyncClient, monkeypatch: Any
) -> None:
    received: list[tuple[bytes, str]] = []
    receiver = FastAPI()

    @receiver.post("/hook")
    async def hook(request: Request) -> Response:
        received.append((await request.body(), request.headers[SIGNATURE_HEADER]))
        return Response(status_code=500 if len(received) == 1 else 200)

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(receiver, host="127.0.0.1", port=port, log_config=None))
    serving = asyncio.create_task(server.serve())
    try:
        await eventually(lambda: server.started, timeout=10)
        created = await analytics_client.post(
            "/v1/webhooks", json={"url": f"http://127.0.0.1:{port}/hook"}, headers=SUPERVISOR
        )
        assert created.status_code == 201, created.text
        secret, hook_id = created.json()["secret"], created.json()["id"]
        ticket = uuid.uuid4()
        await publish(broker, [sla_outcome("tickets.sla.breached.v1", ticket, START, START + H)])

        async def delivered() -> bool:
            page = await analytics_client.get(f"/v1/webhooks/{hook_id}/deliveries", headers=SUPERVISOR)
            items = page.json()["items"]
            return bool(items and items[0]["status"] == "delivered")

        await eventually(delivered, timeout=30)  # first retry waits 1 s
        assert len(received) == 2
        for body, signature in received:
            assert verify(secret, signature, body)
            assert json.loads(body)["ticket_id"] == str(ticket)
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, 10)
