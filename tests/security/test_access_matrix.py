"""Who may call what: every route of every service × every kind of caller → 2xx, 401 or 403.

The expected permission of each route is written down here, independently of the code that enforces it;
routes are enumerated from the apps, so a new route without an entry below fails the test until someone
decides who may call it. A 404, 409, 410 or 422 means the caller got past authentication and
authorisation ("allowed"): requests carry no real ids and no valid bodies, so nothing is changed.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
import warnings
from datetime import timedelta
from typing import Any

import httpx
import jwt
import pytest
import sqlalchemy as sa
from fastapi.routing import iter_route_contexts

from services.catalogue import SERVICES
from shared.app import create_service_app
from shared.auth import ROLE_PERMISSIONS, ROLES, hash_api_key, issue_token
from shared.outbox import outbox_table
from shared.settings import ServiceSettings
from tests.conftest import ADMIN, SECRET, bearer, eventually
from tests.integration.conftest import Cluster
from tests.security.conftest import API_KEY, MODULE_LOOP, REVOKED_API_KEY

pytestmark = MODULE_LOOP

PUBLIC = "public"  # no credentials needed
SURVEY = "survey token"  # the token in the path is the credential

# METHOD path → the permission it needs. Keep in step with DESIGN.md's roles and shared/auth.py's table.
EXPECTED: dict[str, str] = {
    # every service's own operations
    "GET /healthz": PUBLIC,
    "GET /readyz": PUBLIC,
    "GET /metrics": PUBLIC,
    "GET /openapi.json": PUBLIC,
    "GET /docs": PUBLIC,
    "GET /docs/oauth2-redirect": PUBLIC,
    "GET /redoc": PUBLIC,
    # intake
    "POST /v1/customers": "customers:write",
    "GET /v1/customers": "customers:read",
    "GET /v1/customers/audit-log": "audit:read",
    "GET /v1/customers/{customer_id}": "customers:read",
    "PATCH /v1/customers/{customer_id}": "customers:write",
    "POST /v1/customers/{customer_id}/merge": "customers:write",
    "GET /v1/customers/{customer_id}/purchases": "customers:read",
    "POST /v1/customers/{customer_id}/purchases": "customers:write",
    "GET /v1/customers/{customer_id}/contacts": "contacts:read",
    "POST /v1/contacts": "contacts:write",
    "GET /v1/contacts": "contacts:read",
    "GET /v1/contacts/{contact_id}": "contacts:read",
    "GET /v1/contacts/classification-rules": "contacts:read",
    "PUT /v1/contacts/classification-rules": "classification:write",
    # tickets
    "POST /v1/tickets": "tickets:write",
    "GET /v1/tickets": "tickets:read",
    "GET /v1/tickets/{ticket_id}": "tickets:read",
    "GET /v1/tickets/{ticket_id}/history": "tickets:read",
    "GET /v1/tickets/{ticket_id}/sla": "tickets:read",
    **{
        f"POST /v1/tickets/{{ticket_id}}/{action}": "tickets:write"
        for action in (
            "assign",
            "reply",
            "note",
            "update",
            "start-work",
            "wait-on-customer",
            "customer-replied",
            "escalate",
            "quote",
            "accept-quote",
            "decline-quote",
            "dispatch",
            "resolve",
            "close",
            "reopen",
            "follow-up",
        )
    },
    "GET /v1/sla-policies": "tickets:read",
    "POST /v1/sla-policies": "sla:write",
    "GET /v1/sla-policies/{policy_id}": "tickets:read",
    "PUT /v1/sla-policies/{policy_id}": "sla:write",
    "GET /v1/calendars": "tickets:read",
    "POST /v1/calendars": "sla:write",
    "GET /v1/calendars/{calendar_id}": "tickets:read",
    # briefs
    "POST /v1/clients": "clients:write",
    "GET /v1/clients": "clients:read",
    "GET /v1/clients/{client_id}": "clients:read",
    "PATCH /v1/clients/{client_id}": "clients:write",
    "GET /v1/clients/{client_id}/dossier": "clients:read",
    "PUT /v1/clients/{client_id}/dossier/{heading}": "clients:write",
    "GET /v1/clients/{client_id}/dossier/{heading}/versions": "clients:read",
    "GET /v1/clients/{client_id}/milestones": "briefs:read",
    "GET /v1/clients/{client_id}/reconciliation": "estimates:read",
    "GET /v1/clients/{client_id}/status-report": "clients:read",
    "GET /v1/briefs/sign-off-rules": "briefs:read",
    "PUT /v1/briefs/sign-off-rules/{brief_type}": "briefs:approve",
    "POST /v1/briefs/milestones": "briefs:write",
    "GET /v1/briefs/milestones": "briefs:read",
    "GET /v1/briefs/milestones/{milestone_id}": "briefs:read",
    "PATCH /v1/briefs/milestones/{milestone_id}": "briefs:write",
    "POST /v1/briefs/milestones/{milestone_id}/deliver": "briefs:write",
    "POST /v1/briefs": "briefs:write",
    "GET /v1/briefs": "briefs:read",
    "GET /v1/briefs/{brief_id}": "briefs:read",
    "PATCH /v1/briefs/{brief_id}": "briefs:write",
    "GET /v1/briefs/{brief_id}/versions": "briefs:read",
    "GET /v1/briefs/{brief_id}/sign-offs": "briefs:read",
    "POST /v1/briefs/{brief_id}/submit": "briefs:write",
    "POST /v1/briefs/{brief_id}/withdraw": "briefs:write",
    # Signing is open to every reader of briefs: whether *this* signer's role is one the brief type
    # requires is checked against the sign-off rules inside (403 there, with the role named).
    "POST /v1/briefs/{brief_id}/sign": "briefs:read",
    "POST /v1/briefs/{brief_id}/return": "briefs:read",
    "POST /v1/briefs/{brief_id}/book": "briefs:write",
    "POST /v1/proposals": "proposals:write",
    "GET /v1/proposals": "proposals:read",
    "GET /v1/proposals/{proposal_id}": "proposals:read",
    "POST /v1/proposals/{proposal_id}/present": "proposals:write",
    "POST /v1/proposals/{proposal_id}/decide": "proposals:write",
    "POST /v1/estimates": "estimates:write",
    "GET /v1/estimates": "estimates:read",
    "GET /v1/estimates/{estimate_id}": "estimates:read",
    "PATCH /v1/estimates/{estimate_id}": "estimates:write",
    "POST /v1/estimates/{estimate_id}/send": "estimates:write",
    "POST /v1/estimates/{estimate_id}/confirm": "estimates:write",
    "POST /v1/estimates/{estimate_id}/decline": "estimates:write",
    "POST /v1/estimates/{estimate_id}/actuals": "estimates:write",
    "GET /v1/estimates/{estimate_id}/actuals": "estimates:read",
    "POST /v1/meetings": "meetings:write",
    "GET /v1/meetings": "meetings:read",
    "GET /v1/meetings/{meeting_id}": "meetings:read",
    "POST /v1/meetings/{meeting_id}/client-response": "meetings:write",
    # analytics
    "GET /v1/metrics/overview": "metrics:read",
    "GET /v1/metrics/tickets": "metrics:read",
    "GET /v1/metrics/satisfaction": "metrics:read",
    "GET /v1/metrics/briefs": "metrics:read",
    "GET /v1/surveys/{token}": SURVEY,
    "POST /v1/surveys/{token}/responses": SURVEY,
    "GET /v1/sla/breaches": "sla:read",
    "GET /v1/sla/breaches/stream": "sla:read",
    "POST /v1/webhooks": "webhooks:write",
    "GET /v1/webhooks": "webhooks:write",
    "GET /v1/webhooks/{webhook_id}": "webhooks:write",
    "DELETE /v1/webhooks/{webhook_id}": "webhooks:write",
    "GET /v1/webhooks/{webhook_id}/deliveries": "webhooks:write",
}

# Who calls: nobody, an authenticated caller without a known role, every role, and another system's key.
CALLERS: dict[str, tuple[dict[str, str], frozenset[str] | None]] = {
    "no credentials": ({}, None),
    "token without roles": (bearer(sub="nobody"), frozenset()),
    **{f"role {role}": (bearer(role, sub=f"u-{role}"), ROLE_PERMISSIONS[role]) for role in ROLES},
    "api key (partner)": ({"X-API-Key": API_KEY}, ROLE_PERMISSIONS["partner"]),
}


def routes() -> dict[str, str]:
    """`METHOD path` → service, for every route every service app serves."""
    found: dict[str, str] = {}
    for name, entry in SERVICES.items():
        app = create_service_app(entry.definition)
        for route in iter_route_contexts(app.routes):
            for method in sorted(getattr(route, "methods", None) or ()):
                if method != "HEAD":
                    found.setdefault(f"{method} {route.path}", name)
    return found


def concrete(path: str) -> str:
    """The path with placeholder values: well-formed ids of nothing that exists."""
    values = {"heading": "brand", "brief_type": "creative", "token": "x" * 43}
    return re.sub(r"\{(\w+)\}", lambda m: values.get(m.group(1), str(uuid.uuid4())), path)


def outcome(status: int) -> str:
    return {401: "401", 403: "403"}.get(status, "allowed" if status < 500 else f"error {status}")


def expected(permission: str, granted: frozenset[str] | None) -> str:
    if permission in (PUBLIC, SURVEY):
        return "allowed"
    if granted is None:
        return "401"
    return "allowed" if permission in granted else "403"


async def test_every_route_has_an_expected_permission() -> None:
    served = routes()
    assert sorted(set(served) - set(EXPECTED)) == [], "routes without an entry in EXPECTED"
    assert sorted(set(EXPECTED) - set(served)) == [], "entries in EXPECTED for routes that do not exist"


async def test_every_route_answers_every_caller_as_expected(api: httpx.AsyncClient) -> None:
    mismatches = []
    for route in sorted(routes()):
        method, path = route.split(" ", 1)
        for caller, (headers, granted) in CALLERS.items():
            request_headers = dict(headers)
            if path.endswith("/stream"):
                # A live stream would never end here; a bad resume id ends it right after the auth checks.
                request_headers["Last-Event-ID"] = "not-a-feed-id"
            response = await api.request(
                method,
                concrete(path),
                headers=request_headers,
                json={} if method in ("POST", "PUT", "PATCH") else None,
            )
            want, got = expected(EXPECTED[route], granted), outcome(response.status_code)
            if want != got:
                mismatches.append(f"{route} as {caller}: expected {want}, got {response.status_code}")
            if got in ("401", "403"):
                assert response.headers["content-type"] == "application/problem+json", route
    assert not mismatches, "\n".join(mismatches)


def unsigned(claims: dict[str, Any]) -> str:
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


def hs512_token() -> str:
    """Signed with the right secret but an algorithm the service does not accept."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the secret is short for HS512, which is beside the point here
        return jwt.encode({"sub": "root", "roles": ["admin"], "exp": 4e9}, SECRET, algorithm="HS512")


BAD_CREDENTIALS = {
    "expired token": {
        "Authorization": "Bearer "
        + issue_token(secret=SECRET, subject="root", roles=["admin"], ttl=timedelta(seconds=-1))
    },
    "wrongly signed token": {
        "Authorization": "Bearer "
        + issue_token(secret="another-secret-that-is-long-enough!!", subject="root", roles=["admin"])
    },
    "alg none": {"Authorization": "Bearer " + unsigned({"sub": "root", "roles": ["admin"], "exp": 4e9})},
    "alg none, signature kept": {
        "Authorization": "Bearer "
        + unsigned({"sub": "root", "roles": ["admin"], "exp": 4e9})
        + issue_token(secret=SECRET, subject="root", roles=["admin"]).rsplit(".", 1)[1]
    },
    "HS512 with the right secret": {"Authorization": "Bearer " + hs512_token()},
    "no expiry": {"Authorization": "Bearer " + jwt.encode({"sub": "root", "roles": ["admin"]}, SECRET)},
    "roles not a list": {
        "Authorization": "Bearer "
        + jwt.encode({"sub": "root", "roles": "admin", "exp": 4e9}, SECRET, algorithm="HS256")
    },
    "garbage token": {"Authorization": "Bearer not.a.token"},
    "basic auth": {"Authorization": "Basic " + base64.b64encode(b"root:root").decode()},
    "revoked api key": {"X-API-Key": REVOKED_API_KEY},
    "unknown api key": {"X-API-Key": API_KEY + "x"},
}


@pytest.mark.parametrize("credentials", list(BAD_CREDENTIALS), ids=list(BAD_CREDENTIALS))
async def test_bad_credentials_are_refused_on_every_service(api: httpx.AsyncClient, credentials: str) -> None:
    for path in ("/v1/customers", "/v1/tickets", "/v1/clients", "/v1/metrics/overview"):
        response = await api.get(path, headers=BAD_CREDENTIALS[credentials])
        assert response.status_code == 401, (path, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["www-authenticate"].startswith("Bearer")
    write = await api.post("/v1/customers", json={"name": "张伟"}, headers=BAD_CREDENTIALS[credentials])
    assert write.status_code == 401


async def test_an_api_key_stops_working_once_removed_from_the_configuration(shared_cluster: Cluster) -> None:
    # Revoking a key is removing its hash from KEFU_API_KEYS and restarting: the same key, a new process.
    database_url = shared_cluster.runtime("intake").settings.database_url
    key = {"name": "crm", "sha256": hash_api_key("crm-key-to-revoke"), "roles": ["partner"]}
    for configured, status in (([key], 200), ([], 401)):
        settings = ServiceSettings.for_service(
            "intake", database_url=database_url, amqp_url=None, api_keys=configured
        )
        app = create_service_app(SERVICES["intake"].definition, settings)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://intake") as client,
        ):
            response = await client.get("/v1/customers", headers={"X-API-Key": "crm-key-to-revoke"})
            assert response.status_code == status, response.text


SURVEY_REQUESTED = "analytics.survey.requested.v1"


async def survey_token(api: httpx.AsyncClient, cluster: Cluster) -> str:
    """Resolve a ticket and read the survey link analytics sends the customer (from its outbox)."""
    created = await api.post("/v1/tickets", json={"subject": "咨询保修", "kind": "inquiry"}, headers=ADMIN)
    assert created.status_code == 201, created.text
    ticket_id = created.json()["id"]
    resolved = await api.post(
        f"/v1/tickets/{ticket_id}/resolve",
        json={"resolution_code": "answered", "summary": "已告知保修政策"},
        headers=ADMIN,
    )
    assert resolved.status_code == 200, resolved.text

    async def requested() -> str | None:
        async with cluster.runtime("analytics").db.transaction() as session:
            rows = await session.execute(
                sa.select(outbox_table.c.payload).where(outbox_table.c.type == SURVEY_REQUESTED)
            )
            for (payload,) in rows:
                data = json.loads(payload)["data"]
                if data["ticket_id"] == ticket_id:
                    return str(data["token"])
        return None

    return await eventually(requested, timeout=30)


async def test_survey_tokens_are_long_random_and_single_use(
    api: httpx.AsyncClient, shared_cluster: Cluster
) -> None:
    first, second = await survey_token(api, shared_cluster), await survey_token(api, shared_cluster)
    for token in (first, second):
        assert len(token) >= 40 and re.fullmatch(r"[A-Za-z0-9_-]+", token)  # 256 bits, URL-safe
    assert first != second and first[:8] != second[:8]
    form = await api.get(f"/v1/surveys/{first}")
    assert form.status_code == 200 and form.json()["answered"] is False
    answer = await api.post(f"/v1/surveys/{first}/responses", json={"csat": 5, "nps": 9})
    assert answer.status_code == 201, answer.text
    again = await api.post(f"/v1/surveys/{first}/responses", json={"csat": 1, "nps": 0})
    assert again.status_code == 409 and again.headers["content-type"] == "application/problem+json"
    assert (await api.get(f"/v1/surveys/{first}")).json()["answered"] is True
    # A token one character off, or another caller's credentials, opens nothing.
    near = first[:-1] + ("A" if first[-1] != "A" else "B")
    assert (await api.get(f"/v1/surveys/{near}")).status_code == 404
    assert (await api.post(f"/v1/surveys/{near}/responses", json={"csat": 5})).status_code == 404
    assert (await api.get(f"/v1/surveys/{'x' * 43}", headers=ADMIN)).status_code == 404
    assert (await api.get("/v1/surveys/short")).status_code == 422


async def test_personal_data_is_masked_for_agents_and_every_unmasked_read_is_audited(
    api: httpx.AsyncClient,
) -> None:
    created = await api.post(
        "/v1/customers",
        json={
            "name": "王芳",
            "phones": ["13800138123"],
            "emails": ["wangfang@example.cn"],
            "id_numbers": ["11010519491231002X"],
            "addresses": [{"text": "上海市浦东新区世纪大道100号"}],
        },
        headers=ADMIN,
    )
    assert created.status_code == 201, created.text
    customer_id = created.json()["id"]

    async def audited() -> list[dict[str, Any]]:
        log = await api.get("/v1/customers/audit-log", params={"customer_id": customer_id}, headers=ADMIN)
        assert log.status_code == 200, log.text
        entries: list[dict[str, Any]] = log.json()["items"]
        return entries

    before = len(await audited())
    agent = bearer("agent", sub="li.agent")
    for view in (
        (await api.get(f"/v1/customers/{customer_id}", headers=agent)).json(),
        (await api.get("/v1/customers", params={"q": "王芳"}, headers=agent)).json()["items"][0],
    ):
        assert view["masked"] is True
        assert view["phones"] == ["138****8123"]
        assert view["emails"] == ["w***@example.cn"]
        assert "491231" not in view["id_numbers"][0]
        assert "世纪大道" not in view["addresses"][0]["text"]
    partner = (await api.get(f"/v1/customers/{customer_id}", headers={"X-API-Key": API_KEY})).json()
    assert partner["masked"] is True and partner["phones"] == ["138****8123"]
    assert len(await audited()) == before  # masked reads are not PII reads

    supervisor = bearer("supervisor", sub="wang.sup")
    full = (await api.get(f"/v1/customers/{customer_id}", headers=supervisor)).json()
    assert full["masked"] is False
    assert full["phones"] == ["+8613800138123"] and full["emails"] == ["wangfang@example.cn"]
    entries = await audited()
    assert len(entries) == before + 1
    assert entries[0]["actor"] == "wang.sup" and entries[0]["roles"] == ["supervisor"]
    # The audit log itself is for admins only.
    forbidden = await api.get("/v1/customers/audit-log", headers=supervisor)
    assert forbidden.status_code == 403
