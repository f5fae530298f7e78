"""The embedded platform: the contact → ticket → metrics path, health, and one OpenAPI document."""

from __future__ import annotations

import httpx

from services.catalogue import SERVICES
from services.platform import Platform
from tests.conftest import AGENT, bearer, contact_body, eventually


async def test_contact_opens_one_ticket_and_analytics_counts_it(client: httpx.AsyncClient) -> None:
    created = await client.post("/v1/contacts", json=contact_body(), headers=AGENT)
    assert created.status_code == 201, created.text
    contact = created.json()
    assert contact["customer"]["display_name"] == "张伟"

    async def ticket() -> dict | None:
        page = (await client.get("/v1/tickets", params={"contact_id": contact["id"]}, headers=AGENT)).json()
        return page["items"][0] if page["items"] else None

    opened = await eventually(ticket)
    assert opened["kind"] == "repair"
    assert opened["customer_id"] == contact["customer"]["id"]
    assert opened["status"] == "new"

    async def counted_once() -> bool:
        overview = (await client.get("/v1/metrics/overview", headers=bearer("analyst"))).json()
        return bool(overview["tickets_created"] == 1)

    await eventually(counted_once)


async def test_feedback_is_recorded_but_opens_no_ticket(
    client: httpx.AsyncClient, platform: Platform
) -> None:
    feedback = (await client.post("/v1/contacts", json=contact_body(kind="feedback"), headers=AGENT)).json()
    repair = (await client.post("/v1/contacts", json=contact_body(kind="repair"), headers=AGENT)).json()

    async def repair_ticket() -> list:
        return (await client.get("/v1/tickets", params={"contact_id": repair["id"]}, headers=AGENT)).json()[
            "items"
        ]

    await eventually(repair_ticket)  # events are handled in order of arrival, so feedback's is done too
    tickets = (await client.get("/v1/tickets", params={"contact_id": feedback["id"]}, headers=AGENT)).json()
    assert tickets["items"] == []


async def test_the_same_phone_in_another_format_is_the_same_customer(client: httpx.AsyncClient) -> None:
    first = (await client.post("/v1/contacts", json=contact_body(), headers=AGENT)).json()
    again = contact_body(customer={"name": "张伟", "phone": "+86 138 0013 8000"})
    second = (await client.post("/v1/contacts", json=again, headers=AGENT)).json()
    assert second["customer"]["id"] == first["customer"]["id"]


async def test_health_readiness_and_metrics(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json()["status"] == "ok"
    ready = (await client.get("/readyz")).json()
    assert ready["checks"] == {name: "ok" for name in SERVICES}
    await client.post("/v1/contacts", json=contact_body(), headers=AGENT)
    metrics = (await client.get("/metrics")).text
    assert (
        'kefu_http_requests_total{method="POST",route="/v1/contacts",service="intake",status="201"}'
        in metrics
    )
    assert "kefu_outbox_pending" in metrics


async def test_one_openapi_document_covers_all_four_services(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    for path in ("/v1/contacts", "/v1/tickets", "/v1/clients", "/v1/metrics/overview"):
        assert path in spec["paths"], path
    assert {t["name"] for t in spec["tags"]} >= set(SERVICES)
    assert (await client.get("/docs")).status_code == 200


async def test_correlation_id_is_echoed(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/tickets", headers={**AGENT, "X-Correlation-ID": "trace-42"})
    assert response.headers["x-correlation-id"] == "trace-42"


async def test_unknown_path_is_a_problem_document(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/nowhere")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
