"""SLA timers under faults: what falls due while tickets is down fires once when it is back, and two
tickets replicas sharing one database never fire the same timer twice."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import eventually
from tests.reliability.harness import ADMIN, Distributed, Recorder, record_report, settle

pytestmark = pytest.mark.timeout(400)

TARGET_SECONDS = 8  # first response, for complaints only; warnings at 80 %


async def fast_policy(platform: Distributed) -> None:
    async with httpx.AsyncClient(base_url=platform["tickets"].url, headers=ADMIN, timeout=10) as http:
        calendar = await http.post("/v1/calendars", json={"name": "24x7", "always_open": True})
        assert calendar.status_code == 201, calendar.text
        policy = await http.post(
            "/v1/sla-policies",
            json={
                "name": "complaints-fast",
                "position": 0,
                "conditions": {"kinds": ["complaint"]},
                "targets": {"first_response": TARGET_SECONDS},
                "calendar_id": calendar.json()["id"],
            },
        )
        assert policy.status_code == 201, policy.text


async def wait_for_tickets(platform: Distributed, expected: int) -> None:
    async def enough() -> bool:
        return await platform.scalar("tickets", "SELECT count(*) FROM tickets") >= expected

    await eventually(enough, timeout=60, every=0.5)


def outcomes(messages: list[Any], event_type: str) -> Counter[str]:
    """How many times each ticket's first-response clock produced `event_type`."""
    fired: Counter[str] = Counter()
    for message in messages:
        if message.routing_key == event_type:
            data = json.loads(message.body)["data"]
            fired[data["ticket"]["id"]] += 1
    return fired


async def complaint_ticket_ids(platform: Distributed) -> set[str]:
    rows = await platform.query("tickets", "SELECT id FROM tickets WHERE kind = 'complaint'")
    return {str(r["id"]) for r in rows}


async def analytics_breaches(platform: Distributed, expected: int) -> bool:
    query = "SELECT count(*) FROM sla_events WHERE outcome = 'breach'"
    return bool(await platform.scalar("analytics", query) == expected)


async def breached(recorder: Recorder, ticket_ids: set[str]) -> bool:
    return ticket_ids <= set(outcomes(await recorder.collect(), "tickets.sla.breached.v1"))


async def test_timers_due_while_down_fire_once_and_replicas_never_double_fire(
    distributed, tmp_path: Path
) -> None:
    platform = await distributed()
    await fast_policy(platform)
    tickets = platform["tickets"]
    async with Recorder(platform) as recorder:
        # Phase 1: tickets is killed before any clock warns and stays down past every due time.
        load = platform.load(20)
        await asyncio.sleep(3)
        await load.stop()
        await wait_for_tickets(platform, len(load.contact_ids))
        await tickets.kill()
        await asyncio.sleep(TARGET_SECONDS + 4)
        await tickets.start()
        first = await complaint_ticket_ids(platform)
        await eventually(lambda: breached(recorder, first), timeout=60, every=0.5)

        # Phase 2: a second replica of tickets on the same database; both run the timer scheduler.
        replica = platform.replica("tickets", tmp_path)
        await replica.start()
        platform.services["tickets-replica"] = replica  # stopped with the others
        second_load = platform.load(20)
        await asyncio.sleep(3)
        await second_load.stop()
        await wait_for_tickets(platform, len(load.contact_ids) + len(second_load.contact_ids))
        both = await complaint_ticket_ids(platform)
        await eventually(lambda: breached(recorder, both), timeout=60, every=0.5)
        await asyncio.sleep(2)  # a double fire would arrive about now
        messages = await recorder.collect()

    warnings = outcomes(messages, "tickets.sla.warning.v1")
    breaches = outcomes(messages, "tickets.sla.breached.v1")
    late = [
        json.loads(m.body)["data"]["late"] for m in messages if m.routing_key == "tickets.sla.breached.v1"
    ]
    second = both - first
    assert first and second
    assert {t: warnings[t] for t in both} == dict.fromkeys(both, 1)
    assert {t: breaches[t] for t in both} == dict.fromkeys(both, 1)
    assert sum(late) >= len(first), "breaches fired after the downtime are marked late"
    await eventually(lambda: analytics_breaches(platform, len(both)), timeout=30, every=0.5)

    load.accepted.update(second_load.accepted)
    result = await settle(platform, load)
    assert result.clean
    await record_report(
        "sla-timers",
        {
            "what": "tickets down past every due time, then two tickets replicas sharing one database",
            "timers_due_while_down": len(first),
            "fired_once_after_restart": sum(1 for t in first if breaches[t] == 1),
            "timers_with_two_replicas": len(second),
            "fired_once_with_two_replicas": sum(1 for t in second if breaches[t] == 1),
            "double_fires": sum(n - 1 for fired in (warnings, breaches) for n in fired.values() if n > 1),
            **result.summary(),
        },
    )
