"""Monthly reconciliation and meeting reports over HTTP on PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from services.briefs.models import ActualCost, Meeting, Milestone
from tests.integration.conftest import Cluster
from tests.unit.briefs.conftest import AE, add_client, confirmed_estimate, spend


async def test_reconciliation_and_a_clients_answer_survive_postgresql(start_cluster: Any) -> None:
    cluster: Cluster = await start_cluster()
    http = cluster.clients["briefs"]
    client_id = await add_client(http)
    now = datetime.now(UTC)
    estimate = await confirmed_estimate(
        http,
        client_id,
        "春季campaign",
        [{"description": "KOL", "quantity": "3", "unit_price": "3333.335"}],
        confirmed_at=now - timedelta(minutes=1),
    )
    assert estimate["total"] == "10000.01"  # 3 × 3,333.335 = 10,000.005, half-up
    await spend(http, estimate["id"], "9999.99", "2026-03-31")
    await spend(http, estimate["id"], "0.04", "2026-04-01")
    refused = await http.post(
        f"/v1/estimates/{estimate['id']}/actuals",
        json={"description": "发票", "amount": "0.001", "incurred_on": "2026-04-02"},
        headers=AE,
    )
    assert refused.status_code == 422

    march = (
        await http.get(f"/v1/clients/{client_id}/reconciliation", params={"month": "2026-03"}, headers=AE)
    ).json()
    april = (
        await http.get(f"/v1/clients/{client_id}/reconciliation", params={"month": "2026-04"}, headers=AE)
    ).json()
    assert (march["actual_in_month"], march["actual_to_date"], march["remaining"]) == (
        "9999.99",
        "9999.99",
        "0.02",
    )
    assert (april["actual_in_month"], april["actual_to_date"], april["remaining"]) == (
        "0.04",
        "10000.03",
        "-0.02",
    )
    assert april["estimates"][0]["over_budget"] is True
    february = (
        await http.get(f"/v1/clients/{client_id}/reconciliation", params={"month": "2026-02"}, headers=AE)
    ).json()
    assert february["estimates"] == []
    bad = await http.get(f"/v1/clients/{client_id}/reconciliation", params={"month": "2026-13"}, headers=AE)
    assert bad.status_code == 422
    assert bad.headers["content-type"].startswith("application/problem+json")

    refused_report = await http.post(
        "/v1/meetings",
        json={
            "client_id": client_id,
            "title": "复盘",
            "held_at": (now - timedelta(hours=2)).isoformat(),
            "attendees": [{"name": "Alice", "side": "agency"}],
            "action_items": [
                {"description": "补数据", "owner": "alice", "due_at": (now - timedelta(hours=3)).isoformat()}
            ],
        },
        headers=AE,
    )
    assert refused_report.status_code == 422
    meeting = await http.post(
        "/v1/meetings",
        json={
            "client_id": client_id,
            "title": "复盘",
            "held_at": (now - timedelta(hours=2)).isoformat(),
            "attendees": [{"name": "Alice", "side": "agency"}, {"name": "王女士", "side": "client"}],
            "decisions": ["四月追加预算"],
            "action_items": [
                {"description": "补数据", "owner": "alice", "due_at": (now + timedelta(days=1)).isoformat()}
            ],
        },
        headers=AE,
    )
    assert meeting.status_code == 201, meeting.text
    meeting_id = meeting.json()["id"]
    answered = await http.post(
        f"/v1/meetings/{meeting_id}/client-response",
        json={"response": "commented", "comments": "预算数字有误"},
        headers=AE,
    )
    assert answered.json()["status"] == "commented"
    again = await http.post(
        f"/v1/meetings/{meeting_id}/client-response", json={"response": "accepted"}, headers=AE
    )
    assert again.status_code == 409
    shown = (await http.get(f"/v1/meetings/{meeting_id}", headers=AE)).json()
    assert (shown["status"], shown["client_comments"]) == ("commented", "预算数字有误")

    async with cluster.runtime("briefs").db.transaction() as session:
        counts = [
            (
                await session.execute(sa.select(sa.func.count()).select_from(model).where(condition))
            ).scalar_one()
            for model, condition in (
                (ActualCost, sa.true()),
                (Meeting, sa.true()),
                (Milestone, Milestone.kind == "action_item"),
            )
        ]
    assert counts == [2, 1, 1]
