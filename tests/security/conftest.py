"""Hostile-input suites run the four services on the real PostgreSQL and RabbitMQ, as CI does.

They reuse the integration suite's scratch databases and private exchange, and carry its `integration`
marker, so with KEFU_REQUIRE_INTEGRATION=1 a missing server fails them instead of skipping them.

Starting the four services takes seconds, so a module that only sends requests shares one running
cluster (`shared_cluster`, `api`): its tests compare counts before and after rather than assume an
empty database, and run on the module's event loop (`pytestmark = MODULE_LOOP`).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack

import aio_pika
import asyncpg
import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI

from services.catalogue import SERVICES
from services.platform import PathRouter
from shared.app import create_service_app
from shared.auth import hash_api_key
from tests.integration.conftest import (  # noqa: F401 — fixtures shared with the integration suite
    AMQP_URL,
    PG_DSN,
    PG_HOST,
    Broker,
    Cluster,
    _answers,
    _real_servers,
    broker,
    databases,
    service_settings,
    start_cluster,
)

StartCluster = Callable[..., Awaitable[Cluster]]
# Another company system's key, configured (as its hash) on the shared cluster; and one that was issued
# once and has since been removed from the configuration, which is how a key is revoked.
API_KEY = "crm-7f3a9c1e5b2d4086a1e9"
REVOKED_API_KEY = "crm-2b8e61d0c4f9437aa5c3"
MODULE_LOOP = pytest.mark.asyncio(loop_scope="module")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/security" in str(item.path):
            item.add_marker(pytest.mark.integration)


def gateway(apps: dict[str, FastAPI]) -> PathRouter:
    """The four apps behind one host, routed by the first path segment as the production gateway does."""
    by_segment = {
        prefix: apps[name]
        for name, entry in SERVICES.items()
        if name in apps
        for prefix in entry.definition.path_prefixes
    }
    return PathRouter(apps["intake"], by_segment)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared_cluster() -> AsyncIterator[Cluster]:
    """The four services on scratch databases and a private exchange, for every test of one module."""
    if not (_answers("127.0.0.1", 5432) and _answers("127.0.0.1", 5672)):
        if os.environ.get("KEFU_REQUIRE_INTEGRATION") == "1":
            pytest.fail("integration tests are required here, but PostgreSQL or RabbitMQ is not reachable")
        pytest.skip("PostgreSQL or RabbitMQ not reachable on 127.0.0.1")
    partner_key = {"name": "crm", "sha256": hash_api_key(API_KEY), "roles": ["partner"]}
    tag = uuid.uuid4().hex[:10]
    names = {service: f"kefu_sec_{tag}_{service}" for service in SERVICES}
    urls = {s: f"postgresql+asyncpg://postgres@{PG_HOST}:5432/{n}" for s, n in names.items()}
    scratch = Broker(AMQP_URL, exchange=f"kefu-sec-{tag}.events", prefix=f"kefu-sec-{tag}")
    admin = await asyncpg.connect(f"{PG_DSN}/postgres")
    try:
        for name in names.values():
            await admin.execute(f'CREATE DATABASE "{name}"')
        async with AsyncExitStack() as stack:
            apps = {}
            for service in ("tickets", "analytics", "intake", "briefs"):  # consumers first
                settings = service_settings(service, urls, scratch, api_keys=[partner_key])
                app = create_service_app(SERVICES[service].definition, settings)
                await stack.enter_async_context(app.router.lifespan_context(app))
                apps[service] = app
            yield Cluster(apps)
        cleanup = scratch.transport(retry_delays_ms=[50, 100])
        await cleanup.connect()
        for service in SERVICES:
            await cleanup.delete_topology(service)
        await cleanup.close()
        connection = await aio_pika.connect(AMQP_URL)
        async with connection:
            await (await connection.channel()).exchange_delete(scratch.exchange)
    finally:
        for name in names.values():
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def api(shared_cluster: Cluster) -> AsyncIterator[httpx.AsyncClient]:
    """One client for every service's paths on the module's cluster."""
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=gateway(shared_cluster.apps)), base_url="http://kefu"
    ) as client:
        yield client
