"""What the agency delivers and spends reaches the analytics report, through briefs' outbox."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx

from shared.clock import FrozenClock
from tests.conftest import bearer, eventually
from tests.unit.briefs.conftest import AE, NOW, add_client, confirmed_estimate, spend

ANALYST = bearer("analyst", sub="ann")


async def milestone(http: httpx.AsyncClient, client_id: str, name: str, due_in: timedelta) -> str:
    created = await http.post(
        "/v1/briefs/milestones",
        json={
            "client_id": client_id,
            "kind": "material_deadline",
            "name": name,
            "owner": "bob",
            "due_at": (NOW + due_in).isoformat(),
        },
        headers=AE,
    )
    assert created.status_code == 201, created.text
    milestone_id: str = created.json()["id"]
    return milestone_id


async def test_deliveries_and_costs_reach_the_agency_report(
    agency: httpx.AsyncClient, clock: FrozenClock
) -> None:
    client_id = await add_client(agency)
    early = await milestone(agency, client_id, "海报定稿", timedelta(hours=2))
    late = await milestone(agency, client_id, "视频粗剪", timedelta(hours=1))
    assert (await agency.post(f"/v1/briefs/milestones/{early}/deliver", headers=AE)).status_code == 200
    clock.advance(timedelta(hours=3))
    assert (await agency.post(f"/v1/briefs/milestones/{late}/deliver", headers=AE)).status_code == 200

    estimate = await confirmed_estimate(
        agency,
        client_id,
        "发布会",
        [{"description": "场地", "quantity": "2", "unit_price": "15000"}],
        confirmed_at=NOW,
    )
    await spend(agency, estimate["id"], "18000", "2026-11-23")
    await spend(agency, estimate["id"], "9500.25", "2026-11-24")

    async def figures() -> dict[str, Any] | None:
        response = await agency.get(
            "/v1/metrics/briefs",
            params={
                "client": client_id,
                "since": (NOW - timedelta(days=1)).isoformat(),
                "until": (NOW + timedelta(days=1)).isoformat(),
            },
            headers=ANALYST,
        )
        assert response.status_code == 200, response.text
        clients = response.json()["clients"]
        if not clients:
            return None
        ready = clients[0]["milestones"]["settled"] == 2 and clients[0]["estimate_vs_actual"]
        ready = ready and clients[0]["estimate_vs_actual"][0]["actual"] == "27500.25"
        return clients[0] if ready else None

    report = await eventually(figures, timeout=10)
    assert report["milestones"]["on_time"] == 1
    assert report["milestones"]["delivered_late"] == 1
    assert report["milestones"]["on_time_rate"] == {"value": 0.5, "n": 2}
    assert report["estimate_vs_actual"] == [
        {
            "currency": "CNY",
            "estimates": 1,
            "estimated": "30000.00",
            "actual": "27500.25",
            "variance": "-2499.75",
            "variance_percent": -8.33,
            "over_estimate": 0,
        }
    ]
