"""A service whose every database connection is busy answers "busy, retry" (503), never a 500."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack

import httpx
import sqlalchemy as sa

from services.catalogue import SERVICES
from shared.app import create_service_app
from shared.runtime import Runtime
from tests.conftest import AGENT
from tests.integration.conftest import Broker, service_settings

POOL = 2


async def test_a_request_that_finds_no_free_connection_is_503_with_retry_after(
    databases: dict[str, str], broker: Broker
) -> None:
    settings = service_settings("tickets", databases, broker, db_pool_size=POOL, db_pool_timeout_seconds=0.5)
    app = create_service_app(SERVICES["tickets"].definition, settings)
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(app.router.lifespan_context(app))
        http = await stack.enter_async_context(
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://tickets")
        )
        assert (await http.get("/v1/tickets", headers=AGENT)).status_code == 200

        runtime: Runtime = app.state.runtime
        release = asyncio.Event()
        all_held = asyncio.Barrier(POOL + 1)

        async def hold() -> None:
            # As long transactions under overload do: the connection is busy until released.
            async with runtime.db.engine.connect() as connection:
                await connection.execute(sa.text("SELECT 1"))
                await all_held.wait()
                await release.wait()

        holders = [asyncio.create_task(hold()) for _ in range(POOL)]
        try:
            await all_held.wait()
            busy = await http.get("/v1/tickets", headers=AGENT)
        finally:
            release.set()
            await asyncio.gather(*holders)

        assert busy.status_code == 503, busy.text
        assert busy.headers["retry-after"] == "1"
        assert busy.headers["content-type"].startswith("application/problem+json")
        assert busy.json()["type"].endswith("/service-busy")
        # Once connections are free again the same request succeeds: nothing was left broken.
        assert (await http.get("/v1/tickets", headers=AGENT)).status_code == 200
