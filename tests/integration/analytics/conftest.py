"""analytics alone on real PostgreSQL and RabbitMQ (the other services are not needed to feed it)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from services.analytics.app import DEFINITION
from shared.app import create_service_app
from tests.integration.conftest import Broker, service_settings


@pytest.fixture
async def analytics_app(databases: dict[str, str], broker: Broker) -> AsyncIterator[FastAPI]:
    app = create_service_app(DEFINITION, service_settings("analytics", databases, broker))
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
async def analytics_client(analytics_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=analytics_app), base_url="http://analytics"
    ) as c:
        yield c


def raw(type_: str, data: dict[str, Any], event_id: str | None = None) -> tuple[str, bytes]:
    from tests.unit.analytics.events import envelope

    return type_, envelope(type_, data, event_id=event_id)
