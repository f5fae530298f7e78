"""The SLA engine on real PostgreSQL and RabbitMQ: due times, exact-time breaches, downtime, replicas."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from services.tickets.scheduled import timer_handlers
from shared.outbox import outbox_table
from shared.timers import TimerScheduler
from tests.conftest import ADMIN, AGENT, eventually
from tests.integration.conftest import Broker, Cluster
from tests.integration.test_amqp_pipeline import contact_event


async def events_of(cluster: Cluster, type: str) -> list[dict[str, Any]]:
    async with cluster.runtime("tickets").db.transaction() as session:
        rows = (
            await session.execute(sa.select(outbox_table.c.payload).where(outbox_table.c.type == type))
        ).all()
    return [json.loads(row.payload) for row in rows]


async def fast_policy(cluster: Cluster, **targets: int) -> None:
    response = await cluster.clients["tickets"].post(
        "/v1/sla-policies",
        json={
            "name": f"fast-{uuid.uuid4().hex[:6]}",
            "position": 0,
            "conditions": {"categories": ["fast"]},
            "targets": targets,
            "warning": {"fraction": 0.5},
        },
        headers=ADMIN,
    )
    assert response.status_code == 201, response.text


async def open_fast(cluster: Cluster) -> dict[str, Any]:
    response = await cluster.clients["tickets"].post(
        "/v1/tickets", json={"subject": "快", "kind": "complaint", "category": "fast"}, headers=AGENT
    )
    assert response.status_code == 201, response.text
    ticket: dict[str, Any] = response.json()
    return ticket


def lateness(event: dict[str, Any], at_field: str) -> float:
    data = event["data"]
    return (datetime.fromisoformat(data[at_field]) - datetime.fromisoformat(data["due_at"])).total_seconds()


async def test_complaint_contact_opens_a_ticket_with_24h_and_48h_due_times(
    start_cluster: Any, broker: Broker
) -> None:
    cluster: Cluster = await start_cluster()
    contact_id = uuid.uuid4()
    await broker.publish_raw(
        "intake.contact.received.v1", contact_event(contact_id), content_type="application/cloudevents+json"
    )

    async def ticket() -> Any:
        items = (
            await cluster.clients["tickets"].get(
                "/v1/tickets", params={"contact_id": str(contact_id)}, headers=AGENT
            )
        ).json()["items"]
        return items[0] if items else None

    opened = await eventually(ticket)
    sla = (await cluster.clients["tickets"].get(f"/v1/tickets/{opened['id']}/sla", headers=AGENT)).json()
    due = {
        c["metric"]: datetime.fromisoformat(c["due_at"]) - datetime.fromisoformat(c["started_at"])
        for c in sla["clocks"]
    }
    assert due == {"first_response": timedelta(hours=24), "resolution": timedelta(hours=48)}
    created = await events_of(cluster, "tickets.ticket.created.v1")
    assert {t["metric"] for t in created[0]["data"]["sla_targets"]} == {"first_response", "resolution"}


async def test_pause_and_resume_move_the_due_time_by_the_paused_time(start_cluster: Any) -> None:
    cluster: Cluster = await start_cluster()
    client = cluster.clients["tickets"]
    ticket = (
        await client.post("/v1/tickets", json={"subject": "等", "kind": "inquiry"}, headers=AGENT)
    ).json()

    async def resolution_due() -> datetime:
        sla = (await client.get(f"/v1/tickets/{ticket['id']}/sla", headers=AGENT)).json()
        clock = next(c for c in sla["clocks"] if c["metric"] == "resolution")
        return datetime.fromisoformat(clock["due_at"])

    before = await resolution_due()
    await client.post(f"/v1/tickets/{ticket['id']}/reply", json={"body": "请提供型号"}, headers=AGENT)
    waiting = await client.post(f"/v1/tickets/{ticket['id']}/wait-on-customer", json={}, headers=AGENT)
    assert waiting.status_code == 200, waiting.text
    await asyncio.sleep(0.5)
    await client.post(f"/v1/tickets/{ticket['id']}/customer-replied", json={}, headers=AGENT)
    sla = (await client.get(f"/v1/tickets/{ticket['id']}/sla", headers=AGENT)).json()
    clock = next(c for c in sla["clocks"] if c["metric"] == "resolution")
    moved = (await resolution_due() - before).total_seconds()
    assert abs(moved - clock["paused_seconds"]) < 0.05
    assert moved >= 0.5


async def test_warning_and_breach_fire_within_a_second_and_escalate(start_cluster: Any) -> None:
    cluster: Cluster = await start_cluster()
    await fast_policy(cluster, first_response=2, resolution=4)
    ticket = await open_fast(cluster)

    async def two_breaches() -> list[dict[str, Any]] | None:
        found = await events_of(cluster, "tickets.sla.breached.v1")
        return found if len(found) == 2 else None

    breaches = await eventually(two_breaches, timeout=15)
    warnings = await events_of(cluster, "tickets.sla.warning.v1")
    assert sorted(e["data"]["metric"] for e in breaches) == ["first_response", "resolution"]
    assert sorted(e["data"]["metric"] for e in warnings) == ["first_response", "resolution"]
    for event in breaches:
        assert 0 <= lateness(event, "breached_at") < 1.0
        assert event["data"]["late"] is False
    for event in warnings:  # warned at half the target, well before the due time
        assert lateness(event, "warned_at") < 0
    after = (await cluster.clients["tickets"].get(f"/v1/tickets/{ticket['id']}", headers=AGENT)).json()
    assert after["sla_breached"] is True and after["escalation_level"] == 2
    assert after["group"] == "senior_management" and after["priority"] == "urgent"
    listed = (
        await cluster.clients["tickets"].get("/v1/tickets", params={"sla": "breached"}, headers=AGENT)
    ).json()
    assert [t["id"] for t in listed["items"]] == [ticket["id"]]
    metrics = (await cluster.clients["tickets"].get("/metrics")).text
    assert 'kefu_sla_breaches_total{metric="first_response"' in metrics


async def test_a_timer_due_while_the_scheduler_is_down_fires_once_after_restart_marked_late(
    start_cluster: Any,
) -> None:
    cluster: Cluster = await start_cluster()
    scheduler = cluster.runtime("tickets").scheduler
    assert scheduler is not None
    await scheduler.stop()
    await fast_policy(cluster, first_response=1, resolution=3600)
    await open_fast(cluster)
    await asyncio.sleep(2.2)  # due while "down"
    assert await events_of(cluster, "tickets.sla.breached.v1") == []
    scheduler.start()

    async def one_breach() -> list[dict[str, Any]] | None:
        found = await events_of(cluster, "tickets.sla.breached.v1")
        return found or None

    breaches = await eventually(one_breach)
    await asyncio.sleep(0.5)
    breaches = await events_of(cluster, "tickets.sla.breached.v1")
    assert len(breaches) == 1 and breaches[0]["data"]["late"] is True


async def test_two_schedulers_on_one_database_fire_each_breach_once(start_cluster: Any) -> None:
    cluster: Cluster = await start_cluster()
    runtime = cluster.runtime("tickets")
    assert runtime.timers is not None
    second = TimerScheduler(
        service="tickets",
        db=runtime.db,
        timers=runtime.timers,
        handlers=timer_handlers,
        outbox=runtime.outbox,
        clock=runtime.clock,
        batch_size=1,
    )
    second.start()
    try:
        await fast_policy(cluster, first_response=1)
        tickets = [await open_fast(cluster) for _ in range(8)]

        async def all_breached() -> list[dict[str, Any]] | None:
            found = await events_of(cluster, "tickets.sla.breached.v1")
            return found if len(found) >= len(tickets) else None

        await eventually(all_breached, timeout=15)
        await asyncio.sleep(0.5)
        breaches = await events_of(cluster, "tickets.sla.breached.v1")
        assert sorted(e["data"]["ticket"]["id"] for e in breaches) == sorted(t["id"] for t in tickets)
    finally:
        await second.stop()


async def test_a_low_survey_score_reopens_and_escalates(start_cluster: Any, broker: Broker) -> None:
    cluster: Cluster = await start_cluster()
    client = cluster.clients["tickets"]
    ticket = (
        await client.post("/v1/tickets", json={"subject": "退款", "kind": "complaint"}, headers=AGENT)
    ).json()
    resolved = await client.post(
        f"/v1/tickets/{ticket['id']}/resolve",
        json={"resolution_code": "refunded", "summary": "已退款"},
        headers=AGENT,
    )
    assert resolved.json()["status"] == "resolved"
    envelope = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "/kefu/analytics",
        "type": "analytics.survey.completed.v1",
        "time": datetime.now(UTC).isoformat(),
        "data": {
            "survey_id": str(uuid.uuid4()),
            "ticket_id": ticket["id"],
            "csat": 1,
            "comment": "还是没解决",
            "completed_at": datetime.now(UTC).isoformat(),
        },
    }
    await broker.publish_raw(
        "analytics.survey.completed.v1",
        json.dumps(envelope).encode(),
        content_type="application/cloudevents+json",
    )

    async def reopened() -> Any:
        body = (await client.get(f"/v1/tickets/{ticket['id']}", headers=AGENT)).json()
        return body if body["status"] == "reopened" else None

    body = await eventually(reopened)
    assert body["escalation_level"] == 1 and body["reopen_count"] == 1


async def test_a_burst_of_breaches_across_concurrent_passes_escalates_each_ticket_once(
    start_cluster: Any,
) -> None:
    cluster: Cluster = await start_cluster()
    runtime = cluster.runtime("tickets")
    assert runtime.timers is not None
    # Small batches and several claimers: the burst is split over many concurrent passes.
    second = TimerScheduler(
        service="tickets",
        db=runtime.db,
        timers=runtime.timers,
        handlers=timer_handlers,
        outbox=runtime.outbox,
        clock=runtime.clock,
        batch_size=3,
        claimers=3,
    )
    second.start()
    try:
        await fast_policy(cluster, first_response=2)
        tickets = [await open_fast(cluster) for _ in range(12)]

        async def all_breached() -> list[dict[str, Any]] | None:
            found = await events_of(cluster, "tickets.sla.breached.v1")
            return found if len(found) >= len(tickets) else None

        await eventually(all_breached, timeout=20)
        await asyncio.sleep(0.5)
    finally:
        await second.stop()
    ids = sorted(t["id"] for t in tickets)
    for type in ("tickets.sla.warning.v1", "tickets.sla.breached.v1", "tickets.ticket.escalated.v1"):
        assert sorted(e["data"]["ticket"]["id"] for e in await events_of(cluster, type)) == ids, type
    for ticket in tickets:
        after = (await cluster.clients["tickets"].get(f"/v1/tickets/{ticket['id']}", headers=AGENT)).json()
        assert after["sla_breached"] is True and after["escalation_level"] == 1
        history = (
            await cluster.clients["tickets"].get(f"/v1/tickets/{ticket['id']}/history", headers=AGENT)
        ).json()["items"]
        assert [h["action"] for h in history].count("escalate") == 1
