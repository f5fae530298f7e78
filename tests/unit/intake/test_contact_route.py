"""POST /v1/contacts answers well-formed requests without FastAPI's dependency solving: the same answers."""

from __future__ import annotations

import json
from typing import Any

import httpx
import sqlalchemy as sa

from services.intake.models import Contact
from services.platform import Platform
from shared.auth import ApiKey, hash_api_key
from shared.outbox import outbox_table
from tests.conftest import AGENT, bearer, contact_body

VOLATILE = {"id", "received_at", "created_at"}


def _declared_route_only(platform: Platform) -> None:
    """Any dependency override sends every request through the declared route and its dependencies."""

    def unused() -> None:  # pragma: no cover - never called, only present
        return None

    platform.apps["intake"].dependency_overrides[unused] = unused


def _stable(body: dict[str, Any]) -> dict[str, Any]:
    stable = {k: v for k, v in body.items() if k not in VOLATILE}
    stable["customer"] = {k: v for k, v in body["customer"].items() if k != "id"}
    return stable


async def _contacts_and_events(platform: Platform) -> tuple[int, list[dict[str, Any]]]:
    async with platform.runtimes["intake"].db.transaction() as session:
        count = (await session.execute(sa.select(sa.func.count()).select_from(Contact))).scalar_one()
        payloads = (
            await session.execute(
                sa.select(outbox_table.c.payload)
                .where(outbox_table.c.type == "intake.contact.received.v1")
                .order_by(outbox_table.c.seq)
            )
        ).scalars()
        return count, [json.loads(p) for p in payloads]


async def test_direct_and_declared_answers_are_the_same(
    client: httpx.AsyncClient, platform: Platform
) -> None:
    direct = await client.post("/v1/contacts", json=contact_body(), headers=AGENT)
    _declared_route_only(platform)
    declared = await client.post("/v1/contacts", json=contact_body(), headers=AGENT)

    assert direct.status_code == declared.status_code == 201
    assert direct.headers["content-type"] == declared.headers["content-type"] == "application/json"
    assert sorted(direct.headers) == sorted(declared.headers)
    assert _stable(direct.json()) == _stable(declared.json())
    assert direct.json()["customer"]["id"] == declared.json()["customer"]["id"]  # found, not created twice
    count, events = await _contacts_and_events(platform)
    assert count == 2
    assert [e["data"]["contact_id"] for e in events] == [direct.json()["id"], declared.json()["id"]]
    assert {e["type"] for e in events} == {"intake.contact.received.v1"}


async def test_idempotent_replay_and_key_reuse(client: httpx.AsyncClient, platform: Platform) -> None:
    headers = {**AGENT, "Idempotency-Key": "call-42"}
    first = await client.post("/v1/contacts", json=contact_body(), headers=headers)
    again = await client.post("/v1/contacts", json=contact_body(), headers=headers)
    other = await client.post("/v1/contacts", json=contact_body(subject="另一件事"), headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert other.status_code == 422
    assert other.json()["type"].endswith("/idempotency-key-reused")
    assert (await _contacts_and_events(platform))[0] == 1


async def test_refusals_come_from_the_declared_route_and_write_nothing(
    client: httpx.AsyncClient, platform: Platform
) -> None:
    engineer = bearer("engineer")  # may read contacts, not write them
    cases = [
        ({}, contact_body(), 401),
        ({"Authorization": "Bearer not-a-token"}, contact_body(), 401),
        (engineer, contact_body(), 403),
        (AGENT, contact_body(channel="pigeon"), 422),
        (AGENT, contact_body(customer={"name": "无号码"}), 422),
        ({**AGENT, "Idempotency-Key": "k" * 201}, contact_body(), 422),
    ]
    for headers, body, status in cases:
        response = await client.post("/v1/contacts", json=body, headers=headers)
        assert response.status_code == status, (headers, body, response.text)
        assert response.headers["content-type"] == "application/problem+json"
    malformed = await client.post(
        "/v1/contacts", content=b'{"channel": "phone",', headers={**AGENT, "Content-Type": "application/json"}
    )
    assert malformed.status_code == 400
    assert malformed.json()["type"].endswith("/malformed-json")
    assert await _contacts_and_events(platform) == (0, [])


async def test_partner_systems_record_contacts_with_an_api_key(
    client: httpx.AsyncClient, platform: Platform
) -> None:
    key = "partner-secret-key"
    authenticator = platform.runtimes["intake"].authenticator

    authenticator.api_keys[hash_api_key(key)] = ApiKey("crm", hash_api_key(key), ("partner",))
    recorded = await client.post("/v1/contacts", json=contact_body(), headers={"X-API-Key": key})
    assert recorded.status_code == 201, recorded.text
    refused = await client.post("/v1/contacts", json=contact_body(), headers={"X-API-Key": "wrong"})
    assert refused.status_code == 401
    assert (await _contacts_and_events(platform))[0] == 1
