"""Processes dying mid-load: each service SIGKILLed and restarted, and the relay dying between publish and
mark-as-sent. Afterwards every accepted contact has exactly one ticket, counted once by analytics, with
nothing left in an outbox or a queue."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import pytest

from tests.reliability.harness import Recorder, record_report, settle

pytestmark = pytest.mark.timeout(240)

RATE = 20.0  # contacts per second: steady traffic through all four services on a 2-core machine


async def test_each_service_killed_mid_load_and_restarted(distributed) -> None:
    platform = await distributed()
    load = platform.load(RATE)
    await asyncio.sleep(3)
    downtime = {}
    for name in ("intake", "tickets", "analytics", "briefs"):
        loop = asyncio.get_running_loop()
        before = loop.time()
        await platform[name].kill()
        await asyncio.sleep(2)
        await platform[name].start()
        downtime[name] = round(loop.time() - before, 1)
        await asyncio.sleep(2)
    await load.stop()

    result = await settle(platform, load)

    assert result.clean
    await record_report(
        "sigkill-each-service",
        {
            "what": "each service SIGKILLed in turn under load, restarted after 2 s",
            "rate_per_s": RATE,
            "seconds_down": downtime,
            "client_retries": dict(load.failures),
            **result.summary(),
        },
    )


async def test_relay_killed_between_publish_and_mark_as_sent(distributed, tmp_path: Path) -> None:
    crash_record = tmp_path / "published-before-crash.txt"
    platform = await distributed(intake={"KEFU_CRASH_RECORD": str(crash_record)})
    intake = platform["intake"]
    async with Recorder(platform) as recorder:
        await intake.stop()
        await intake.start(module="tests.reliability.crash_after_publish")
        load = platform.load(RATE)
        # The first relay pass after the first contact publishes, is confirmed, and the process dies.
        assert await intake.exited(timeout=30) == 137
        await intake.start()
        await asyncio.sleep(3)
        await load.stop()

        result = await settle(platform, load)
        sent_twice = crash_record.read_text().split()
        copies = Counter(m.message_id for m in await recorder.drain())

    assert result.clean
    assert sent_twice, "the relay died before publishing anything"
    # Published, never marked as sent, so published again after the restart — and applied once.
    assert all(copies[event_id] == 2 for event_id in sent_twice), {e: copies[e] for e in sent_twice}
    assert result.duplicate_tickets == 0 and result.analytics_duplicates == 0
    await record_report(
        "relay-killed-after-publish",
        {
            "what": "intake exits right after the broker confirms an outbox batch, before marking it sent",
            "events_published_before_crash": len(sent_twice),
            "events_published_twice": sum(1 for e in sent_twice if copies[e] == 2),
            **result.summary(),
        },
    )
