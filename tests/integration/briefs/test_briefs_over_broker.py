"""briefs over HTTP on PostgreSQL, with its events watched on the real RabbitMQ."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import aio_pika
import httpx
import sqlalchemy as sa

from services.briefs.models import Brief, Client, Estimate
from tests.conftest import bearer, eventually
from tests.integration.conftest import Broker, Cluster
from tests.unit.briefs.test_api_workflow import CREATIVE_FIELDS

AE = bearer("account_exec", sub="alice")
AD = bearer("account_director", sub="dave")
CD = bearer("creative_director", sub="carol")
MP = bearer("media_planner", sub="mia")
ANALYST = bearer("analyst", sub="ann")


class Watcher:
    """A private queue bound to every briefs event, as a downstream consumer would see them."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def of(self, type_: str, subject: str | None = None) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == type_ and (subject is None or e["subject"] == subject)]


@asynccontextmanager
async def watching(broker: Broker) -> AsyncIterator[Watcher]:
    watcher = Watcher()
    connection = await aio_pika.connect(broker.url)
    async with connection:
        channel = await connection.channel()
        exchange = await channel.declare_exchange(broker.exchange, aio_pika.ExchangeType.TOPIC, durable=True)
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        await queue.bind(exchange, routing_key="briefs.#")

        async def collect(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            async with message.process():
                watcher.events.append(json.loads(message.body))

        await queue.consume(collect)
        yield watcher


async def new_client(http: httpx.AsyncClient) -> dict[str, Any]:
    response = await http.post("/v1/clients", json={"name": "杭州某某食品", "industry": "食品"}, headers=AE)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


async def approved_brief(http: httpx.AsyncClient, client_id: str) -> str:
    brief = await http.post(
        "/v1/briefs",
        json={"client_id": client_id, "type": "creative", "title": "春节礼盒", "fields": CREATIVE_FIELDS},
        headers=AE,
    )
    brief_id: str = brief.json()["id"]
    await http.post(f"/v1/briefs/{brief_id}/submit", headers=AE)
    await http.post(f"/v1/briefs/{brief_id}/sign", headers=AD)
    assert (await http.post(f"/v1/briefs/{brief_id}/sign", headers=CD)).json()["status"] == "approved"
    return brief_id


async def presented_round(http: httpx.AsyncClient, brief_id: str, stage: str) -> str:
    created = await http.post(
        "/v1/proposals", json={"brief_id": brief_id, "stage": stage, "title": f"{stage} 提案"}, headers=AE
    )
    assert created.status_code == 201, created.text
    proposal_id: str = created.json()["id"]
    assert (await http.post(f"/v1/proposals/{proposal_id}/present", headers=AE)).status_code == 200
    return proposal_id


async def test_creative_brief_approved_by_both_directors_then_invalidated_by_an_edit(
    start_cluster: Any, broker: Broker
) -> None:
    cluster: Cluster = await start_cluster()
    http = cluster.clients["briefs"]
    async with watching(broker) as seen:
        client = await new_client(http)
        brief = await http.post(
            "/v1/briefs",
            json={
                "client_id": client["id"],
                "type": "creative",
                "title": "春节礼盒",
                "fields": CREATIVE_FIELDS,
            },
            headers=AE,
        )
        brief_id = brief.json()["id"]
        await http.post(f"/v1/briefs/{brief_id}/submit", headers=AE)
        forbidden = await http.post(f"/v1/briefs/{brief_id}/sign", headers=AE)
        assert forbidden.status_code == 403
        assert forbidden.headers["content-type"].startswith("application/problem+json")
        half = await http.post(f"/v1/briefs/{brief_id}/sign", headers=AD)
        assert half.json()["status"] == "submitted"
        full = await http.post(f"/v1/briefs/{brief_id}/sign", headers=CD)
        assert full.json()["status"] == "approved"

        approved = await eventually(lambda: seen.of("briefs.brief.approved.v1", brief_id))
        assert approved[0]["data"]["brief"]["version"] == 1
        assert sorted(approved[0]["data"]["signed_by"]) == [
            "account_director:dave",
            "creative_director:carol",
        ]
        assert seen.of("briefs.brief.submitted.v1", brief_id)

        edited = await http.patch(f"/v1/briefs/{brief_id}", json={"fields": {"tone": "喜庆"}}, headers=AE)
        assert (edited.json()["status"], edited.json()["version"]) == ("draft", 2)
        # The old signatures stay on version 1 and do not carry over.
        await http.post(f"/v1/briefs/{brief_id}/submit", headers=AE)
        again = await http.post(f"/v1/briefs/{brief_id}/sign", headers=AD)
        assert again.json()["status"] == "submitted"
        assert again.json()["missing_roles"] == ["creative_director"]


async def test_revise_then_round_two_approved(start_cluster: Any, broker: Broker) -> None:
    cluster: Cluster = await start_cluster()
    http = cluster.clients["briefs"]
    async with watching(broker) as seen:
        client = await new_client(http)
        brief_id = await approved_brief(http, client["id"])
        internal = await presented_round(http, brief_id, "internal")
        await http.post(f"/v1/proposals/{internal}/decide", json={"decision": "approved"}, headers=AD)
        first = await presented_round(http, brief_id, "client")
        revise = await http.post(
            f"/v1/proposals/{first}/decide", json={"decision": "revise", "comments": "包装换红色"}, headers=AE
        )
        assert revise.json()["outcome"] == "next_round"
        second = await presented_round(http, brief_id, "client")
        assert (await http.get(f"/v1/proposals/{second}", headers=AE)).json()["round"] == 2
        done = await http.post(f"/v1/proposals/{second}/decide", json={"decision": "approved"}, headers=AE)
        assert done.json()["outcome"] == "execution"

        decided = await eventually(lambda: seen.of("briefs.proposal.decided.v1", second))
        assert decided[0]["data"]["proposal"]["round"] == 2
        assert decided[0]["data"]["proposal"]["stage"] == "client"
        assert decided[0]["data"]["decision"] == "approved"
        await eventually(lambda: len(seen.of("briefs.proposal.presented.v1")) == 3)
        # Approved work is in execution: no further client round.
        late = await http.post(
            "/v1/proposals", json={"brief_id": brief_id, "stage": "client", "title": "又一轮"}, headers=AE
        )
        assert late.status_code == 409


async def test_rejected_and_terminated_ends_the_engagement(start_cluster: Any, broker: Broker) -> None:
    cluster: Cluster = await start_cluster()
    http = cluster.clients["briefs"]
    async with watching(broker) as seen:
        client = await new_client(http)
        brief_id = await approved_brief(http, client["id"])
        internal = await presented_round(http, brief_id, "internal")
        await http.post(f"/v1/proposals/{internal}/decide", json={"decision": "approved"}, headers=AD)
        pitch = await presented_round(http, brief_id, "client")
        no_follow_up = await http.post(
            f"/v1/proposals/{pitch}/decide", json={"decision": "rejected"}, headers=AE
        )
        assert no_follow_up.status_code == 422
        ended = await http.post(
            f"/v1/proposals/{pitch}/decide",
            json={"decision": "rejected", "follow_up": "terminate", "comments": "方向不对"},
            headers=AE,
        )
        assert ended.json()["outcome"] == "engagement_ended"
        assert (await http.get(f"/v1/clients/{client['id']}", headers=AE)).json()["status"] == "ended"
        refused = await http.post(
            "/v1/briefs",
            json={
                "client_id": client["id"],
                "type": "client",
                "title": "新需求",
                "fields": {"request": "再来"},
            },
            headers=AE,
        )
        assert refused.status_code == 409
        event = await eventually(lambda: seen.of("briefs.proposal.decided.v1", pitch))
        assert event[0]["data"]["follow_up"] == "terminate"


async def test_booking_is_refused_until_the_client_confirms_the_estimate(
    start_cluster: Any, broker: Broker
) -> None:
    cluster: Cluster = await start_cluster()
    http = cluster.clients["briefs"]
    async with watching(broker) as seen:
        client = await new_client(http)
        media = await http.post(
            "/v1/briefs",
            json={
                "client_id": client["id"],
                "type": "media",
                "title": "春节投放",
                "fields": {
                    "objectives": "到达率80%",
                    "target": "一二线城市家庭",
                    "markets": ["北京", "上海"],
                    "flight_start": "2027-01-10",
                    "flight_end": "2027-02-10",
                    "channels": ["央视", "抖音"],
                    "budget": {"amount": "3000000"},
                },
            },
            headers=MP,
        )
        brief_id = media.json()["id"]
        await http.post(f"/v1/briefs/{brief_id}/submit", headers=MP)
        await http.post(f"/v1/briefs/{brief_id}/sign", headers=AD)
        await http.post(f"/v1/briefs/{brief_id}/sign", headers=MP)
        estimate = await http.post(
            "/v1/estimates",
            json={
                "client_id": client["id"],
                "brief_id": brief_id,
                "title": "春节投放预算",
                "lines": [
                    {"description": "央视套装", "quantity": "1", "unit_price": "1800000"},
                    {"description": "抖音开屏", "quantity": "12", "unit_price": "99999.99"},
                ],
            },
            headers=AE,
        )
        est = estimate.json()
        assert est["total"] == "2999999.88"
        for status in ("draft", "sent"):
            refused = await http.post(
                f"/v1/briefs/{brief_id}/book", json={"estimate_id": est["id"]}, headers=MP
            )
            assert refused.status_code == 409, status
            await http.post(f"/v1/estimates/{est['id']}/send", headers=AE)
        wrong = await http.post(
            f"/v1/estimates/{est['id']}/confirm",
            json={
                "confirmed_by": "客户品牌总监李先生",
                "confirmed_at": (datetime.now(UTC) - timedelta(minutes=5)).isoformat(),
                "method": "email",
                "evidence_ref": "mail://2026-11-23/li",
                "digest": "0" * 64,
            },
            headers=AE,
        )
        assert wrong.status_code == 409  # the client confirmed some other version
        confirmed = await http.post(
            f"/v1/estimates/{est['id']}/confirm",
            json={
                "confirmed_by": "客户品牌总监李先生",
                "confirmed_at": (datetime.now(UTC) - timedelta(minutes=5)).isoformat(),
                "method": "email",
                "evidence_ref": "mail://2026-11-23/li",
                "digest": est["digest"],
            },
            headers=AE,
        )
        assert confirmed.json()["status"] == "confirmed"
        booked = await http.post(f"/v1/briefs/{brief_id}/book", json={"estimate_id": est["id"]}, headers=MP)
        assert booked.status_code == 200, booked.text
        event = await eventually(lambda: seen.of("briefs.estimate.confirmed.v1", est["id"]))
        assert event[0]["data"]["total"] == "2999999.88"
        assert event[0]["data"]["digest"] == est["digest"]

        # A change beyond the 10 % tolerance needs the client's confirmation again.
        bigger = await http.patch(
            f"/v1/estimates/{est['id']}",
            json={"lines": [{"description": "央视套装", "quantity": "2", "unit_price": "1800000"}]},
            headers=AE,
        )
        assert (bigger.json()["status"], bigger.json()["version"]) == ("draft", 2)


async def test_actual_costs_reach_the_estimate_vs_actual_report(start_cluster: Any, broker: Broker) -> None:
    cluster: Cluster = await start_cluster()
    http = cluster.clients["briefs"]
    async with watching(broker) as seen:
        client = await new_client(http)
        created = await http.post(
            "/v1/estimates",
            json={
                "client_id": client["id"],
                "title": "新品发布会",
                "lines": [{"description": "场地与搭建", "quantity": "1", "unit_price": "80000"}],
            },
            headers=AE,
        )
        est = created.json()
        await http.post(f"/v1/estimates/{est['id']}/send", headers=AE)
        confirmation = {
            "confirmed_by": "客户品牌总监李先生",
            "confirmed_at": (datetime.now(UTC) - timedelta(minutes=5)).isoformat(),
            "method": "email",
            "evidence_ref": "mail://2026-11-23/li",
            "digest": est["digest"],
        }
        assert (
            await http.post(f"/v1/estimates/{est['id']}/confirm", json=confirmation, headers=AE)
        ).is_success
        for amount, reference in (("52000.50", "INV-1"), ("31000", "INV-2")):
            spent = await http.post(
                f"/v1/estimates/{est['id']}/actuals",
                json={
                    "description": "发票",
                    "amount": amount,
                    "incurred_on": "2026-11-20",
                    "reference": reference,
                },
                headers=AE,
            )
            assert spent.status_code == 201, spent.text

        await eventually(lambda: len(seen.of("briefs.cost.recorded.v1", est["id"])) == 2, timeout=10)
        amounts = sorted(e["data"]["amount"] for e in seen.of("briefs.cost.recorded.v1", est["id"]))
        assert amounts == ["31000.00", "52000.50"]

        async def reported() -> list[dict[str, Any]] | None:
            response = await cluster.clients["analytics"].get(
                "/v1/metrics/briefs", params={"client": client["id"]}, headers=ANALYST
            )
            clients = response.json()["clients"]
            figures: list[dict[str, Any]] = clients[0]["estimate_vs_actual"] if clients else []
            return figures if figures and figures[0]["actual"] == "83000.50" else None

        figures = await eventually(reported, timeout=10)
        assert figures == [
            {
                "currency": "CNY",
                "estimates": 1,
                "estimated": "80000.00",
                "actual": "83000.50",
                "variance": "3000.50",
                "variance_percent": 3.75,
                "over_estimate": 1,
            }
        ]


async def test_a_milestone_that_passes_undelivered_is_published_as_missed(
    start_cluster: Any, broker: Broker
) -> None:
    cluster: Cluster = await start_cluster()
    http = cluster.clients["briefs"]
    async with watching(broker) as seen:
        client = await new_client(http)
        brief_id = await approved_brief(http, client["id"])
        due = datetime.now(UTC) + timedelta(seconds=1)
        short = await http.post(
            "/v1/briefs/milestones",
            json={
                "brief_id": brief_id,
                "kind": "material_deadline",
                "name": "物料交付",
                "owner": "bob",
                "due_at": due.isoformat(),
            },
            headers=AE,
        )
        assert short.status_code == 201, short.text
        delivered = await http.post(
            "/v1/briefs/milestones",
            json={
                "brief_id": brief_id,
                "kind": "internal_review",
                "name": "内部评审",
                "owner": "bob",
                "due_at": due.isoformat(),
            },
            headers=AE,
        )
        await http.post(f"/v1/briefs/milestones/{delivered.json()['id']}/deliver", headers=AE)

        missed = await eventually(
            lambda: seen.of("briefs.milestone.missed.v1", short.json()["id"]), timeout=10
        )
        assert missed[0]["data"]["owner"] == "bob"
        assert missed[0]["data"]["client_id"] == client["id"]
        overdue = await http.get(
            "/v1/briefs/milestones", params={"view": "overdue", "owner": "bob"}, headers=AE
        )
        assert [m["id"] for m in overdue.json()["items"]] == [short.json()["id"]]
        assert overdue.json()["items"][0]["status"] == "missed"
        await asyncio.sleep(0.5)
        assert not seen.of("briefs.milestone.missed.v1", delivered.json()["id"])
        on_time = seen.of("briefs.milestone.delivered.v1", delivered.json()["id"])
        assert [e["data"]["on_time"] for e in on_time] == [True]

        async def rate() -> dict[str, Any] | None:
            response = await cluster.clients["analytics"].get(
                "/v1/metrics/briefs", params={"client": client["id"]}, headers=ANALYST
            )
            clients = response.json()["clients"]
            figures: dict[str, Any] | None = clients[0]["milestones"] if clients else None
            return figures if figures and figures["settled"] == 2 else None

        assert (await eventually(rate, timeout=10))["on_time_rate"] == {"value": 0.5, "n": 2}


async def test_the_weekly_report_lists_the_week(start_cluster: Any) -> None:
    cluster: Cluster = await start_cluster()
    http = cluster.clients["briefs"]
    client = await new_client(http)
    brief_id = await approved_brief(http, client["id"])
    internal = await presented_round(http, brief_id, "internal")
    await http.post(
        f"/v1/proposals/{internal}/decide", json={"decision": "sent_back", "comments": "不够大胆"}, headers=AD
    )
    await http.post(
        "/v1/meetings",
        json={
            "client_id": client["id"],
            "brief_id": brief_id,
            "title": "周例会",
            "held_at": (datetime.now(UTC) - timedelta(minutes=30)).isoformat(),
            "attendees": [{"name": "Alice", "side": "agency"}, {"name": "李先生", "side": "client"}],
            "decisions": ["礼盒改为红金配色"],
            "action_items": [
                {
                    "description": "出三版包装",
                    "owner": "carol",
                    "due_at": (datetime.now(UTC) + timedelta(days=2)).isoformat(),
                }
            ],
        },
        headers=AE,
    )
    report = await http.get(f"/v1/clients/{client['id']}/status-report", headers=ANALYST)
    assert report.status_code == 200, report.text
    body = report.json()
    kinds = {d["kind"] for d in body["decisions"]}
    assert {"brief_approved", "proposal_presented", "proposal_decided", "meeting_decision"} <= kinds
    assert body["jobs"][0]["next_step"] == "Prepare the internal proposal"
    assert any(m["name"] == "出三版包装" for m in body["due_this_week"] + body["coming_up"])
    html = await http.get(
        f"/v1/clients/{client['id']}/status-report", params={"format": "html"}, headers=ANALYST
    )
    assert html.headers["content-type"].startswith("text/html")
    assert "礼盒改为红金配色" in html.text
    last_year = await http.get(
        f"/v1/clients/{client['id']}/status-report", params={"week": "2025-W47"}, headers=ANALYST
    )
    assert last_year.json()["decisions"] == []


async def test_bad_input_is_a_problem_and_writes_nothing(start_cluster: Any) -> None:
    cluster: Cluster = await start_cluster()
    http = cluster.clients["briefs"]
    client = await new_client(http)
    cases = [
        ("/v1/clients", {"name": ""}),
        (
            "/v1/briefs",
            {"client_id": client["id"], "type": "creative", "title": "x", "fields": {"colour": "red"}},
        ),
        ("/v1/briefs", {"client_id": client["id"], "type": "poster", "title": "x"}),
        (
            "/v1/estimates",
            {
                "client_id": client["id"],
                "title": "x",
                "lines": [{"description": "a", "quantity": "-1", "unit_price": "1"}],
            },
        ),
        (
            "/v1/estimates",
            {
                "client_id": client["id"],
                "title": "x",
                "lines": [{"description": "a", "quantity": "1", "unit_price": "0.00001"}],
            },
        ),
        (
            "/v1/briefs/milestones",
            {"client_id": client["id"], "kind": "other", "name": "x", "due_at": "2026-12-01T10:00:00"},
        ),
        (
            "/v1/meetings",
            {"client_id": client["id"], "title": "x", "held_at": "2026-11-01T10:00:00Z", "attendees": []},
        ),
    ]
    for path, body in cases:
        response = await http.post(path, json=body, headers=AE)
        assert response.status_code == 422, (path, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
    malformed = await http.post(
        "/v1/briefs", content=b"{not json", headers={**AE, "content-type": "application/json"}
    )
    assert malformed.status_code == 400
    no_such = await http.post(
        "/v1/briefs",
        json={"client_id": "0190f5a0-0000-7000-8000-000000000000", "type": "client", "title": "x"},
        headers=AE,
    )
    assert no_such.status_code == 404
    assert (await http.post("/v1/clients", json={"name": "x"}, headers=ANALYST)).status_code == 403
    assert (await http.post("/v1/clients", json={"name": "x"})).status_code == 401

    async with cluster.runtime("briefs").db.transaction() as session:
        counts = [
            (await session.execute(sa.select(sa.func.count()).select_from(model))).scalar_one()
            for model in (Client, Brief, Estimate)
        ]
    assert counts == [1, 0, 0]
