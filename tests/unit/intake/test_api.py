"""intake over HTTP on the embedded platform: profiles, masking and audit, purchases, contacts, merges."""

from __future__ import annotations

import json
from typing import Any

import httpx
import sqlalchemy as sa

from services.platform import Platform
from shared.outbox import outbox_table
from tests.conftest import ADMIN, AGENT, bearer, contact_body

SUPERVISOR = bearer("supervisor", sub="wang.sup")


def profile(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "李娜",
        "phones": ["+86 139 1234 5678"],
        "emails": ["Li.Na@QQ.com"],
        "id_numbers": ["11010519491231002X"],
        "addresses": [{"label": "home", "text": "上海市浦东新区世纪大道100号"}],
        "tier": "vip",
        "tags": ["家电", "老客户"],
        "external_ids": ["CRM-001"],
    }
    body.update(overrides)
    return body


async def create(client: httpx.AsyncClient, **overrides: Any) -> dict[str, Any]:
    response = await client.post("/v1/customers", json=profile(**overrides), headers=AGENT)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def events(platform: Platform, type_: str) -> list[dict[str, Any]]:
    async with platform.runtimes["intake"].db.transaction() as session:
        rows = (
            await session.execute(
                sa.select(outbox_table.c.payload)
                .where(outbox_table.c.type == type_)
                .order_by(outbox_table.c.seq)
            )
        ).scalars()
        return [json.loads(r)["data"] for r in rows]


async def test_agent_sees_masked_data_and_supervisor_reads_are_audited(client: httpx.AsyncClient) -> None:
    created = await create(client)
    assert created["masked"] is True
    assert created["phones"] == ["139****5678"]
    assert created["emails"] == ["l***@qq.com"]
    assert created["id_numbers"] == ["1101**********002X"]
    assert created["addresses"][0]["text"] == "上海市浦东新****"
    assert created["external_ids"] == ["CRM-001"]

    unmasked = (await client.get(f"/v1/customers/{created['id']}", headers=SUPERVISOR)).json()
    assert unmasked["masked"] is False
    assert unmasked["phones"] == ["+8613912345678"]
    assert unmasked["emails"] == ["li.na@qq.com"]

    await client.get(f"/v1/customers/{created['id']}", headers=AGENT)  # masked: not audited
    log = (
        await client.get("/v1/customers/audit-log", params={"customer_id": created["id"]}, headers=ADMIN)
    ).json()
    assert [(e["actor"], e["action"]) for e in log["items"]] == [("wang.sup", "read")]
    assert (await client.get("/v1/customers/audit-log", headers=AGENT)).status_code == 403


async def test_patch_honours_if_match_and_identifier_ownership(
    client: httpx.AsyncClient, platform: Platform
) -> None:
    first = await create(client)
    other = await create(
        client, name="王芳", phones=["13800138000"], emails=[], id_numbers=[], external_ids=[]
    )
    current = await client.get(f"/v1/customers/{first['id']}", headers=AGENT)
    tag = current.headers["etag"]

    stale = await client.patch(
        f"/v1/customers/{first['id']}", json={"notes": "x"}, headers={**AGENT, "If-Match": 'W/"0"'}
    )
    assert stale.status_code == 412
    taken = await client.patch(
        f"/v1/customers/{first['id']}", json={"phones": ["138-0013-8000"]}, headers={**AGENT, "If-Match": tag}
    )
    assert taken.status_code == 409
    assert other["id"] in taken.json()["detail"]

    ok = await client.patch(
        f"/v1/customers/{first['id']}",
        json={"tier": "standard", "tags": ["投诉多"]},
        headers={**AGENT, "If-Match": tag},
    )
    assert ok.status_code == 200, ok.text
    assert ok.headers["etag"] != tag
    assert ok.json()["tags"] == ["投诉多"]
    updates = await events(platform, "intake.customer.updated.v1")
    assert [u["customer"]["tier"] for u in updates] == ["standard"]


async def test_search_by_phone_in_any_format_name_tier_and_tag(client: httpx.AsyncClient) -> None:
    vip = await create(client)
    await create(
        client,
        name="王芳",
        phones=["13800138000"],
        emails=[],
        id_numbers=[],
        external_ids=[],
        tier="standard",
        tags=["新客户"],
    )

    async def names(**params: str) -> list[str]:
        page = (await client.get("/v1/customers", params=params, headers=AGENT)).json()
        return [c["name"] for c in page["items"]]

    assert await names(q="139-1234-5678") == ["李娜"]
    assert await names(q="+8613912345678") == ["李娜"]
    assert await names(q="li.na@qq.com") == ["李娜"]
    assert await names(q="CRM-001") == ["李娜"]
    assert await names(q="王") == ["王芳"]
    assert await names(tier="vip") == ["李娜"]
    assert await names(tag="新客户") == ["王芳"]
    assert await names(q="100%") == []
    assert vip["tier"] == "vip"


async def test_purchases_and_warranty(client: httpx.AsyncClient) -> None:
    customer = await create(client)
    bought = {"product": "滚筒洗衣机", "model": "XQG100", "serial": "SN-1", "purchased_at": "2026-01-15"}
    created = await client.post(f"/v1/customers/{customer['id']}/purchases", json=bought, headers=AGENT)
    assert created.status_code == 201, created.text
    assert created.json()["warranty_until"] == "2027-01-14"
    inside = (
        await client.get(
            f"/v1/customers/{customer['id']}/purchases", params={"as_of": "2027-01-14"}, headers=AGENT
        )
    ).json()["items"][0]
    outside = (
        await client.get(
            f"/v1/customers/{customer['id']}/purchases", params={"as_of": "2027-01-15"}, headers=AGENT
        )
    ).json()["items"][0]
    assert (inside["in_warranty"], outside["in_warranty"]) == (True, False)


async def test_contact_from_unknown_number_creates_a_profile_and_classifies(
    client: httpx.AsyncClient, platform: Platform
) -> None:
    body = contact_body(
        kind=None, customer={"phone": "186 0000 1111"}, subject="紧急:热水器漏水", body="热水器故障,一直漏水"
    )
    first = (await client.post("/v1/contacts", json=body, headers=AGENT)).json()
    assert (first["kind"], first["priority"]) == ("repair", "urgent")
    assert first["customer"]["display_name"] == "客户 186****1111"
    again = contact_body(customer={"phone": "+8618600001111", "name": "赵敏"}, kind="inquiry")
    second = (await client.post("/v1/contacts", json=again, headers=AGENT)).json()
    assert second["customer"]["id"] == first["customer"]["id"]
    history = (await client.get(f"/v1/customers/{first['customer']['id']}/contacts", headers=AGENT)).json()
    assert [c["id"] for c in history["items"]] == [second["id"], first["id"]]
    assert len(await events(platform, "intake.customer.created.v1")) == 1


async def test_serial_links_the_purchase_and_the_event_carries_warranty_and_verification(
    client: httpx.AsyncClient, platform: Platform
) -> None:
    customer = await create(client)
    await client.post(
        f"/v1/customers/{customer['id']}/purchases",
        headers=AGENT,
        json={
            "product": "冰箱",
            "model": "BCD-500",
            "serial": "FRIDGE-9",
            "purchased_at": "2026-03-01",
            "order_id": "ORD-77",
        },
    )
    body = contact_body(
        customer={"id": customer["id"]},
        product_serial="FRIDGE-9",
        verification={"method": "order_number", "reference": "ORD-77"},
        received_at="2026-11-20T08:00:00Z",
    )
    contact = (await client.post("/v1/contacts", json=body, headers=AGENT)).json()
    assert contact["verification"] == {"method": "order_number", "verified": True, "note": None}
    assert contact["purchase_id"] is not None
    assert contact["priority"] == "high"  # a VIP is never below high
    received = (await events(platform, "intake.contact.received.v1"))[-1]
    assert received["product"]["model"] == "BCD-500"
    assert received["product"]["in_warranty"] is True
    assert received["verification"] == {"method": "order_number", "verified": True}
    assert "phone" not in json.dumps(received["customer"])

    wrong = contact_body(
        customer={"id": customer["id"]}, verification={"method": "order_number", "reference": "X"}
    )
    refused = (await client.post("/v1/contacts", json=wrong, headers=AGENT)).json()
    assert refused["verification"]["verified"] is False
    assert refused["verification"]["note"] == "no purchase with that order number"


async def test_merge_moves_history_and_the_duplicate_points_to_the_winner(
    client: httpx.AsyncClient, platform: Platform
) -> None:
    winner = await create(client)
    duplicate = await create(
        client,
        name="李娜 (重复)",
        phones=["13800138000"],
        emails=["lina@163.com"],
        id_numbers=[],
        external_ids=[],
        tags=["重复"],
    )
    await client.post("/v1/contacts", json=contact_body(customer={"phone": "13800138000"}), headers=AGENT)
    await client.post(
        f"/v1/customers/{duplicate['id']}/purchases",
        headers=AGENT,
        json={"product": "空调", "model": "KFR-35", "serial": "AC-1", "purchased_at": "2026-06-01"},
    )

    merged = await client.post(
        f"/v1/customers/{winner['id']}/merge", json={"duplicate_id": duplicate["id"]}, headers=AGENT
    )
    assert merged.status_code == 200, merged.text
    assert sorted(merged.json()["phones"]) == ["138****8000", "139****5678"]
    assert "重复" in merged.json()["tags"]
    loser = (await client.get(f"/v1/customers/{duplicate['id']}", headers=AGENT)).json()
    assert loser["merged_into"] == winner["id"]
    history = (await client.get(f"/v1/customers/{winner['id']}/contacts", headers=AGENT)).json()["items"]
    assert len(history) == 1
    purchases = (await client.get(f"/v1/customers/{winner['id']}/purchases", headers=AGENT)).json()["items"]
    assert [p["serial"] for p in purchases] == ["AC-1"]
    # A new contact from the duplicate's number reaches the winner.
    later = (
        await client.post(
            "/v1/contacts", json=contact_body(customer={"phone": "138 0013 8000"}), headers=AGENT
        )
    ).json()
    assert later["customer"]["id"] == winner["id"]
    assert (await events(platform, "intake.customer.merged.v1"))[0]["loser_id"] == duplicate["id"]
    again = await client.post(
        f"/v1/customers/{winner['id']}/merge", json={"duplicate_id": duplicate["id"]}, headers=AGENT
    )
    assert again.status_code == 409
    listed = (await client.get("/v1/customers", headers=AGENT)).json()["items"]
    assert [c["id"] for c in listed] == [winner["id"]]


async def test_classification_rules_are_data_only_supervisors_change(client: httpx.AsyncClient) -> None:
    rules = (await client.get("/v1/contacts/classification-rules", headers=AGENT)).json()["rules"]
    assert any("投诉" in r["keywords"] for r in rules)
    new_rules = {"rules": [{"target": "kind", "value": "repair", "keywords": ["滴水"]}]}
    assert (
        await client.put("/v1/contacts/classification-rules", json=new_rules, headers=AGENT)
    ).status_code == 403
    bad = {"rules": [{"target": "kind", "value": "gossip", "keywords": ["x"]}]}
    assert (
        await client.put("/v1/contacts/classification-rules", json=bad, headers=SUPERVISOR)
    ).status_code == 422
    assert (
        await client.put("/v1/contacts/classification-rules", json=new_rules, headers=SUPERVISOR)
    ).status_code == 200
    contact = (
        await client.post(
            "/v1/contacts",
            json=contact_body(kind=None, subject="空调滴水", body="客厅空调滴水"),
            headers=AGENT,
        )
    ).json()
    assert contact["kind"] == "repair"


async def test_invalid_customer_input_writes_nothing(client: httpx.AsyncClient, platform: Platform) -> None:
    for bad in (
        profile(phones=["123"]),
        profile(emails=["nope"]),
        profile(tier="gold"),
        profile(name=""),
        profile(id_numbers=["123"]),
    ):
        response = await client.post("/v1/customers", json=bad, headers=AGENT)
        assert response.status_code == 422, bad
        assert response.headers["content-type"] == "application/problem+json"
    assert (await client.get("/v1/customers", headers=AGENT)).json()["items"] == []
    assert await events(platform, "intake.customer.created.v1") == []
