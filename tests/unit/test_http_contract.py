"""The HTTP contract every service keeps: problem errors, nothing half-written, idempotency, auth, paging."""

from __future__ import annotations

import json

import httpx
import pytest
import sqlalchemy as sa
from asyncpg.exceptions import AdminShutdownError, TooManyConnectionsError
from fastapi import FastAPI
from sqlalchemy.exc import DBAPIError

from services.intake.models import Contact, Customer
from services.platform import Platform
from shared.errors import install_problem_handlers
from shared.outbox import outbox_table
from tests.conftest import AGENT, bearer, contact_body


async def counts(platform: Platform) -> tuple[int, int, int]:
    async with platform.runtimes["intake"].db.transaction() as session:
        contacts = (await session.execute(sa.select(sa.func.count()).select_from(Contact))).scalar_one()
        customers = (await session.execute(sa.select(sa.func.count()).select_from(Customer))).scalar_one()
        events = (await session.execute(sa.select(sa.func.count()).select_from(outbox_table))).scalar_one()
    return contacts, customers, events


def problem(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status
    assert body["title"]
    assert "Traceback" not in response.text
    return body


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({k: v for k, v in contact_body().items() if k != "subject"}, "subject"),
        (contact_body(channel="carrier_pigeon"), "channel"),
        (contact_body(customer={"name": "王芳"}), "customer"),
        (contact_body(customer={"name": "王芳", "phone": "12345"}), "phone"),
        (contact_body(customer={"name": "王芳", "email": "not-an-email"}), "email"),
        (contact_body(subject=["not", "a", "string"]), "subject"),
        (contact_body(kind="rant"), "kind"),
        (contact_body(unexpected="field"), "unexpected"),
    ],
)
async def test_invalid_contact_is_422_with_the_field_and_nothing_written(
    client: httpx.AsyncClient, platform: Platform, payload: dict, field: str
) -> None:
    body = problem(await client.post("/v1/contacts", json=payload, headers=AGENT), 422)
    assert any(field in [str(p) for p in issue["loc"]] for issue in body["errors"]), body["errors"]
    assert await counts(platform) == (0, 0, 0)


async def test_malformed_json_is_400(client: httpx.AsyncClient, platform: Platform) -> None:
    response = await client.post(
        "/v1/contacts", content=b'{"channel": "phone",', headers={**AGENT, "content-type": "application/json"}
    )
    assert problem(response, 400)["title"] == "Malformed JSON"
    assert await counts(platform) == (0, 0, 0)


async def test_one_megabyte_body_is_413_and_nothing_written(
    client: httpx.AsyncClient, platform: Platform
) -> None:
    huge = contact_body(body="漏" * 400_000)  # 1.2 MB of UTF-8
    response = await client.post(
        "/v1/contacts",
        content=json.dumps(huge, ensure_ascii=False).encode(),
        headers={**AGENT, "content-type": "application/json"},
    )
    problem(response, 413)
    assert await counts(platform) == (0, 0, 0)


async def test_no_credentials_is_401_and_wrong_role_is_403(
    client: httpx.AsyncClient, platform: Platform
) -> None:
    unauthenticated = await client.post("/v1/contacts", json=contact_body())
    problem(unauthenticated, 401)
    assert unauthenticated.headers["www-authenticate"].startswith("Bearer")
    problem(await client.post("/v1/contacts", json=contact_body(), headers=bearer("media_planner")), 403)
    assert await counts(platform) == (0, 0, 0)


async def test_idempotency_key_replays_the_first_response(
    client: httpx.AsyncClient, platform: Platform
) -> None:
    headers = {**AGENT, "Idempotency-Key": "order-778899"}
    first = await client.post("/v1/contacts", json=contact_body(), headers=headers)
    again = await client.post("/v1/contacts", json=contact_body(), headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert (await counts(platform))[0] == 1
    different = await client.post("/v1/contacts", json=contact_body(subject="另一件事"), headers=headers)
    problem(different, 422)
    assert (await counts(platform))[0] == 1


async def test_unknown_id_is_404_problem(client: httpx.AsyncClient) -> None:
    body = problem(await client.get("/v1/contacts/01a205f0-9d33-7e4a-946b-ee7f2b2ce42d", headers=AGENT), 404)
    assert "does not exist" in body["detail"]
    problem(await client.get("/v1/contacts/not-a-uuid", headers=AGENT), 422)


async def test_pages_walk_every_item_once(client: httpx.AsyncClient) -> None:
    for n in range(5):
        await client.post("/v1/contacts", json=contact_body(subject=f"第{n}次来电"), headers=AGENT)
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/v1/contacts", params=params, headers=AGENT)).json()
        seen += [item["subject"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"第{n}次来电" for n in reversed(range(5))]
    problem(await client.get("/v1/contacts", params={"cursor": "%%%garbage"}, headers=AGENT), 400)
    problem(await client.get("/v1/contacts", params={"limit": 201}, headers=AGENT), 422)


def _unreachable(reason: BaseException) -> DBAPIError:
    try:
        raise reason
    except BaseException as cause:
        return DBAPIError("SELECT 1", {}, cause, connection_invalidated=False)


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (_unreachable(ConnectionRefusedError(111, "Connection refused")), 503),
        (_unreachable(TooManyConnectionsError("sorry, too many clients already")), 503),
        (_unreachable(AdminShutdownError("terminating connection due to administrator command")), 503),
        (DBAPIError("SELECT 1", {}, Exception("closed"), connection_invalidated=True), 503),
        (_unreachable(ValueError("invalid input syntax for type uuid")), 500),
        # SQLAlchemy re-raises a socket error met while opening a connection unwrapped.
        (ConnectionResetError(104, "Connection reset by peer"), 503),
    ],
)
async def test_database_outage_is_503_with_retry_after_and_a_bad_statement_is_500(
    error: Exception, status: int
) -> None:
    app = FastAPI()
    install_problem_handlers(app)

    @app.get("/fails")
    async def fails() -> None:
        raise error

    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, raise_app_exceptions=False), base_url="http://kefu"
    ) as http:
        response = await http.get("/fails")
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    assert (response.headers.get("retry-after") == "1") is (status == 503)
