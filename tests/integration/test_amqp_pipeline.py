"""Over the real RabbitMQ and PostgreSQL: the contact path, duplicates, poison, and a broker outage."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import sqlalchemy as sa

from services.tickets.models import Ticket
from shared.inbox import inbox_table
from shared.outbox import outbox_table
from tests.conftest import AGENT, bearer, contact_body, eventually
from tests.integration.conftest import Broker, Cluster
from tests.integration.proxy import CuttableProxy

ANALYST = bearer("analyst")


async def tickets_for(cluster: Cluster, contact_id: str) -> list[dict[str, Any]]:
    response = await cluster.clients["tickets"].get(
        "/v1/tickets", params={"contact_id": contact_id}, headers=AGENT
    )
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def tickets_created(cluster: Cluster) -> int:
    overview = await cluster.clients["analytics"].get("/v1/metrics/overview", headers=ANALYST)
    count: int = overview.json()["tickets_created"]
    return count


async def _equals(count: Any, expected: int) -> bool:
    return bool(await count == expected)


def contact_event(contact_id: uuid.UUID, *, event_id: str | None = None, **data: Any) -> bytes:
    payload = {
        "contact_id": str(contact_id),
        "customer": {"id": str(uuid.uuid4()), "tier": "standard", "display_name": "陈静"},
        "channel": "email",
        "kind": "complaint",
        "priority": "normal",
        "subject": "发票开错了",
        "received_at": datetime.now(UTC).isoformat(),
        **data,
    }
    envelope = {
        "specversion": "1.0",
        "id": event_id or str(uuid.uuid4()),
        "source": "/kefu/intake",
        "type": "intake.contact.received.v1",
        "time": datetime.now(UTC).isoformat(),
        "datacontenttype": "application/json",
        "data": payload,
    }
    return json.dumps(envelope, ensure_ascii=False).encode()


async def test_contact_becomes_a_ticket_and_a_count_across_four_apps(start_cluster: Any) -> None:
    cluster: Cluster = await start_cluster()
    for name, client in cluster.clients.items():
        ready = await client.get("/readyz")
        assert ready.status_code == 200, (name, ready.text)

    response = await cluster.clients["intake"].post(
        "/v1/contacts", json=contact_body(), headers={**AGENT, "X-Correlation-ID": "it-thin-path"}
    )
    assert response.status_code == 201, response.text
    contact = response.json()

    tickets = await eventually(lambda: tickets_for(cluster, contact["id"]))
    assert len(tickets) == 1
    assert tickets[0]["kind"] == "repair"
    await eventually(lambda: _equals(tickets_created(cluster), 1))

    # The correlation id travelled HTTP → intake event → tickets' event.
    async with cluster.runtime("tickets").db.transaction() as session:
        correlation = (await session.execute(sa.select(outbox_table.c.correlation_id))).scalar_one()
    assert correlation == "it-thin-path"


async def test_same_event_delivered_twice_opens_one_ticket(start_cluster: Any, broker: Broker) -> None:
    cluster: Cluster = await start_cluster()
    contact_id = uuid.uuid4()
    body = contact_event(contact_id, event_id="dup-event-1")
    await broker.publish_raw("intake.contact.received.v1", body, content_type="application/cloudevents+json")
    await broker.publish_raw("intake.contact.received.v1", body, content_type="application/cloudevents+json")
    # A different event about the same contact (a producer's retry with a new id) must not open another.
    await broker.publish_raw(
        "intake.contact.received.v1", contact_event(contact_id), content_type="application/cloudevents+json"
    )

    await eventually(lambda: tickets_for(cluster, str(contact_id)))
    await eventually(lambda: tickets_created(cluster))
    marker = uuid.uuid4()  # events are handled in order, so once this one is in, the copies were seen
    await broker.publish_raw(
        "intake.contact.received.v1", contact_event(marker), content_type="application/cloudevents+json"
    )
    await eventually(lambda: tickets_for(cluster, str(marker)))

    assert len(await tickets_for(cluster, str(contact_id))) == 1
    await eventually(lambda: _equals(tickets_created(cluster), 2))
    async with cluster.runtime("tickets").db.transaction() as session:
        handled = (
            await session.execute(
                sa.select(sa.func.count())
                .select_from(inbox_table)
                .where(inbox_table.c.event_id == "dup-event-1")
            )
        ).scalar_one()
    assert handled == 1


async def test_poison_messages_are_dead_lettered_with_reasons_and_the_queue_goes_on(
    start_cluster: Any, broker: Broker
) -> None:
    cluster: Cluster = await start_cluster()
    await broker.publish_raw("intake.contact.received.v1", b"<xml>not json</xml>", message_id="p-not-json")
    unknown = json.dumps(
        {
            "specversion": "1.0",
            "id": "p-unknown",
            "source": "/crm",
            "type": "intake.contact.teleported.v1",
            "data": {},
        }
    ).encode()
    # Bound by a wildcard-free key, so publish it under a key tickets is bound to: the type inside decides.
    await broker.publish_raw("intake.contact.received.v1", unknown, message_id="p-unknown")
    invalid = contact_event(uuid.uuid4(), event_id="p-invalid", priority="yesterday")
    await broker.publish_raw("intake.contact.received.v1", invalid, message_id="p-invalid")
    good = uuid.uuid4()
    await broker.publish_raw("intake.contact.received.v1", contact_event(good), message_id="good")

    await eventually(lambda: tickets_for(cluster, str(good)))

    async def three_dead() -> list[Any] | None:
        letters = await cluster.transport("tickets").dead_letters("tickets")
        return letters if len(letters) == 3 else None

    reasons = {letter.message_id: letter.reason for letter in await eventually(three_dead)}
    assert "not JSON" in reasons["p-not-json"]
    assert "unknown event type 'intake.contact.teleported.v1'" in reasons["p-unknown"]
    assert "priority" in reasons["p-invalid"]
    depths = await cluster.transport("tickets").queue_depths("tickets")
    assert depths[f"{broker.prefix}.tickets"] == 0


async def test_dead_letters_replay_after_the_cause_is_fixed(start_cluster: Any, broker: Broker) -> None:
    cluster: Cluster = await start_cluster()
    contact_id = uuid.uuid4()
    # Tickets was bound to the event; the handler will fail until the ticket table exists again.
    async with cluster.runtime("tickets").db.transaction() as session:
        await session.execute(sa.text("ALTER TABLE tickets RENAME TO tickets_away"))
    await broker.publish_raw("intake.contact.received.v1", contact_event(contact_id), message_id="retry-me")

    async def dead() -> list[Any]:
        return await cluster.transport("tickets").dead_letters("tickets")

    letters = await eventually(dead)
    assert "gave up after 3 attempts" in letters[0].reason
    async with cluster.runtime("tickets").db.transaction() as session:
        await session.execute(sa.text("ALTER TABLE tickets_away RENAME TO tickets"))
    assert await cluster.transport("tickets").replay_dead_letters("tickets") == 1
    assert len(await eventually(lambda: tickets_for(cluster, str(contact_id)))) == 1


async def test_events_written_while_the_broker_is_away_are_all_delivered(start_cluster: Any) -> None:
    proxy = CuttableProxy("127.0.0.1", 5672)
    await proxy.start()
    try:
        cluster: Cluster = await start_cluster(
            intake={"amqp_url": f"amqp://guest:guest@127.0.0.1:{proxy.port}/?reconnect_interval=0.3"}
        )
        intake: httpx.AsyncClient = cluster.clients["intake"]
        await proxy.cut()
        await eventually(lambda: not cluster.runtime("intake").transport.is_connected)
        assert (await intake.get("/readyz")).status_code == 503

        contact_ids = []
        for n in range(20):
            response = await intake.post(
                "/v1/contacts", json=contact_body(subject=f"断网期间第{n}单"), headers=AGENT
            )
            assert response.status_code == 201, response.text
            contact_ids.append(response.json()["id"])
        async with cluster.runtime("intake").db.transaction() as session:
            unsent = (
                await session.execute(
                    sa.select(sa.func.count())
                    .select_from(outbox_table)
                    .where(outbox_table.c.published_at.is_(None))
                )
            ).scalar_one()
        assert unsent >= 20  # every contact's event (and new customers' events) waits in the outbox

        await proxy.restore()
        await eventually(lambda: cluster.runtime("intake").transport.is_connected, timeout=15)

        async def all_ticketed() -> bool:
            async with cluster.runtime("tickets").db.transaction() as session:
                opened = (
                    await session.execute(
                        sa.select(sa.func.count())
                        .select_from(Ticket)
                        .where(Ticket.contact_id.in_([uuid.UUID(c) for c in contact_ids]))
                    )
                ).scalar_one()
            return opened == len(contact_ids)

        await eventually(all_ticketed, timeout=30)
        await eventually(lambda: _equals(tickets_created(cluster), 20))
        async with cluster.runtime("intake").db.transaction() as session:
            unsent = (
                await session.execute(
                    sa.select(sa.func.count())
                    .select_from(outbox_table)
                    .where(outbox_table.c.published_at.is_(None))
                )
            ).scalar_one()
        assert unsent == 0
    finally:
        await proxy.close()
