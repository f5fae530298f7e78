"""POST /v1/contacts on PostgreSQL: a known caller's contact is written in one statement on the driver's
connection, and it must be the same contact, event and answer as the general path would give."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from services.intake import known_caller
from services.intake.models import Contact, CustomerIdentifier
from shared.outbox import outbox_table
from tests.conftest import ADMIN, AGENT, bearer, contact_body
from tests.integration.conftest import Cluster

SUPERVISOR = bearer("supervisor", sub="wang.sup")
VOLATILE = {"id", "received_at", "created_at"}


@pytest.fixture
async def cluster(start_cluster: Any) -> Cluster:
    cluster: Cluster = await start_cluster()
    return cluster


@contextmanager
def paths_taken() -> Iterator[list[bool]]:
    """Which requests the known-caller path answered (True) or passed to the general path (False)."""
    taken: list[bool] = []
    original = known_caller.record

    async def spy(*args: Any, **kwargs: Any) -> Any:
        answer = await original(*args, **kwargs)
        taken.append(answer is not None)
        return answer

    known_caller.record = spy  # type: ignore[assignment]
    try:
        yield taken
    finally:
        known_caller.record = original  # type: ignore[assignment]


def declared_route_only(cluster: Cluster) -> None:
    """Any dependency override sends every request through the declared route and the general path."""

    def unused() -> None:  # pragma: no cover - never called, only present
        return None

    cluster.apps["intake"].dependency_overrides[unused] = unused


async def customer(client: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    response = await client.post("/v1/customers", json=body, headers=ADMIN)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def stored(cluster: Cluster, contact_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The contact's row and its event's data, as other readers see them."""
    async with cluster.runtime("intake").db.transaction() as session:
        row = (await session.execute(sa.select(Contact).where(Contact.id == contact_id))).scalar_one()
        payloads = (
            await session.execute(
                sa.select(outbox_table.c.payload).where(outbox_table.c.type == "intake.contact.received.v1")
            )
        ).scalars()
        events = [json.loads(p) for p in payloads]
    [event] = [e for e in events if e["data"]["contact_id"] == contact_id]
    columns = {c: getattr(row, c) for c in Contact.model_fields if c not in VOLATILE}
    return columns, event["data"]


def stable(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k not in VOLATILE}


CASES = [
    contact_body(customer={"phone": "+86 139 1234 5678"}),
    contact_body(customer={"phone": "13912345678", "name": "别名"}, kind=None, subject="紧急:冰箱冒烟"),
    contact_body(
        customer={"email": "Li.Na@Example.com"},
        verification={"method": "email_reply"},
        attachments=[{"filename": "照片.jpg", "content_type": "image/jpeg", "size_bytes": 2048}],
    ),
    contact_body(
        customer={"phone": "139-1234-5678", "email": "li.na@example.com"},
        verification={"method": "caller_number"},
        received_at="2026-11-20T08:30:00+08:00",
        channel="email",
        priority="low",
    ),
    contact_body(customer={"email": "li.na@example.com"}, verification={"method": "caller_number"}),
]


async def test_a_known_callers_contact_is_the_same_on_both_paths(cluster: Cluster) -> None:
    client = cluster.clients["intake"]
    vip = await customer(
        client, name="李娜", phones=["13912345678"], emails=["li.na@example.com"], tier="vip"
    )

    with paths_taken() as taken:
        direct = [await client.post("/v1/contacts", json=body, headers=AGENT) for body in CASES]
    assert taken == [True] * len(CASES)
    declared_route_only(cluster)
    general = [await client.post("/v1/contacts", json=body, headers=AGENT) for body in CASES]

    for body, one, other in zip(CASES, direct, general, strict=True):
        assert one.status_code == other.status_code == 201, (body, one.text, other.text)
        assert stable(one.json()) == stable(other.json()), body
        assert one.json()["customer"] == {"id": vip["id"], "display_name": "李娜", "tier": "vip"}
        one_row, one_event = await stored(cluster, one.json()["id"])
        other_row, other_event = await stored(cluster, other.json()["id"])
        assert one_row == other_row, body
        assert {k: v for k, v in one_event.items() if k not in {"contact_id", "received_at"}} == {
            k: v for k, v in other_event.items() if k not in {"contact_id", "received_at"}
        }, body
        assert one_event["received_at"] == one.json()["received_at"].replace("+00:00", "Z")
    assert direct[3].json()["received_at"] == general[3].json()["received_at"]
    assert datetime.fromisoformat(direct[3].json()["received_at"]) == datetime(
        2026, 11, 20, 0, 30, tzinfo=UTC
    )
    assert direct[1].json()["priority"] == "urgent"  # classified by the rules
    assert direct[0].json()["priority"] == "high"  # a VIP is at least high
    assert direct[4].json()["verification"] == {
        "method": "caller_number",
        "verified": False,
        "note": "the caller's number is not on the profile",
    }


async def test_anything_new_about_the_caller_takes_the_general_path(cluster: Cluster) -> None:
    client = cluster.clients["intake"]
    known = await customer(client, name="王芳", phones=["13800138000"])
    other = await customer(client, name="赵强", phones=["13700137000"])
    cases = [
        contact_body(customer={"phone": "13600136000"}),  # nobody's number: a new profile
        contact_body(customer={"phone": "13800138000", "email": "wang@example.com"}),  # learns an address
        contact_body(customer={"phone": "13800138000", "email": "wang@example.com"}),  # now all known
        contact_body(customer={"phone": "13800138000"}, product_serial="SN-1"),
        contact_body(customer={"id": known["id"]}),
        contact_body(customer={"phone": "13800138000"}, verification={"method": "id_check"}),
    ]
    with paths_taken() as taken:
        answers = [await client.post("/v1/contacts", json=body, headers=AGENT) for body in cases]
    assert [a.status_code for a in answers] == [201] * len(cases), [a.text for a in answers]
    assert taken == [False, False, True, False, False, False]
    assert answers[0].json()["customer"]["id"] not in {known["id"], other["id"]}
    assert {a.json()["customer"]["id"] for a in answers[1:]} == {known["id"]}
    async with cluster.runtime("intake").db.transaction() as session:
        learnt = (
            await session.execute(
                sa.select(CustomerIdentifier.customer_id).where(
                    CustomerIdentifier.value == "wang@example.com"
                )
            )
        ).scalar_one()
    assert str(learnt) == known["id"]

    # A number on two profiles at once (both given) is not a known caller either.
    mixed = contact_body(customer={"phone": "13700137000", "email": "wang@example.com"})
    with paths_taken() as taken:
        answer = await client.post("/v1/contacts", json=mixed, headers=AGENT)
    assert taken == [False] and answer.status_code == 201

    # After a merge, the duplicate's number is the winner's.
    merged = await client.post(
        f"/v1/customers/{known['id']}/merge", json={"duplicate_id": other["id"]}, headers=SUPERVISOR
    )
    assert merged.status_code == 200, merged.text
    answer = await client.post(
        "/v1/contacts", json=contact_body(customer={"phone": "13700137000"}), headers=AGENT
    )
    assert answer.status_code == 201 and answer.json()["customer"]["id"] == known["id"]


async def test_idempotency_keys_hold_on_the_known_caller_path(cluster: Cluster) -> None:
    client = cluster.clients["intake"]
    await customer(client, name="陈静", phones=["13500135000"])
    body = contact_body(customer={"phone": "13500135000"})
    headers = {**AGENT, "Idempotency-Key": "call-7"}

    with paths_taken() as taken:
        first = await client.post("/v1/contacts", json=body, headers=headers)
        again = await client.post("/v1/contacts", json=body, headers=headers)
        reused = await client.post("/v1/contacts", json={**body, "subject": "别的事"}, headers=headers)
    assert taken == [True, False, False]  # a key seen before is the general path's to answer
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
    assert reused.status_code == 422

    # Ten at once with one new key: one contact, every answer either it or "in flight".
    racing = {**AGENT, "Idempotency-Key": "call-8"}
    answers = await asyncio.gather(
        *(client.post("/v1/contacts", json=body, headers=racing) for _ in range(10))
    )
    assert {a.status_code for a in answers} <= {201, 409}
    assert len({a.json()["id"] for a in answers if a.status_code == 201}) == 1
    in_flight = [a for a in answers if a.status_code == 409]
    assert all(a.json()["type"].endswith("/idempotency-key-in-flight") for a in in_flight)
    async with cluster.runtime("intake").db.transaction() as session:
        contacts = (await session.execute(sa.select(sa.func.count()).select_from(Contact))).scalar_one()
        events = (
            await session.execute(
                sa.select(sa.func.count())
                .select_from(outbox_table)
                .where(outbox_table.c.type == "intake.contact.received.v1")
            )
        ).scalar_one()
    assert contacts == events == 2
