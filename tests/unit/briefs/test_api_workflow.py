"""briefs over HTTP on the embedded platform: the brief, proposal, money and report workflows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from tests.conftest import bearer

AE = bearer("account_exec", sub="alice")
AD = bearer("account_director", sub="dave")
CD = bearer("creative_director", sub="carol")
MP = bearer("media_planner", sub="mia")
ANALYST = bearer("analyst", sub="ann")

CREATIVE_FIELDS = {
    "background": "新品洗衣液上市",
    "objective": "三个月内认知度达到30%",
    "target_audience": "25-40岁城市家庭主妇",
    "key_insight": "她们担心洗不干净又伤手",
    "single_minded_proposition": "强效去污,温和护手",
    "reasons_to_believe": ["酶配方", "皮肤科测试"],
    "budget": {"amount": "500000.00"},
}


async def new_client(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.post(
        "/v1/clients",
        json={"name": "上海某某日化", "industry": "日化", "account_team": {"account_director": ["dave"]}},
        headers=AE,
    )
    assert response.status_code == 201, response.text
    return response.json()


async def approved_creative_brief(client: httpx.AsyncClient, client_id: str) -> dict[str, Any]:
    brief = await client.post(
        "/v1/briefs",
        json={"client_id": client_id, "type": "creative", "title": "秋季上市", "fields": CREATIVE_FIELDS},
        headers=AE,
    )
    assert brief.status_code == 201, brief.text
    brief_id = brief.json()["id"]
    assert (await client.post(f"/v1/briefs/{brief_id}/submit", headers=AE)).status_code == 200
    assert (await client.post(f"/v1/briefs/{brief_id}/sign", headers=AD)).status_code == 200
    signed = await client.post(f"/v1/briefs/{brief_id}/sign", headers=CD)
    assert signed.json()["status"] == "approved", signed.text
    result: dict[str, Any] = signed.json()
    return result


async def test_creative_brief_needs_both_directors_and_an_edit_needs_signing_again(
    client: httpx.AsyncClient,
) -> None:
    c = await new_client(client)
    brief = await client.post(
        "/v1/briefs",
        json={"client_id": c["id"], "type": "creative", "title": "秋季上市", "fields": CREATIVE_FIELDS},
        headers=AE,
    )
    brief_id = brief.json()["id"]
    submitted = await client.post(f"/v1/briefs/{brief_id}/submit", headers=AE)
    assert submitted.json()["missing_roles"] == ["account_director", "creative_director"]

    # A planner holds no awaited role: 403, nothing recorded.
    assert (await client.post(f"/v1/briefs/{brief_id}/sign", headers=MP)).status_code == 403
    one = await client.post(f"/v1/briefs/{brief_id}/sign", headers=AD)
    assert one.json()["status"] == "submitted"
    assert one.json()["missing_roles"] == ["creative_director"]
    again = await client.post(f"/v1/briefs/{brief_id}/sign", headers=AD)
    assert again.status_code == 403
    two = await client.post(f"/v1/briefs/{brief_id}/sign", headers=CD)
    assert two.json()["status"] == "approved"
    assert {s["role"] for s in two.json()["signatures"]} == {"account_director", "creative_director"}

    edited = await client.patch(
        f"/v1/briefs/{brief_id}",
        json={"fields": {"tone": "温暖"}},
        headers={**AE, "If-Match": two.headers["ETag"]},
    )
    assert edited.status_code == 200, edited.text
    assert edited.json()["status"] == "draft"
    assert edited.json()["version"] == 2
    assert edited.json()["signatures"] == []
    stale = await client.patch(
        f"/v1/briefs/{brief_id}", json={"title": "x"}, headers={**AE, "If-Match": two.headers["ETag"]}
    )
    assert stale.status_code == 412
    signoffs = (await client.get(f"/v1/briefs/{brief_id}/sign-offs", headers=AE)).json()
    assert [s["number"] for s in signoffs] == [1, 1]
    versions = (await client.get(f"/v1/briefs/{brief_id}/versions", headers=AE)).json()
    assert [v["number"] for v in versions] == [2, 1]
    assert versions[0]["fields"]["tone"] == "温暖"


async def test_proposal_rounds_revise_then_approve(client: httpx.AsyncClient) -> None:
    c = await new_client(client)
    brief = await approved_creative_brief(client, c["id"])
    early = await client.post(
        "/v1/proposals", json={"brief_id": brief["id"], "stage": "client", "title": "A"}, headers=AE
    )
    assert early.status_code == 409  # the client sees work only after an internal round is approved

    internal = await client.post(
        "/v1/proposals", json={"brief_id": brief["id"], "stage": "internal", "title": "内部提案"}, headers=AE
    )
    internal_id = internal.json()["id"]
    await client.post(f"/v1/proposals/{internal_id}/present", headers=AE)
    decided = await client.post(
        f"/v1/proposals/{internal_id}/decide", json={"decision": "approved"}, headers=AD
    )
    assert decided.json()["outcome"] == "ready_for_client"

    first = await client.post(
        "/v1/proposals", json={"brief_id": brief["id"], "stage": "client", "title": "客户提案"}, headers=AE
    )
    assert first.json()["round"] == 1
    await client.post(f"/v1/proposals/{first.json()['id']}/present", headers=AE)
    revise = await client.post(
        f"/v1/proposals/{first.json()['id']}/decide",
        json={"decision": "revise", "comments": "改色调"},
        headers=AE,
    )
    assert revise.json()["outcome"] == "next_round"
    second = await client.post(
        "/v1/proposals", json={"brief_id": brief["id"], "stage": "client", "title": "第二轮"}, headers=AE
    )
    assert second.json()["round"] == 2
    await client.post(f"/v1/proposals/{second.json()['id']}/present", headers=AE)
    approved = await client.post(
        f"/v1/proposals/{second.json()['id']}/decide", json={"decision": "approved"}, headers=AE
    )
    assert approved.json()["outcome"] == "execution"


async def test_booking_needs_a_confirmed_estimate(client: httpx.AsyncClient) -> None:
    c = await new_client(client)
    media = await client.post(
        "/v1/briefs",
        json={
            "client_id": c["id"],
            "type": "media",
            "title": "投放",
            "fields": {
                "objectives": "覆盖",
                "target": "家庭",
                "markets": ["上海"],
                "flight_start": "2026-12-01",
                "flight_end": "2026-12-31",
                "channels": ["抖音"],
                "budget": {"amount": "200000"},
            },
        },
        headers=MP,
    )
    assert media.status_code == 201, media.text
    brief_id = media.json()["id"]
    await client.post(f"/v1/briefs/{brief_id}/submit", headers=MP)
    await client.post(f"/v1/briefs/{brief_id}/sign", headers=AD)
    assert (await client.post(f"/v1/briefs/{brief_id}/sign", headers=MP)).json()["status"] == "approved"

    estimate = await client.post(
        "/v1/estimates",
        json={
            "client_id": c["id"],
            "brief_id": brief_id,
            "title": "12月投放",
            "lines": [{"description": "抖音信息流", "quantity": "3", "unit_price": "33333.335"}],
        },
        headers=AE,
    )
    assert estimate.status_code == 201, estimate.text
    body = estimate.json()
    assert body["total"] == "100000.01"
    refused = await client.post(f"/v1/briefs/{brief_id}/book", json={"estimate_id": body["id"]}, headers=MP)
    assert refused.status_code == 409
    assert refused.headers["content-type"].startswith("application/problem+json")

    await client.post(f"/v1/estimates/{body['id']}/send", headers=AE)
    confirmed = await client.post(
        f"/v1/estimates/{body['id']}/confirm",
        json={
            "confirmed_by": "客户市场总监王女士",
            "confirmed_at": (datetime.now(UTC) - timedelta(minutes=1)).isoformat(),
            "method": "signed_document",
            "evidence_ref": "dms://contracts/2026/1201.pdf",
            "digest": body["digest"],
        },
        headers=AE,
    )
    assert confirmed.status_code == 200, confirmed.text
    booked = await client.post(f"/v1/briefs/{brief_id}/book", json={"estimate_id": body["id"]}, headers=MP)
    assert booked.status_code == 200, booked.text
    assert booked.json()["booked_by"] == "mia"


async def test_status_report_and_dossier(client: httpx.AsyncClient) -> None:
    c = await new_client(client)
    await approved_creative_brief(client, c["id"])
    put = await client.put(
        f"/v1/clients/{c['id']}/dossier/product", json={"content": "洗衣液 1L/2L"}, headers=AE
    )
    assert put.status_code == 200, put.text
    dossier = (await client.get(f"/v1/clients/{c['id']}/dossier", headers=AE)).json()
    assert dossier["completeness"] == 0.0625
    assert dossier["next_formal_briefing"] is not None
    report = await client.get(f"/v1/clients/{c['id']}/status-report", headers=AE)
    assert report.status_code == 200, report.text
    assert any(d["kind"] == "brief_approved" for d in report.json()["decisions"])
    md = await client.get(f"/v1/clients/{c['id']}/status-report", params={"format": "markdown"}, headers=AE)
    assert "秋季上市" in md.text
