"""The servers everything depends on going away mid-load: RabbitMQ stopped for 10 s, PostgreSQL restarted.

These stop the machine's real servers, as an operator or a crash would, and always bring them back, even
when the test fails.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from tests.integration.conftest import _answers
from tests.reliability.harness import record_report, settle

pytestmark = pytest.mark.timeout(400)

RATE = 20.0
BROKER_DOWN_SECONDS = 10


async def run(*command: str) -> None:
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    output = (await process.communicate())[0].decode(errors="replace")
    assert process.returncode == 0, f"{' '.join(command)} failed: {output}"


async def until_answers(port: int, timeout: float = 60) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not _answers("127.0.0.1", port):
        assert loop.time() < deadline, f"nothing answers on port {port} after {timeout}s"
        await asyncio.sleep(0.5)


def postgres_cluster() -> list[str]:
    version = sorted(os.listdir("/etc/postgresql"))[0]
    return ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main"]


@pytest.fixture
def operator_tools() -> None:
    if not Path("/etc/postgresql").is_dir() or not any(
        os.access(os.path.join(p, "rabbitmqctl"), os.X_OK) for p in os.environ["PATH"].split(":")
    ):
        pytest.fail("stopping the servers needs rabbitmqctl and pg_ctlcluster on this machine")


async def test_rabbitmq_stopped_for_10_seconds_mid_load(distributed, operator_tools) -> None:
    platform = await distributed()
    load = platform.load(RATE)
    await asyncio.sleep(3)
    accepted_before = len(load.accepted)
    await run("rabbitmqctl", "stop_app")
    try:
        await asyncio.sleep(BROKER_DOWN_SECONDS)
        accepted_while_down = len(load.accepted) - accepted_before
    finally:
        await run("rabbitmqctl", "start_app")
        await until_answers(5672)
    await asyncio.sleep(5)
    await load.stop()

    result = await settle(platform, load, timeout=180)

    assert result.clean
    # Intake kept taking contacts while the broker was away: its outbox held the events.
    assert accepted_while_down > 0
    await record_report(
        "rabbitmq-stopped",
        {
            "what": f"rabbitmqctl stop_app for {BROKER_DOWN_SECONDS} s under load, then start_app",
            "rate_per_s": RATE,
            "contacts_accepted_while_broker_down": accepted_while_down,
            "client_retries": dict(load.failures),
            **result.summary(),
        },
    )


async def test_postgresql_restarted_mid_load(distributed, operator_tools) -> None:
    platform = await distributed()
    load = platform.load(RATE)
    await asyncio.sleep(3)
    cluster = postgres_cluster()
    await run(*cluster, "stop", "--mode", "fast")
    try:
        await asyncio.sleep(5)
    finally:
        await run(*cluster, "start")
        await until_answers(5432)
    await asyncio.sleep(5)
    await load.stop()

    result = await settle(platform, load, timeout=180)

    assert result.clean
    # Requests that met the outage were refused with 503 (and retried), never answered with a 500.
    assert "HTTP 500" not in load.failures, dict(load.failures)
    await record_report(
        "postgresql-restarted",
        {
            "what": "pg_ctlcluster stop --mode fast under load, 5 s down, then start",
            "rate_per_s": RATE,
            "client_retries": dict(load.failures),
            **result.summary(),
        },
    )
