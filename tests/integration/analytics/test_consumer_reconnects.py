"""analytics consumes on aiormq's channel directly: after the broker connection drops, it consumes again."""

from __future__ import annotations

import uuid
from datetime import timedelta

import sqlalchemy as sa

from services.analytics.app import DEFINITION
from services.analytics.models import TicketFact
from shared.app import create_service_app
from shared.bus.amqp import AmqpTransport
from tests.conftest import eventually
from tests.integration.analytics.conftest import raw
from tests.integration.conftest import Broker, service_settings
from tests.integration.proxy import CuttableProxy
from tests.unit.analytics.conftest import START
from tests.unit.analytics.events import lifecycle

H = timedelta(hours=1)


async def test_consumption_resumes_after_the_connection_drops(
    databases: dict[str, str], broker: Broker
) -> None:
    proxy = CuttableProxy("127.0.0.1", 5672)
    await proxy.start()
    settings = service_settings(
        "analytics",
        databases,
        broker,
        amqp_url=f"amqp://guest:guest@127.0.0.1:{proxy.port}/?reconnect_interval=0.3",
    )
    app = create_service_app(DEFINITION, settings)
    try:
        async with app.router.lifespan_context(app):
            runtime = app.state.runtime
            transport = runtime.transport
            assert isinstance(transport, AmqpTransport)

            async def fact(ticket: uuid.UUID) -> TicketFact | None:
                async with runtime.db.transaction() as session:
                    return await session.get(TicketFact, ticket)

            async def deliver(ticket: uuid.UUID) -> None:
                events = lifecycle(ticket, START, responded_at=START + H, resolved_at=START + 2 * H)
                for type_, data in events:
                    await broker.publish_raw(*raw(type_, data), content_type="application/cloudevents+json")

            before = uuid.uuid4()
            await deliver(before)
            assert await eventually(lambda: fact(before))

            await proxy.cut()
            await eventually(lambda: not transport.is_connected)
            after = uuid.uuid4()
            await deliver(after)  # waits in the queue meanwhile
            await proxy.restore()
            await eventually(lambda: transport.is_connected)

            resolved = await eventually(lambda: fact(after), timeout=20)
            assert resolved is not None and resolved.status == "resolved"
            async with runtime.db.transaction() as session:
                count = sa.select(sa.func.count()).select_from(TicketFact)
                assert (await session.execute(count)).scalar_one() == 2
    finally:
        await proxy.close()
