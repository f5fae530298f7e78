"""Fault suites run the services as real processes against the real PostgreSQL and RabbitMQ."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from services.catalogue import SERVICES
from tests.integration.conftest import (  # noqa: F401 — fixtures shared with the integration suite
    Broker,
    _real_servers,
    broker,
    databases,
)
from tests.reliability.harness import Distributed, ServiceProcess, service_env

logging.getLogger("httpx").setLevel(logging.WARNING)

RETRY_DELAYS_MS = [500, 2000, 8000, 30000]


@pytest.fixture
async def distributed(
    databases: dict[str, str],  # noqa: F811
    broker: Broker,  # noqa: F811
    tmp_path: Path,
) -> AsyncIterator[Callable[..., Awaitable[Distributed]]]:
    """Call with per-service extra environment; returns the four services running as processes."""
    started: list[Distributed] = []
    transports = []

    async def start(**extra: dict[str, str]) -> Distributed:
        processes = {}
        for name in SERVICES:
            env = service_env(name, databases, broker.url, broker.exchange, broker.prefix)
            env["KEFU_RETRY_DELAYS_MS"] = str(RETRY_DELAYS_MS)
            env.update(extra.get(name, {}))
            processes[name] = ServiceProcess(name, env, tmp_path / f"{name}.log")
        # Consumers first, so their queues exist before the first contact is published.
        await asyncio.gather(processes["tickets"].start(), processes["analytics"].start())
        await asyncio.gather(processes["intake"].start(), processes["briefs"].start())
        transport = broker.transport(retry_delays_ms=RETRY_DELAYS_MS)
        await transport.connect()
        transports.append(transport)
        platform = Distributed(databases, broker, transport, processes)
        started.append(platform)
        return platform

    try:
        yield start
    finally:
        for platform in started:
            for load in platform.loads:
                load.cancel()
            await asyncio.gather(*(p.stop() for p in platform.services.values()))
        for transport in transports:
            await transport.close()


def pytest_collection_modifyitems(items: list[Any]) -> None:
    for item in items:
        if "tests/reliability" in str(item.path):
            item.add_marker(pytest.mark.reliability)
