"""Real PostgreSQL and RabbitMQ: scratch databases and a throw-away exchange and queues per test.

Outside CI these tests skip when the servers are not running; with KEFU_REQUIRE_INTEGRATION=1 (set by
`.ci/run`) a missing server fails the run instead, so integration tests can never be silently skipped.
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aio_pika
import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from services.catalogue import SERVICES
from shared.app import create_service_app
from shared.bus.amqp import AmqpTransport
from shared.runtime import Runtime
from shared.settings import ServiceSettings

PG_HOST = os.environ.get("KEFU_TEST_PG_HOST", "127.0.0.1")
PG_DSN = f"postgresql://postgres@{PG_HOST}:5432"
AMQP_URL = os.environ.get("KEFU_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture(autouse=True)
def _real_servers() -> Iterator[None]:
    missing = [
        name for name, port in (("PostgreSQL", 5432), ("RabbitMQ", 5672)) if not _answers("127.0.0.1", port)
    ]
    if missing:
        message = f"{' and '.join(missing)} not reachable on 127.0.0.1"
        if os.environ.get("KEFU_REQUIRE_INTEGRATION") == "1":
            pytest.fail(f"integration tests are required here, but {message}")
        pytest.skip(message)
    yield


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.path):
            item.add_marker(pytest.mark.integration)


@pytest.fixture
async def databases() -> AsyncIterator[dict[str, str]]:
    """One fresh PostgreSQL database per service, dropped afterwards."""
    tag = uuid.uuid4().hex[:10]
    names = {service: f"kefu_it_{tag}_{service}" for service in SERVICES}
    admin = await asyncpg.connect(f"{PG_DSN}/postgres")
    try:
        for name in names.values():
            await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield {s: f"postgresql+asyncpg://postgres@{PG_HOST}:5432/{n}" for s, n in names.items()}
    finally:
        # A new connection: the test may have restarted the server since.
        admin = await asyncpg.connect(f"{PG_DSN}/postgres")
        for name in names.values():
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def cloudevent(type_: str, data: Any, *, event_id: str | None = None, source: str = "/crm") -> bytes:
    """A structured-mode CloudEvent as another company's system would publish it."""
    return json.dumps(
        {
            "specversion": "1.0",
            "id": event_id or str(uuid.uuid4()),
            "source": source,
            "type": type_,
            "time": datetime.now(UTC).isoformat(),
            "datacontenttype": "application/json",
            "data": data,
        },
        ensure_ascii=False,
    ).encode()


@dataclass
class Broker:
    """A private corner of the real broker: its own exchange and queue prefix."""

    url: str
    exchange: str
    prefix: str

    def transport(self, **options: Any) -> AmqpTransport:
        return AmqpTransport(self.url, exchange=self.exchange, queue_prefix=self.prefix, **options)

    async def publish_raw(self, routing_key: str, body: bytes, **properties: Any) -> None:
        """Publish as another company's system would: straight onto the exchange."""
        connection = await aio_pika.connect(self.url)
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            exchange = await channel.declare_exchange(
                self.exchange, aio_pika.ExchangeType.TOPIC, durable=True
            )
            await exchange.publish(
                aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT, **properties),
                routing_key=routing_key,
            )


@pytest.fixture
async def broker() -> AsyncIterator[Broker]:
    tag = uuid.uuid4().hex[:10]
    scratch = Broker(AMQP_URL, exchange=f"kefu-it-{tag}.events", prefix=f"kefu-it-{tag}")
    yield scratch
    cleanup = scratch.transport(retry_delays_ms=[1] * 8)  # tests may use more backoff steps than the default
    await cleanup.connect()
    for service in SERVICES:
        await cleanup.delete_topology(service)
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        await channel.exchange_delete(scratch.exchange)
    await cleanup.close()


@dataclass
class Cluster:
    """The four services as separate apps, each with its own database and broker connection."""

    apps: dict[str, FastAPI]
    clients: dict[str, httpx.AsyncClient] = field(default_factory=dict)

    def runtime(self, service: str) -> Runtime:
        runtime: Runtime = self.apps[service].state.runtime
        return runtime

    def transport(self, service: str) -> AmqpTransport:
        transport = self.runtime(service).transport
        assert isinstance(transport, AmqpTransport)
        return transport


def service_settings(
    service: str, databases: dict[str, str], broker: Broker, **overrides: Any
) -> ServiceSettings:
    options: dict[str, Any] = {
        "database_url": databases[service],
        "amqp_url": broker.url,
        "exchange": broker.exchange,
        "queue_prefix": broker.prefix,
        "retry_delays_ms": [50, 100],
        "outbox_poll_seconds": 0.2,
    }
    return ServiceSettings.for_service(service, **{**options, **overrides})


@pytest.fixture
async def start_cluster(databases: dict[str, str], broker: Broker) -> AsyncIterator[Any]:
    """Call with per-service setting overrides; returns a running `Cluster`."""
    async with AsyncExitStack() as stack:

        async def start(**per_service: dict[str, Any]) -> Cluster:
            apps = {}
            # Consumers start first so their queues exist before anyone publishes.
            for service in ("tickets", "analytics", "intake", "briefs"):
                settings = service_settings(service, databases, broker, **per_service.get(service, {}))
                app = create_service_app(SERVICES[service].definition, settings)
                await stack.enter_async_context(app.router.lifespan_context(app))
                apps[service] = app
            cluster = Cluster(apps)
            for service, app in apps.items():
                cluster.clients[service] = await stack.enter_async_context(
                    httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=f"http://{service}")
                )
            return cluster

        yield start
