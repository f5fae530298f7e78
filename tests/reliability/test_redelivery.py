"""Every event delivered again, twice or three times, in shuffled order: no effect changes. And a fresh
analytics fed the whole history shuffled and duplicated reaches the same figures as the one that saw it in
order."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aio_pika
import asyncpg
import httpx
import pytest

from shared.bus.amqp import AmqpTransport
from tests.conftest import eventually
from tests.integration.conftest import PG_DSN
from tests.reliability.harness import (
    ADMIN,
    Distributed,
    Recorder,
    ServiceProcess,
    asyncpg_dsn,
    record_report,
    service_env,
    settle,
    shuffled,
)

pytestmark = pytest.mark.timeout(400)

MIRROR_RETRIES = [200, 500, 1000, 2000]

# What a user of each service sees; identical before and after the redelivery.
STATE = {
    "intake": "SELECT md5(string_agg(c::text, ',' ORDER BY c.id)) FROM customers c",
    "tickets": (
        "SELECT md5(string_agg(concat_ws('|', id, contact_id, status, priority, version, reopen_count),"
        " ',' ORDER BY id)) FROM tickets"
    ),
    "analytics": "SELECT md5(string_agg(f::text, ',' ORDER BY f.ticket_id)) FROM ticket_facts f",
}
# One fixed window, so a report computed a minute later covers the same time.
_NOW = datetime.now(UTC).replace(microsecond=0)
_WINDOW = f"since={(_NOW - timedelta(days=2)).isoformat()}&until={(_NOW + timedelta(days=2)).isoformat()}"
_WINDOW = _WINDOW.replace("+", "%2B")
REPORTS = [
    f"/v1/metrics/overview?{_WINDOW}",
    f"/v1/metrics/tickets?group_by=day&{_WINDOW}",
    f"/v1/metrics/satisfaction?{_WINDOW}",
]


async def snapshot(platform: Distributed) -> dict[str, Any]:
    state = {name: await platform.scalar(name, sql) for name, sql in STATE.items()}
    state["surveys"] = await platform.scalar(
        "analytics", "SELECT count(*) || '/' || count(answered_at) FROM surveys"
    )
    return state


async def reports(base_url: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=base_url, headers=ADMIN, timeout=30) as http:
        answers = {path: (await http.get(path)).json() for path in REPORTS}
    # When the report was computed is not a figure.
    for answer in answers.values():
        answer.pop("generated_at", None)
    return answers


async def work_tickets(platform: Distributed, recorder: Recorder) -> dict[str, int]:
    """Reply to and resolve every second ticket, and answer half of the surveys that follows."""
    done = {"resolved": 0, "answered": 0}
    # Repairs resolve through the after-sales steps; complaints and inquiries with a reply.
    rows = await platform.query("tickets", "SELECT id FROM tickets WHERE kind <> 'repair' ORDER BY id")
    async with httpx.AsyncClient(base_url=platform["tickets"].url, headers=ADMIN, timeout=10) as http:
        for row in rows[::2]:
            ticket = f"/v1/tickets/{row['id']}"
            assert (await http.post(f"{ticket}/reply", json={"body": "您好,已为您安排处理。"})).is_success
            resolve = {"resolution_code": "fixed", "summary": "已上门维修"}
            response = await http.post(f"{ticket}/resolve", json=resolve)
            assert response.is_success, response.text
            done["resolved"] += 1

    async def tokens() -> list[str] | None:
        found = [
            json.loads(m.body)["data"]["token"]
            for m in await recorder.collect()
            if m.routing_key == "analytics.survey.requested.v1"
        ]
        return found if len(found) >= done["resolved"] else None

    async with httpx.AsyncClient(base_url=platform["analytics"].url, timeout=10) as http:
        for n, token in enumerate((await eventually(tokens, timeout=60, every=0.5))[::2]):
            answer = {"csat": 1 + n % 5, "nps": n % 11, "ces": 1 + n % 7, "comment": "师傅很专业"}
            response = await http.post(f"/v1/surveys/{token}/responses", json=answer)
            assert response.status_code == 201, response.text
            done["answered"] += 1
    return done


async def republish(url: str, exchange_name: str, messages: list[Any]) -> int:
    """Each message again, as the broker would redeliver it: same id, body and headers."""
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.declare_exchange(exchange_name, aio_pika.ExchangeType.TOPIC, durable=True)
        for message in messages:
            await exchange.publish(
                aio_pika.Message(
                    message.body,
                    headers=dict(message.headers or {}),
                    content_type=message.content_type,
                    message_id=message.message_id,
                    correlation_id=message.correlation_id,
                    type=message.type,
                    timestamp=message.timestamp,
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                ),
                routing_key=message.routing_key or "",
            )
    return len(messages)


def duplicated(messages: list[Any]) -> list[Any]:
    """Every message twice, every third one three times, all shuffled."""
    copies = [m for n, m in enumerate(messages) for _ in range(3 if n % 3 == 0 else 2)]
    return shuffled(copies, seed=20261123)


async def fresh_analytics_reports(
    platform: Distributed, history: list[Any], tickets: int, tmp_path: Path
) -> dict[str, Any]:
    """Reports of a new analytics (own database, own exchange) fed `history` duplicated and shuffled."""
    mirror_db = f"{platform.databases['analytics'].rsplit('/', 1)[1]}_mirror"
    admin = await asyncpg.connect(f"{PG_DSN}/postgres")
    await admin.execute(f'CREATE DATABASE "{mirror_db}"')
    mirror_exchange = f"{platform.transport.exchange_name}-mirror"
    mirror_prefix = f"{platform.transport.queue_prefix}-mirror"
    databases = {"analytics": platform.databases["analytics"].rsplit("/", 1)[0] + f"/{mirror_db}"}
    env = service_env(
        "analytics", databases, platform.transport.url, mirror_exchange, mirror_prefix,
        KEFU_RETRY_DELAYS_MS=str(MIRROR_RETRIES),
    )  # fmt: skip
    mirror = ServiceProcess("analytics", env, tmp_path / "analytics-mirror.log")
    mirror_bus = AmqpTransport(
        platform.transport.url,
        exchange=mirror_exchange,
        queue_prefix=mirror_prefix,
        retry_delays_ms=MIRROR_RETRIES,
    )
    await mirror_bus.connect()
    try:
        await mirror.start()
        await republish(platform.transport.url, mirror_exchange, duplicated(history))

        async def caught_up() -> bool:
            conn = await asyncpg.connect(asyncpg_dsn(databases["analytics"]))
            try:
                facts = await conn.fetchval("SELECT count(*) FROM ticket_facts")
            finally:
                await conn.close()
            waiting = await mirror_bus.queue_depths("analytics")
            return facts == tickets and not any(waiting.values())

        await eventually(caught_up, timeout=90, every=0.5)
        await asyncio.sleep(1)
        return await reports(mirror.url)
    finally:
        await mirror.stop()
        await mirror_bus.delete_topology("analytics")
        await mirror_bus.close()
        connection = await aio_pika.connect(platform.transport.url)
        async with connection:
            await (await connection.channel()).exchange_delete(mirror_exchange)
        await admin.execute(f'DROP DATABASE IF EXISTS "{mirror_db}" WITH (FORCE)')
        await admin.close()


async def test_every_event_redelivered_twice_or_thrice_out_of_order_changes_nothing(
    distributed, tmp_path: Path
) -> None:
    platform = await distributed()
    async with Recorder(platform) as recorder:
        load = platform.load(20)
        await asyncio.sleep(3)
        await load.stop()
        await settle(platform, load)
        work = await work_tickets(platform, recorder)
        await settle(platform, load)
        await asyncio.sleep(1)  # the last survey's completion reaching tickets
        before, figures = await snapshot(platform), await reports(platform["analytics"].url)
        history = list(await recorder.collect())

        redelivered = await republish(
            platform.transport.url, platform.transport.exchange_name, duplicated(history)
        )
        result = await settle(platform, load)
        after, figures_after = await snapshot(platform), await reports(platform["analytics"].url)

    assert result.clean
    assert after == before
    assert figures_after == figures

    # Out of order from the start: a second analytics that has seen nothing gets the whole history,
    # shuffled and duplicated, on an exchange of its own.
    mirrored = await fresh_analytics_reports(platform, history, result.tickets, tmp_path)
    ticket_figures = {path: figures[path] for path in REPORTS if "satisfaction" not in path}
    assert {path: mirrored[path] for path in ticket_figures} == ticket_figures
    await record_report(
        "redelivery-and-reordering",
        {
            "what": "every event published again 2-3 times, shuffled; a fresh analytics fed it all shuffled",
            "events_in_history": len(history),
            "redelivered_copies": redelivered,
            "tickets_resolved": work["resolved"],
            "surveys_answered": work["answered"],
            "fresh_analytics_reports_compared": len(ticket_figures),
            **result.summary(),
        },
    )
