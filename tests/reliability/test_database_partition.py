"""A network partition between intake and tickets and their PostgreSQL, all of them running, mid-load.

A stopped database refuses connections at once; a partition answers nothing. Statements in flight stall,
requests queue for the pool's connections, clients time out and retry. Intake must answer what it cannot
do with 503 (never 500) and record each contact once however often it is retried; tickets' consumer must
hold its deliveries unacknowledged; and after the partition heals nothing may be lost or done twice.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest

from tests.integration.proxy import CuttableProxy
from tests.reliability.harness import partitioned_run, record_report

pytestmark = pytest.mark.timeout(400)

RATE = 20.0
PARTITION_SECONDS = 12
PARTITIONED = ("intake", "tickets")


@pytest.fixture
async def proxy(databases: dict[str, str]) -> AsyncIterator[CuttableProxy]:
    address = urlsplit(databases["intake"])
    proxy = CuttableProxy(address.hostname or "127.0.0.1", address.port or 5432)
    await proxy.start()
    yield proxy
    await proxy.close()


async def test_intake_and_tickets_partitioned_from_postgresql_mid_load(
    proxy: CuttableProxy, databases: dict[str, str], distributed
) -> None:
    # The proxy is set up first so that it is torn down last, after the services have stopped.
    def through_proxy(url: str) -> str:
        address = urlsplit(url)
        return address._replace(netloc=address.netloc.replace(f":{address.port}", f":{proxy.port}")).geturl()

    platform = await distributed(
        **{name: {f"{name.upper()}_DATABASE_URL": through_proxy(databases[name])} for name in PARTITIONED}
    )
    during, load, result = await partitioned_run(platform, proxy, rate=RATE, seconds=PARTITION_SECONDS)

    assert result.clean
    # The partition was felt: clients met timeouts or 503s while it lasted, and were not answered 500.
    assert during.client_failures > 0, dict(load.failures)
    assert "HTTP 500" not in load.failures, dict(load.failures)
    await record_report(
        "database-partitioned",
        {
            "what": f"intake's and tickets' links to PostgreSQL silently dropped for {PARTITION_SECONDS} s "
            "under load (sockets left open), then healed",
            "rate_per_s": RATE,
            "contacts_accepted_during_partition": during.contacts_accepted,
            "tickets_opened_during_partition": during.tickets_opened,
            "client_failures_during_partition": during.client_failures,
            "client_retries": dict(load.failures),
            **result.summary(),
        },
    )
