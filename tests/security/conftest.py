"""Hostile-input suites run the four services on the real PostgreSQL and RabbitMQ, as CI does.

They reuse the integration suite's scratch databases and private exchange, and carry its `integration`
marker, so with KEFU_REQUIRE_INTEGRATION=1 a missing server fails them instead of skipping them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest
from fastapi import FastAPI

from services.catalogue import SERVICES
from services.platform import PathRouter
from tests.integration.conftest import (  # noqa: F401 — fixtures shared with the integration suite
    Broker,
    Cluster,
    _real_servers,
    broker,
    databases,
    start_cluster,
)

StartCluster = Callable[..., Awaitable[Cluster]]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/security" in str(item.path):
            item.add_marker(pytest.mark.integration)


def gateway(apps: dict[str, FastAPI]) -> PathRouter:
    """The four apps behind one host, routed by the first path segment as the production gateway does."""
    by_segment = {
        prefix: apps[name] for name, entry in SERVICES.items() for prefix in entry.definition.path_prefixes
    }
    return PathRouter(apps["intake"], by_segment)


@pytest.fixture
async def cluster(start_cluster: StartCluster) -> Cluster:  # noqa: F811 — the imported fixture
    return await start_cluster()


@pytest.fixture
async def api(cluster: Cluster) -> AsyncIterator[httpx.AsyncClient]:
    """One client for every service's paths."""
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=gateway(cluster.apps)), base_url="http://kefu"
    ) as client:
        yield client
