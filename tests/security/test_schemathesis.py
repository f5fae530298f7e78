"""Property-based API tests: every operation of every service, fed data generated from its own OpenAPI.

Each service runs alone on its scratch PostgreSQL database and the private exchange, in-process; requests
carry an admin token, so generated data gets past authentication and reaches the handlers. Whatever is
sent, no answer may be a 5xx, and every answer must be a status code, a content type and a body that the
operation's OpenAPI declares. Generation is derandomized, so CI runs the same cases every time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from services.briefs.dossier import Heading
from services.catalogue import SERVICES
from shared.app import create_service_app
from tests.conftest import ADMIN, contact_body
from tests.integration.conftest import Broker, service_settings

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
EXAMPLES = {GenerationMode.POSITIVE: 12, GenerationMode.NEGATIVE: 6}
SEEDED_EXAMPLES = 10

# An endless Server-Sent Events stream cannot be read to its end in-process; the feed has its own tests.
NOT_FUZZED = {("GET", "/v1/sla/breaches/stream")}

Send = Callable[[dict[str, Any]], httpx.Response]


def fuzz_operation(
    operation: Any, mode: GenerationMode, send: Send, path_parameters: dict[str, str] | None = None
) -> str | None:
    """Run one operation's generated cases; the first failure's report, or None."""

    @given(case=operation.as_strategy(generation_mode=mode, path_parameters=path_parameters))
    @settings(
        max_examples=EXAMPLES[mode],
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],  # no shrinking: the report carries the exact request
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        kwargs = case.as_transport_kwargs(base_url="http://kefu", headers=ADMIN)
        response = send(kwargs)
        case.validate_response(response, checks=CHECKS, headers=kwargs["headers"])

    try:
        run()
    except Unsatisfiable:
        if mode is GenerationMode.POSITIVE:
            raise
        return None  # an operation without inputs has no invalid request to make
    except (Exception, FailureGroup) as failure:
        seeded = " (existing resources)" if path_parameters else ""
        return f"{mode.value}{seeded} {operation.method.upper()} {operation.path}: {str(failure)[:3000]}"
    return None


def to_httpx(kwargs: dict[str, Any]) -> dict[str, Any]:
    """schemathesis describes a request for `requests`; the same request for httpx."""
    request: dict[str, Any] = {
        "method": kwargs["method"],
        "url": kwargs["url"],
        "headers": {k: v for k, v in kwargs.get("headers", {}).items() if k.lower() != "connection"},
        "params": kwargs.get("params") or None,
        "cookies": kwargs.get("cookies") or None,
    }
    if "json" in kwargs:
        request["json"] = kwargs["json"]
    elif isinstance(kwargs.get("data"), bytes | str):
        request["content"] = kwargs["data"]  # a raw body, e.g. a negative case's non-JSON payload
    elif kwargs.get("data") is not None:
        request["data"] = kwargs["data"]  # form fields
    return request


async def created(client: httpx.AsyncClient, path: str, body: dict[str, Any]) -> str:
    response = await client.post(path, json=body, headers=ADMIN)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def intake_seeds(client: httpx.AsyncClient) -> dict[str, str]:
    contact = (await client.post("/v1/contacts", json=contact_body(), headers=ADMIN)).json()
    return {"contact_id": contact["id"], "customer_id": contact["customer"]["id"]}


async def tickets_seeds(client: httpx.AsyncClient) -> dict[str, str]:
    policies = (await client.get("/v1/sla-policies", headers=ADMIN)).json()
    return {
        "ticket_id": await created(client, "/v1/tickets", {"subject": "洗衣机漏水", "kind": "repair"}),
        "calendar_id": await created(client, "/v1/calendars", {"name": "全天", "always_open": True}),
        "policy_id": policies[0]["id"],
    }


async def briefs_seeds(client: httpx.AsyncClient) -> dict[str, str]:
    client_id = await created(client, "/v1/clients", {"name": "上海某日化"})
    brief = {"client_id": client_id, "type": "creative", "title": "春季新品"}
    return {
        "client_id": client_id,
        "brief_id": await created(client, "/v1/briefs", brief),
        "heading": next(iter(Heading)).value,
        "brief_type": "creative",
    }


async def analytics_seeds(client: httpx.AsyncClient) -> dict[str, str]:
    return {"webhook_id": await created(client, "/v1/webhooks", {"url": "https://hooks.example.com/kefu"})}


SEEDS: dict[str, Callable[[httpx.AsyncClient], Awaitable[dict[str, str]]]] = {
    "intake": intake_seeds,
    "tickets": tickets_seeds,
    "briefs": briefs_seeds,
    "analytics": analytics_seeds,
}


@pytest.mark.parametrize("service", list(SERVICES))
async def test_every_operation_answers_as_its_openapi_declares(
    service: str, databases: dict[str, str], broker: Broker
) -> None:
    app = create_service_app(SERVICES[service].definition, service_settings(service, databases, broker))
    schema = schemathesis.openapi.from_dict(app.openapi())
    operations = [
        result.ok()
        for result in schema.get_all_operations()
        if (result.ok().method.upper(), result.ok().path) not in NOT_FUZZED
    ]
    loop = asyncio.get_running_loop()
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://kefu") as client,
    ):

        def send(kwargs: dict[str, Any]) -> httpx.Response:
            # Cases are generated on a worker thread; the app keeps running on the test's event loop.
            return asyncio.run_coroutine_threadsafe(client.request(**to_httpx(kwargs)), loop).result(60)

        existing = await SEEDS[service](client)

        def fuzz_all() -> list[str]:
            reports = []
            for operation in operations:
                for mode in EXAMPLES:
                    reports.append(fuzz_operation(operation, mode, send))
                # Random ids mostly meet 404 at the door; real ones let generated bodies reach the handlers.
                names = {p.name for p in operation.path_parameters}
                if names and names <= existing.keys():
                    seeded = {name: existing[name] for name in names}
                    reports.append(fuzz_operation(operation, GenerationMode.POSITIVE, send, seeded))
            return [report for report in reports if report is not None]

        failures = await asyncio.to_thread(fuzz_all)
    assert operations
    assert not failures, "\n\n".join(failures)
