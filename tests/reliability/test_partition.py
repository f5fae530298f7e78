"""A network partition between tickets and RabbitMQ while both keep running, mid-load.

Unlike a stopped broker, a partition tells no one: sockets stay open and bytes stop. Tickets must notice
by heartbeats, its unacknowledged deliveries must come back to the queue, its unconfirmed publishes must
stay in its outbox, and after the partition heals nothing may be lost or done twice.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest

from tests.integration.conftest import Broker
from tests.integration.proxy import CuttableProxy
from tests.reliability.harness import partitioned_run, record_report

pytestmark = pytest.mark.timeout(400)

RATE = 20.0
PARTITION_SECONDS = 12
HEARTBEAT_SECONDS = 2  # aiormq gives up on a silent peer after (2 + 1) × 3 = 9 s


@pytest.fixture
async def proxy(broker: Broker) -> AsyncIterator[CuttableProxy]:
    address = urlsplit(broker.url)
    proxy = CuttableProxy(address.hostname or "127.0.0.1", address.port or 5672)
    await proxy.start()
    yield proxy
    await proxy.close()


async def test_tickets_partitioned_from_rabbitmq_mid_load(
    proxy: CuttableProxy, broker: Broker, distributed
) -> None:
    # The proxy is set up first so that it is torn down last, after the services have stopped.
    broker_url = urlsplit(broker.url)
    through_proxy = broker_url._replace(
        netloc=broker_url.netloc.replace(f":{broker_url.port}", f":{proxy.port}"),
        query=f"heartbeat={HEARTBEAT_SECONDS}",
    ).geturl()
    platform = await distributed(tickets={"AMQP_URL": through_proxy})
    during, load, result = await partitioned_run(platform, proxy, rate=RATE, seconds=PARTITION_SECONDS)

    assert result.clean
    # Intake, on the other side of no partition, kept taking contacts; they waited in tickets' queue.
    assert during.contacts_accepted > 0
    assert "HTTP 500" not in load.failures, dict(load.failures)
    await record_report(
        "tickets-partitioned",
        {
            "what": f"tickets' link to RabbitMQ silently dropped for {PARTITION_SECONDS} s under load "
            f"(sockets left open; heartbeat {HEARTBEAT_SECONDS} s), then healed",
            "rate_per_s": RATE,
            "contacts_accepted_during_partition": during.contacts_accepted,
            "tickets_opened_during_partition": during.tickets_opened,
            "client_retries": dict(load.failures),
            **result.summary(),
        },
    )
