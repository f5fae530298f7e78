"""Ticket KPIs from a sequence of lifecycle and SLA events; duplicates and reordering change nothing."""

from __future__ import annotations

import random
import uuid
from datetime import timedelta
from typing import Any

from tests.conftest import bearer
from tests.unit.analytics.conftest import START, Analytics
from tests.unit.analytics.events import lifecycle, sla_outcome, snapshot

ANALYST = bearer("analyst")
H = timedelta(hours=1)


def scenario() -> list[tuple[str, dict[str, Any]]]:
    """Four tickets on Monday 2026-03-02 (Shanghai): two agents, one breach, one reopen."""
    a, b, c, d = (uuid.UUID(int=i) for i in range(1, 5))
    events = [
        *lifecycle(
            a, START, responded_at=START + H, resolved_at=START + 2 * H, assignee="alice", group="desk"
        ),
        *lifecycle(
            b,
            START,
            responded_at=START + 3 * H,
            resolved_at=START + 5 * H,
            replies=3,
            assignee="bob",
            group="desk",
            category="billing",
        ),
        *lifecycle(
            c,
            START + H,
            responded_at=START + 26 * H,
            assignee="bob",
            group="desk",
            category="billing",
            kind="complaint",
        ),
        *lifecycle(d, START + 2 * H, kind="repair", channel="web", priority="urgent"),
        sla_outcome("tickets.sla.met.v1", a, START, START + H, assignee="alice", group="desk"),
        sla_outcome("tickets.sla.met.v1", b, START, START + 3 * H, assignee="bob", group="desk"),
        sla_outcome("tickets.sla.warning.v1", c, START + H, START + 20 * H, assignee="bob", group="desk"),
        sla_outcome("tickets.sla.breached.v1", c, START + H, START + 25 * H, assignee="bob", group="desk"),
        (
            "tickets.ticket.reopened.v1",
            {
                "ticket": snapshot(a, 4, "reopened", START, assignee="alice", group="desk"),
                "reason": "still broken",
                "reopened_by": "customer",
                "reopened_at": (START + 4 * H).isoformat(),
            },
        ),
    ]
    return events


async def report(analytics: Analytics, **params: str) -> dict[str, Any]:
    response = await analytics.client.get(
        "/v1/metrics/tickets",
        params={"since": "2026-03-01T16:00:00Z", "until": "2026-03-04T16:00:00Z", **params},
        headers=ANALYST,
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_kpis_of_a_day(analytics: Analytics) -> None:
    await analytics.deliver_all(scenario())
    body = await report(analytics, include="agents,groups,breaches,categories")
    totals = body["totals"]
    assert totals["created"] == 4
    # a was resolved then reopened: only b counts as resolved; backlog 3 at the end.
    assert totals["resolved"] == 1
    assert totals["backlog_at_end"] == 3
    assert totals["first_response"]["calendar"]["n"] == 3
    assert totals["first_response"]["calendar"]["p50"] == approx(3 * 3600)
    # b: created 09:00, answered 12:00 Shanghai → 3 h calendar, 3 h business.
    assert totals["resolution"]["calendar"]["p50"] == approx(5 * 3600)
    # 09:00 → 14:00 with the lunch hour closed: 4 business hours.
    assert totals["resolution"]["business"]["p50"] == approx(4 * 3600)
    assert totals["reopen_rate"] == {"value": 0.5, "n": 2}
    assert totals["one_touch_resolution_rate"] == {"value": 0.0, "n": 1}
    assert body["sla"]["first_response"] == {
        "met": 2,
        "breached": 1,
        "achievement": {"value": 0.6667, "n": 3},
    }
    assert body["breaches_by"]["agent"] == [{"key": "bob", "count": 1}]
    assert body["breaches_by"]["policy"] == [{"key": "complaints", "count": 1}]
    assert body["top_complaint_categories"][0] == {"category": "billing", "count": 2}
    bob = next(row for row in body["by_agent"] if row["agent"] == "bob")
    assert (bob["created"], bob["resolved"], bob["sla_breaches"]) == (2, 1, 1)
    days = [bucket["start"] for bucket in body["buckets"]]
    assert days == ["2026-03-02T00:00:00+08:00", "2026-03-03T00:00:00+08:00", "2026-03-04T00:00:00+08:00"]
    assert [bucket["created"] for bucket in body["buckets"]] == [4, 0, 0]


def approx(seconds: float) -> Any:
    import pytest

    return pytest.approx(seconds, rel=0.011)


async def test_breakdowns_only_when_asked_for(analytics: Analytics) -> None:
    await analytics.deliver_all(scenario())
    headline = await report(analytics)
    assert headline["include"] == []
    assert not {"by_agent", "by_group", "breaches_by", "top_complaint_categories"} & set(headline)
    assert headline["totals"]["created"] == 4
    assert headline["sla"]["first_response"]["breached"] == 1
    full = await report(analytics, include="agents,groups,breaches,categories")
    assert {k: v for k, v in full.items() if k in headline and k != "include"} == {
        k: v for k, v in headline.items() if k != "include"
    }
    some = await report(analytics, include="groups, breaches")
    assert some["include"] == ["breaches", "groups"]
    assert [row["group"] for row in some["by_group"]] == ["desk"]
    assert "by_agent" not in some and "top_complaint_categories" not in some
    for bad in ("agent", "agents,teams", "breaches;drop"):
        response = await analytics.client.get("/v1/metrics/tickets", params={"include": bad}, headers=ANALYST)
        assert response.status_code == 422, bad


async def test_filters_and_weekly_buckets(analytics: Analytics) -> None:
    await analytics.deliver_all(scenario())
    body = await report(analytics, group_by="week", kind="repair", channel="web")
    assert body["filters"] == {"kind": "repair", "channel": "web"}
    assert body["totals"]["created"] == 1
    assert [b["start"] for b in body["buckets"]] == ["2026-03-02T00:00:00+08:00"]
    assert body["sla"]["first_response"]["achievement"] == {"value": None, "n": 0}


async def test_duplicated_and_reordered_events_give_the_same_answer(
    analytics: Analytics, tmp_path: Any
) -> None:
    events = scenario()
    shuffled = events + random.Random(7).sample(events, len(events))  # every event twice, out of order
    random.Random(11).shuffle(shuffled)
    await analytics.deliver_all(shuffled)
    body = await report(analytics)
    assert body["totals"]["created"] == 4
    assert body["totals"]["resolved"] == 1
    assert body["totals"]["reopen_rate"] == {"value": 0.5, "n": 2}
    assert body["sla"]["first_response"]["breached"] == 1


async def test_a_clock_is_decided_by_its_breach_whatever_the_order(analytics: Analytics) -> None:
    """Per (ticket, metric, cycle): a breach outweighs a met, however they arrive; cycles count apart;
    the clock is counted when its deciding event happened, even if another of its events is earlier.
    The events are delivered in order, then all again in reverse (new ids): nothing may change."""
    a, b, c = (uuid.UUID(int=i) for i in range(11, 14))
    met, breached = "tickets.sla.met.v1", "tickets.sla.breached.v1"
    second_cycle = sla_outcome(met, a, START, START + 5 * H)
    second_cycle[1]["cycle"] = 2
    events = [
        *lifecycle(a, START),
        *lifecycle(b, START),
        *lifecycle(c, START),
        sla_outcome(met, a, START, START + H),
        sla_outcome(breached, a, START, START + 2 * H),
        second_cycle,
        sla_outcome(breached, b, START, START + 2 * H),
        sla_outcome(met, b, START, START + 3 * H),
        sla_outcome(met, b, START, START + 30 * H, metric="resolution"),
        # c's met falls in the window, its breach after it: the clock is a breach, outside the window.
        sla_outcome(met, c, START, START + H),
        sla_outcome(breached, c, START, START + 24 * 5 * H),
    ]
    for order in (events, events[::-1]):
        await analytics.deliver_all(order)
        sla = (await report(analytics))["sla"]
        assert (sla["first_response"]["met"], sla["first_response"]["breached"]) == (1, 2)
        assert (sla["resolution"]["met"], sla["resolution"]["breached"]) == (1, 0)
        wide = await report(analytics, until="2026-03-09T16:00:00Z")
        assert wide["sla"]["first_response"]["breached"] == 3


async def test_bad_input_is_a_problem_not_a_crash(analytics: Analytics) -> None:
    bad_zone = await analytics.client.get(
        "/v1/metrics/tickets", params={"tz": "Mars/Olympus"}, headers=ANALYST
    )
    assert bad_zone.status_code == 422
    backwards = await analytics.client.get(
        "/v1/metrics/tickets",
        params={"since": "2026-03-05T00:00:00Z", "until": "2026-03-01T00:00:00Z"},
        headers=ANALYST,
    )
    assert backwards.status_code == 422
    assert (await analytics.client.get("/v1/metrics/tickets")).status_code == 401


async def test_overview_headline(analytics: Analytics) -> None:
    await analytics.deliver_all(scenario())
    response = await analytics.client.get("/v1/metrics/overview", headers=ANALYST)
    assert response.json()["tickets_created"] == 4
    assert response.json()["sla_breaches"] == 1
    assert response.json()["backlog"] == 3
