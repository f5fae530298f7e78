"""All four services in one process (the embedded default): one port, one in-process bus, one `/docs`."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from services.catalogue import SERVICES
from shared.app import create_service_app
from shared.bus.base import Transport
from shared.clock import Clock
from shared.errors import install_problem_handlers, problem_response
from shared.runtime import Runtime, in_process_transport
from shared.settings import ServiceSettings

DESCRIPTION = """Kefu (客服) is a customer-service platform for companies and advertising agencies.

This document covers all four services, which a gateway serves under one host:

* **intake** — customer profiles, purchases and warranty, every inbound contact, verification, classification
* **tickets** — complaint, repair and inquiry tickets and the SLA engine
* **briefs** — the agency's client dossiers, briefs, sign-offs, proposals, traffic and estimates
* **analytics** — KPIs, satisfaction surveys and the live SLA-breach feed

Authenticate with `Authorization: Bearer <JWT>` (claims `sub`, `name`, `roles`) or `X-API-Key`.
Errors are RFC 9457 `application/problem+json`. Lists take `limit` and `cursor`. Creating POSTs accept
an `Idempotency-Key`. Events are CloudEvents 1.0 on the RabbitMQ topic exchange `kefu.events`.
"""


class PathRouter:
    """Sends `/v1/<segment>…` to the service owning that segment, as the production gateway does."""

    def __init__(self, root: ASGIApp, by_segment: Mapping[str, ASGIApp]) -> None:
        self.root = root
        self.by_segment = dict(by_segment)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            parts = scope["path"].split("/", 3)
            if len(parts) > 2 and parts[1] == "v1" and (app := self.by_segment.get(parts[2])) is not None:
                await app(scope, receive, send)
                return
        await self.root(scope, receive, send)


def merged_openapi(apps: Mapping[str, FastAPI]) -> dict[str, Any]:
    """One OpenAPI document for partners, with each service's paths tagged by service."""
    merged: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "Kefu", "version": "0.1.0", "description": DESCRIPTION},
        "paths": {},
        "components": {"schemas": {}, "securitySchemes": {}},
        "tags": [],
    }
    for name, app in apps.items():
        spec = app.openapi()
        merged["tags"].append({"name": name, "description": app.description})
        for path, operations in spec.get("paths", {}).items():
            if path in merged["paths"]:
                continue  # /healthz and friends: the platform's own
            for operation in operations.values():
                operation["tags"] = [name, *operation.get("tags", [])]
            merged["paths"][path] = operations
        components = spec.get("components", {})
        for section in ("schemas", "securitySchemes"):
            for key, value in components.get(section, {}).items():
                existing = merged["components"][section].get(key)
                if existing is not None and existing != value:
                    raise ValueError(f"OpenAPI {section} {key!r} differs between services")
                merged["components"][section][key] = value
    return merged


class Platform(PathRouter):
    """The combined ASGI app; `root` serves docs, health and metrics, `apps` the four services."""

    def __init__(self, root: FastAPI, apps: Mapping[str, FastAPI], transport: Transport | None) -> None:
        by_segment = {
            prefix: apps[name]
            for name, entry in SERVICES.items()
            for prefix in entry.definition.path_prefixes
        }
        super().__init__(root, by_segment)
        self.apps = dict(apps)
        self.transport = transport
        self.runtimes: dict[str, Runtime] = {name: app.state.runtime for name, app in apps.items()}

    def lifespan(self) -> Any:
        """The start-up and shut-down of everything, for tests that drive the app without a server."""
        root = self.root
        assert isinstance(root, FastAPI)
        return root.router.lifespan_context(root)


def create_platform(
    *, clock: Clock | None = None, transport: Transport | None = None, **settings_overrides: Any
) -> Platform:
    """Build the combined app. Without `AMQP_URL` the services share one in-process bus."""
    settings = {name: ServiceSettings.for_service(name, **settings_overrides) for name in SERVICES}
    shared_transport: Transport | None = transport
    if shared_transport is None and not any(s.amqp_url for s in settings.values()):
        shared_transport = in_process_transport(next(iter(settings.values())))
    apps = {
        name: create_service_app(entry.definition, settings[name], transport=shared_transport, clock=clock)
        for name, entry in SERVICES.items()
    }
    runtimes: dict[str, Runtime] = {name: app.state.runtime for name, app in apps.items()}

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            if shared_transport is not None:
                await shared_transport.connect()
                stack.push_async_callback(shared_transport.close)
            # Consumers first, so events published while the others start have a queue to land in.
            for app in sorted(apps.values(), key=lambda a: a.state.runtime.consumer is None):
                await stack.enter_async_context(app.router.lifespan_context(app))
            if shared_transport is not None:
                # Exits run last-in first-out: the bus stops delivering before the services (and their
                # databases) it delivers to are stopped. Closing twice is harmless.
                stack.push_async_callback(shared_transport.close)
            yield

    root = FastAPI(
        title="Kefu",
        description=DESCRIPTION,
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,
        openapi_url=None,
    )
    install_problem_handlers(root)
    document: dict[str, Any] = {}

    @root.get("/openapi.json", include_in_schema=False)
    async def openapi() -> dict[str, Any]:
        if not document:
            document.update(merged_openapi(apps))
        return document

    @root.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="Kefu — API")

    @root.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": "kefu"}

    @root.get("/readyz", include_in_schema=False)
    async def readyz() -> Any:
        checks: dict[str, str] = {}
        for name, runtime in runtimes.items():
            try:
                await runtime.db.ping()
                checks[name] = "ok" if runtime.transport.is_connected else "broker unreachable"
            except Exception as exc:
                checks[name] = f"database unreachable: {type(exc).__name__}"
        if all(v == "ok" for v in checks.values()):
            return {"status": "ready", "checks": checks}
        return problem_response(503, detail="A dependency is unreachable.", slug="not-ready", checks=checks)

    @root.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        for runtime in runtimes.values():
            with contextlib.suppress(Exception):  # still answer when a database does not
                await runtime.refresh_gauges()
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return Platform(root, apps, shared_transport)
