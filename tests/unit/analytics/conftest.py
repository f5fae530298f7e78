"""analytics alone on SQLite, with a frozen clock; events go straight through its consumer pipeline."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from services.analytics.app import DEFINITION
from shared.app import create_service_app
from shared.bus.base import OutcomeKind
from shared.bus.memory import InProcessTransport
from shared.clock import FrozenClock
from shared.outbox import outbox_table
from shared.runtime import Runtime
from shared.settings import ServiceSettings
from tests.unit.analytics.events import delivery

START = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)  # a Monday, 09:00 in Shanghai


@dataclass
class Analytics:
    runtime: Runtime
    client: httpx.AsyncClient
    clock: FrozenClock

    async def deliver(self, type_: str, data: dict[str, Any], **kw: Any) -> OutcomeKind:
        assert self.runtime.consumer is not None
        outcome = await self.runtime.consumer(delivery(type_, data, **kw))
        assert outcome.kind in (OutcomeKind.HANDLED, OutcomeKind.DUPLICATE), outcome
        return outcome.kind

    async def deliver_all(self, events: list[tuple[str, dict[str, Any]]]) -> None:
        for type_, data in events:
            await self.deliver(type_, data)

    async def deliver_at_once(self, events: list[tuple[str, dict[str, Any]]]) -> set[OutcomeKind]:
        """Handed over together, as a broker does up to the prefetch: consumed in batches, not one by one
        (each of which would wait out the batch's gathering time)."""
        return set(await asyncio.gather(*(self.deliver(type_, data) for type_, data in events)))

    async def published(self, type_: str) -> list[dict[str, Any]]:
        import json

        async with self.runtime.db.transaction() as session:
            rows = (
                await session.execute(sa.select(outbox_table.c.payload).where(outbox_table.c.type == type_))
            ).all()
        return [json.loads(r.payload)["data"] for r in rows]


@pytest.fixture
async def analytics(tmp_path: Path) -> AsyncIterator[Analytics]:
    clock = FrozenClock(START)
    settings = ServiceSettings.for_service(
        "analytics", database_url=f"sqlite+aiosqlite:///{tmp_path}/analytics.db", outbox_poll_seconds=60
    )
    transport = InProcessTransport(retry_delays_ms=[10])
    await transport.connect()
    app = create_service_app(DEFINITION, settings, transport=transport, clock=clock)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://analytics") as http,
    ):
        yield Analytics(app.state.runtime, http, clock)
    await transport.close()
