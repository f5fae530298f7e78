"""The embedded bus's retries and dead letters live in its data folder: a restart or a replay from another
process finds them."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest

from services import cli
from shared.bus.base import Delivery, Outcome, OutgoingMessage
from shared.bus.memory import InProcessTransport
from shared.bus.parking import BUS_FILE, ParkedDeliveries
from tests.conftest import eventually


def bus_in(folder: Path, *, retry_delays_ms: list[int]) -> InProcessTransport:
    return InProcessTransport(
        retry_delays_ms=retry_delays_ms, concurrency=1, parking=ParkedDeliveries(folder / BUS_FILE)
    )


def shipped(message_id: str) -> OutgoingMessage:
    return OutgoingMessage(
        id=message_id, routing_key="test.parcel.shipped.v1", body=b"{}", timestamp=datetime.now(UTC)
    )


async def test_a_delivery_waiting_out_its_retry_delay_at_shutdown_is_delivered_after_the_restart(
    tmp_path: Path,
) -> None:
    first = bus_in(tmp_path, retry_delays_ms=[300])
    await first.connect()
    failed = asyncio.Event()

    async def failing(delivery: Delivery) -> Outcome:
        failed.set()
        return Outcome.retry("warehouse database is down")

    await first.consume("analytics", ["test.#"], failing)
    await first.publish([shipped("e1")])
    await failed.wait()
    await first.close()  # well before the retry is due

    second = bus_in(tmp_path, retry_delays_ms=[300])
    await second.connect()
    handled: list[Delivery] = []

    async def working(delivery: Delivery) -> Outcome:
        handled.append(delivery)
        return Outcome.handled()

    try:
        await second.consume("analytics", ["test.#"], working)
        await eventually(lambda: handled, timeout=5)
        await asyncio.sleep(0.3)  # nothing else arrives: it was parked once
        assert [(d.message_id, d.attempt) for d in handled] == [("e1", 2)]
        assert handled[0].headers["x-kefu-last-error"] == "warehouse database is down"
        assert await second.dead_letters("analytics") == []
    finally:
        await second.close()


async def test_dead_letters_outlive_the_process_and_a_replay_from_another_process_reaches_the_running_bus(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    first = bus_in(tmp_path, retry_delays_ms=[])

    async def refusing(delivery: Delivery) -> Outcome:
        return Outcome.dead("schema-invalid data: weight_kg missing")

    await first.connect()
    await first.consume("analytics", ["test.#"], refusing)
    await first.publish([shipped("e1"), shipped("e2")])

    async def both_dead() -> bool:
        return len(await first.dead_letters("analytics")) == 2

    await eventually(both_dead)
    await first.close()

    running = bus_in(tmp_path, retry_delays_ms=[])
    await running.connect()
    handled: list[Delivery] = []

    async def fixed(delivery: Delivery) -> Outcome:
        handled.append(delivery)
        return Outcome.handled()

    try:
        await running.consume("analytics", ["test.#"], fixed)
        letters = await running.dead_letters("analytics")
        assert [(letter.message_id, letter.reason) for letter in letters] == [
            ("e1", "schema-invalid data: weight_kg missing"),
            ("e2", "schema-invalid data: weight_kg missing"),
        ]
        await asyncio.sleep(0.2)
        assert handled == []  # dead letters wait for a replay

        # `python -m services replay-dead-letters --service analytics --limit 1`, without AMQP_URL.
        monkeypatch.delenv("AMQP_URL", raising=False)
        monkeypatch.setenv("KEFU_DATA_DIR", str(tmp_path))
        await cli._replay("analytics", 1)
        assert "analytics: 1 dead letter(s) due again" in capsys.readouterr().out

        await eventually(lambda: handled, timeout=5)
        assert [(d.message_id, d.attempt) for d in handled] == [("e1", 1)]
        assert [letter.message_id for letter in await running.dead_letters("analytics")] == ["e2"]
    finally:
        await running.close()
