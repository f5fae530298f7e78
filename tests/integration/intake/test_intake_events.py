"""intake on PostgreSQL and RabbitMQ: what other systems publish, exactly once, and bad events parked."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import sqlalchemy as sa

from services.intake.models import Contact, Customer, Purchase
from shared.outbox import outbox_table
from tests.conftest import ADMIN, AGENT, bearer, contact_body, eventually
from tests.integration.conftest import Broker, Cluster, cloudevent

SUPERVISOR = bearer("supervisor", sub="wang.sup")


async def publish(broker: Broker, type_: str, data: dict[str, Any], **options: Any) -> None:
    await broker.publish_raw(
        type_, cloudevent(type_, data, **options), content_type="application/cloudevents+json"
    )


async def count(cluster: Cluster, model: Any, *where: Any) -> int:
    async with cluster.runtime("intake").db.transaction() as session:
        return int(
            (await session.execute(sa.select(sa.func.count()).select_from(model).where(*where))).scalar_one()
        )


async def dead_reasons(cluster: Cluster, expected: int) -> dict[str, str]:
    async def enough() -> list[Any] | None:
        letters = await cluster.transport("intake").dead_letters("intake")
        return letters if len(letters) >= expected else None

    letters = await eventually(enough, timeout=15)
    return {json.loads(letter.body)["id"]: letter.reason for letter in letters}


CRM = {
    "external_id": "CRM-42",
    "name": "周杰",
    "phones": ["139-1234-5678"],
    "emails": ["Zhou@Example.com"],
    "tier": "vip",
    "company": "周氏贸易",
}


async def test_crm_customers_are_upserted_once_and_bad_ones_dead_lettered(
    start_cluster: Any, broker: Broker
) -> None:
    cluster: Cluster = await start_cluster()
    await publish(broker, "crm.customer.upserted.v1", CRM, event_id="crm-1")
    await publish(broker, "crm.customer.upserted.v1", CRM, event_id="crm-1")  # redelivered
    await publish(broker, "crm.customer.upserted.v1", {**CRM, "name": "周杰伦"}, event_id="crm-2")
    await publish(
        broker,
        "crm.customer.upserted.v1",
        {**CRM, "external_id": "CRM-43", "phones": ["12345"]},
        event_id="crm-bad-phone",
    )
    await publish(broker, "crm.customer.upserted.v1", {"external_id": "CRM-44"}, event_id="crm-no-name")
    # Another CRM customer claiming 周杰's number must not steal it.
    await publish(
        broker,
        "crm.customer.upserted.v1",
        {"external_id": "CRM-45", "name": "冒名", "phones": ["13912345678"]},
        event_id="crm-clash",
    )

    reasons = await dead_reasons(cluster, 3)
    assert "invalid phone" in reasons["crm-bad-phone"]
    assert "name" in reasons["crm-no-name"]
    assert "belongs to customer" in reasons["crm-clash"] or "CRM-45" in reasons["crm-clash"]

    async def renamed() -> bool:
        page = (
            await cluster.clients["intake"].get("/v1/customers", params={"q": "CRM-42"}, headers=SUPERVISOR)
        ).json()
        return bool(page["items"]) and page["items"][0]["name"] == "周杰伦"

    await eventually(renamed)
    found = (
        await cluster.clients["intake"].get("/v1/customers", params={"q": "13912345678"}, headers=SUPERVISOR)
    ).json()["items"]
    assert len(found) == 1
    assert found[0]["tier"] == "vip"
    assert found[0]["emails"] == ["zhou@example.com"]
    assert await count(cluster, Customer) == 1


async def test_purchases_wait_for_their_customer_and_count_once(start_cluster: Any, broker: Broker) -> None:
    cluster: Cluster = await start_cluster(intake={"retry_delays_ms": [300, 600, 1200, 2400]})
    sale = {
        "customer": {"external_id": "CRM-42"},
        "product": "洗碗机",
        "model": "W60",
        "serial": "DW-1",
        "purchased_at": "2026-05-01",
        "order_id": "SO-9",
    }
    # The sale arrives before the customer record: it must be retried, not lost or given to a stranger.
    await publish(broker, "sales.purchase.recorded.v1", sale, event_id="sale-1", source="/erp")
    await publish(broker, "crm.customer.upserted.v1", CRM, event_id="crm-1")
    await publish(broker, "sales.purchase.recorded.v1", sale, event_id="sale-1-resent", source="/erp")
    await publish(
        broker,
        "sales.purchase.recorded.v1",
        {**sale, "purchased_at": "yesterday"},
        event_id="sale-bad",
        source="/erp",
    )

    await eventually(lambda: _is(count(cluster, Purchase), 1), timeout=15)
    reasons = await dead_reasons(cluster, 1)
    assert "purchased_at" in reasons["sale-bad"]
    customer = (
        await cluster.clients["intake"].get("/v1/customers", params={"q": "CRM-42"}, headers=AGENT)
    ).json()
    purchases = (
        await cluster.clients["intake"].get(
            f"/v1/customers/{customer['items'][0]['id']}/purchases",
            params={"as_of": "2026-11-23"},
            headers=AGENT,
        )
    ).json()["items"]
    assert [(p["serial"], p["warranty_until"], p["in_warranty"]) for p in purchases] == [
        ("DW-1", "2027-04-30", True)
    ]
    assert await count(cluster, Purchase) == 1


async def test_channel_messages_become_one_contact_and_one_ticket_each(
    start_cluster: Any, broker: Broker
) -> None:
    cluster: Cluster = await start_cluster()
    message = {
        "channel": "chat",
        "from": {"phone": "+86 186 0000 2222", "name": "孙丽"},
        "subject": "投诉物流",
        "body": "快递三天没动,我要投诉",
        "received_at": "2026-11-23T02:00:00Z",
        "external_id": "wx-msg-1",
    }
    await publish(broker, "channel.message.received.v1", message, event_id="gw-1", source="/gateway/wechat")
    # The gateway re-sends the same message under a new event id: still one contact.
    await publish(broker, "channel.message.received.v1", message, event_id="gw-2", source="/gateway/wechat")
    await publish(
        broker,
        "channel.message.received.v1",
        {**message, "from": {"name": "匿名"}, "external_id": "x"},
        event_id="gw-anon",
        source="/gateway/wechat",
    )

    reasons = await dead_reasons(cluster, 1)
    assert "phone, an email or a handle" in reasons["gw-anon"]
    await eventually(lambda: _is(count(cluster, Contact), 1))
    contacts = (await cluster.clients["intake"].get("/v1/contacts", headers=AGENT)).json()["items"]
    assert [(c["kind"], c["channel"], c["customer"]["display_name"]) for c in contacts] == [
        ("complaint", "chat", "孙丽")
    ]

    async def one_ticket() -> bool:
        tickets = (
            await cluster.clients["tickets"].get(
                "/v1/tickets", params={"contact_id": contacts[0]["id"]}, headers=AGENT
            )
        ).json()["items"]
        return len(tickets) == 1

    await eventually(one_ticket)


async def test_http_contacts_profiles_merge_and_audit_on_postgres(start_cluster: Any) -> None:
    cluster: Cluster = await start_cluster()
    intake = cluster.clients["intake"]
    first = (
        await intake.post(
            "/v1/contacts",
            json=contact_body(customer={"phone": "13700001111", "name": "钱七"}),
            headers=AGENT,
        )
    ).json()
    second = (
        await intake.post(
            "/v1/contacts", json=contact_body(customer={"phone": "+86 137-0000-1111"}), headers=AGENT
        )
    ).json()
    assert first["customer"]["id"] == second["customer"]["id"]
    duplicate = (
        await intake.post("/v1/customers", json={"name": "钱七", "emails": ["qian7@163.com"]}, headers=AGENT)
    ).json()
    assert duplicate["emails"] == ["q***@163.com"]
    merged = await intake.post(
        f"/v1/customers/{first['customer']['id']}/merge",
        json={"duplicate_id": duplicate["id"]},
        headers=AGENT,
    )
    assert merged.status_code == 200, merged.text
    unmasked = (await intake.get(f"/v1/customers/{first['customer']['id']}", headers=SUPERVISOR)).json()
    assert unmasked["emails"] == ["qian7@163.com"]
    assert unmasked["phones"] == ["+8613700001111"]
    audit = (await intake.get("/v1/customers/audit-log", headers=ADMIN)).json()["items"]
    assert [(a["actor"], a["customer_id"]) for a in audit] == [("wang.sup", first["customer"]["id"])]
    assert (await intake.get("/v1/customers", params={"q": "钱"}, headers=AGENT)).json()["items"][0][
        "id"
    ] == (first["customer"]["id"])

    async def all_published() -> bool:
        async with cluster.runtime("intake").db.transaction() as session:
            pending = (
                await session.execute(
                    sa.select(sa.func.count())
                    .select_from(outbox_table)
                    .where(outbox_table.c.published_at.is_(None))
                )
            ).scalar_one()
        return pending == 0

    await eventually(all_published)


async def _is(value: Any, expected: int) -> bool:
    return bool(await value == expected)


async def test_a_new_customer_calling_on_several_lines_at_once_gets_one_profile(start_cluster: Any) -> None:
    cluster: Cluster = await start_cluster()
    intake = cluster.clients["intake"]
    body = contact_body(customer={"phone": "13611112222", "name": "吴昊"})
    responses = await asyncio.gather(
        *(intake.post("/v1/contacts", json=body, headers=AGENT) for _ in range(8))
    )
    assert [r.status_code for r in responses] == [201] * 8, [
        r.text for r in responses if r.status_code != 201
    ]
    assert len({r.json()["customer"]["id"] for r in responses}) == 1
    assert await count(cluster, Customer) == 1
    assert await count(cluster, Contact) == 8
