"""Monthly reconciliation per client: confirmed estimates against actual costs, in exact yuan and fen."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import httpx
from hypothesis import given, settings
from hypothesis import strategies as st

from services.briefs.estimate_service import month_bounds
from services.briefs.reconciliation import Budget, Spend, reconcile_month
from services.briefs.workhours import AGENCY_TZ
from tests.conftest import bearer
from tests.unit.briefs.conftest import AE, add_client, confirmed_estimate, spend

ANALYST = bearer("analyst", sub="ann")


async def reconciliation(http: httpx.AsyncClient, client_id: str, month: str) -> dict[str, Any]:
    response = await http.get(f"/v1/clients/{client_id}/reconciliation", params={"month": month}, headers=AE)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def by_title(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {line["title"]: line for line in body["estimates"]}


def figures(line: dict[str, Any]) -> tuple[str, str, str, str, bool]:
    return (
        line["estimated"],
        line["actual_in_month"],
        line["actual_to_date"],
        line["remaining"],
        line["over_budget"],
    )


def totals(body: dict[str, Any]) -> tuple[str, str, str, str]:
    return body["estimated"], body["actual_in_month"], body["actual_to_date"], body["remaining"]


async def test_a_clients_month_reconciled_to_the_fen(agency: httpx.AsyncClient) -> None:
    client_id = await add_client(agency)
    # 2 × 1,234.565 = 2,469.13 and 800.005 = 800.01 (half-up to the fen): 3,269.14 confirmed.
    tvc = await confirmed_estimate(
        agency,
        client_id,
        "秋季TVC制作",
        [
            {"description": "拍摄", "quantity": "2", "unit_price": "1234.565"},
            {"description": "后期", "quantity": "1", "unit_price": "800.005"},
        ],
        confirmed_at=datetime(2026, 11, 2, 10, 0, tzinfo=AGENCY_TZ),
    )
    assert tvc["total"] == "3269.14"
    feed = await confirmed_estimate(
        agency,
        client_id,
        "双十一信息流",
        [{"description": "抖音信息流", "quantity": "1", "unit_price": "10000"}],
        confirmed_at=datetime(2026, 11, 20, 9, 0, tzinfo=AGENCY_TZ),
    )
    # 00:30 on 1 November in Shanghai is still 31 October in UTC: a November confirmation.
    await confirmed_estimate(
        agency,
        client_id,
        "十月海报",
        [{"description": "海报设计", "quantity": "1", "unit_price": "300"}],
        confirmed_at=datetime(2026, 10, 31, 16, 30, tzinfo=UTC),
    )
    # Neither a draft nor a declined estimate is a budget.
    draft = await agency.post(
        "/v1/estimates",
        json={
            "client_id": client_id,
            "title": "草稿",
            "lines": [{"description": "x", "quantity": "1", "unit_price": "500"}],
        },
        headers=AE,
    )
    assert draft.status_code == 201
    declined = await agency.post(
        "/v1/estimates",
        json={
            "client_id": client_id,
            "title": "被拒",
            "lines": [{"description": "x", "quantity": "1", "unit_price": "700"}],
        },
        headers=AE,
    )
    await agency.post(f"/v1/estimates/{declined.json()['id']}/send", headers=AE)
    refused = await agency.post(
        f"/v1/estimates/{declined.json()['id']}/decline", json={"reason": "预算不足"}, headers=AE
    )
    assert refused.json()["status"] == "declined"

    await spend(agency, tvc["id"], "1000.10", "2026-10-30")
    await spend(agency, tvc["id"], "1500.25", "2026-11-05")
    await spend(agency, tvc["id"], "999.99", "2026-11-30")
    december = await spend(agency, tvc["id"], "50", "2026-12-01")
    assert december["amount"] == "50.00"
    await spend(agency, feed["id"], "0.01", "2026-11-10")
    # Another client's spending in the same month is not this client's.
    other_id = await add_client(agency, "北京某某饮料")
    other = await confirmed_estimate(
        agency,
        other_id,
        "别家",
        [{"description": "x", "quantity": "1", "unit_price": "999"}],
        confirmed_at=datetime(2026, 11, 3, tzinfo=AGENCY_TZ),
    )
    await spend(agency, other["id"], "888.88", "2026-11-15")

    november = await reconciliation(agency, client_id, "2026-11")
    assert november["client_id"] == client_id
    assert november["month"] == "2026-11"
    assert november["currency"] == "CNY"
    lines = by_title(november)
    assert set(lines) == {"秋季TVC制作", "双十一信息流", "十月海报"}
    # 1,500.25 + 999.99 in November; plus 1,000.10 in October to date; 3,269.14 − 3,500.34 = −231.20.
    assert figures(lines["秋季TVC制作"]) == ("3269.14", "2500.24", "3500.34", "-231.20", True)
    assert figures(lines["双十一信息流"]) == ("10000.00", "0.01", "0.01", "9999.99", False)
    assert figures(lines["十月海报"]) == ("300.00", "0.00", "0.00", "300.00", False)
    assert lines["秋季TVC制作"]["status"] == "confirmed"
    assert totals(november) == ("13569.14", "2500.25", "3500.35", "10068.79")

    # October: only the TVC had money spent by then; the poster was confirmed on 1 November in Shanghai.
    october = await reconciliation(agency, client_id, "2026-10")
    assert set(by_title(october)) == {"秋季TVC制作"}
    assert figures(by_title(october)["秋季TVC制作"]) == ("3269.14", "1000.10", "1000.10", "2269.04", False)
    assert totals(october) == ("3269.14", "1000.10", "1000.10", "2269.04")

    # December: the 1 December invoice is December's, and the budgets carry over.
    december_rec = await reconciliation(agency, client_id, "2026-12")
    assert figures(by_title(december_rec)["秋季TVC制作"]) == ("3269.14", "50.00", "3550.34", "-281.20", True)
    assert totals(december_rec) == ("13569.14", "50.00", "3550.35", "10018.79")

    # A month without any activity: no lines, zero totals.
    september = await reconciliation(agency, client_id, "2026-09")
    assert september["estimates"] == []
    assert totals(september) == ("0.00", "0.00", "0.00", "0.00")
    assert september["currency"] == "CNY"

    assert by_title(await reconciliation(agency, other_id, "2026-11"))["别家"]["actual_in_month"] == "888.88"


async def test_a_client_without_estimates_reconciles_to_zero(agency: httpx.AsyncClient) -> None:
    client_id = await add_client(agency)
    body = await reconciliation(agency, client_id, "2026-11")
    assert body["estimates"] == []
    assert totals(body) == ("0.00", "0.00", "0.00", "0.00")


async def test_bad_months_unknown_clients_and_readers_without_the_right_are_problems(
    agency: httpx.AsyncClient,
) -> None:
    client_id = await add_client(agency)
    for month in ("2026-13", "2026-00", "2026-1", "202611", "9999-12", "0000-05", "十一月"):
        response = await agency.get(
            f"/v1/clients/{client_id}/reconciliation", params={"month": month}, headers=AE
        )
        assert response.status_code == 422, (month, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
    missing = await agency.get(f"/v1/clients/{client_id}/reconciliation", headers=AE)
    assert missing.status_code == 422
    assert missing.headers["content-type"].startswith("application/problem+json")
    unknown = await agency.get(
        f"/v1/clients/{uuid.UUID(int=1)}/reconciliation", params={"month": "2026-11"}, headers=AE
    )
    assert unknown.status_code == 404
    assert unknown.headers["content-type"].startswith("application/problem+json")
    forbidden = await agency.get(
        f"/v1/clients/{client_id}/reconciliation", params={"month": "2026-11"}, headers=ANALYST
    )
    assert forbidden.status_code == 403


async def test_actual_costs_need_a_confirmed_estimate_and_good_figures(agency: httpx.AsyncClient) -> None:
    client_id = await add_client(agency)
    draft = await agency.post(
        "/v1/estimates",
        json={
            "client_id": client_id,
            "title": "草稿",
            "lines": [{"description": "x", "quantity": "1", "unit_price": "500"}],
        },
        headers=AE,
    )
    draft_id = draft.json()["id"]
    early = await agency.post(
        f"/v1/estimates/{draft_id}/actuals",
        json={"description": "发票", "amount": "100", "incurred_on": "2026-11-05"},
        headers=AE,
    )
    assert early.status_code == 409
    assert early.headers["content-type"].startswith("application/problem+json")

    estimate = await confirmed_estimate(
        agency,
        client_id,
        "确认",
        [{"description": "x", "quantity": "1", "unit_price": "500"}],
        confirmed_at=datetime(2026, 11, 2, tzinfo=AGENCY_TZ),
    )
    for bad in (
        {"description": "发票", "amount": "0", "incurred_on": "2026-11-05"},
        {"description": "发票", "amount": "-5", "incurred_on": "2026-11-05"},
        {"description": "发票", "amount": "1.001", "incurred_on": "2026-11-05"},
        {"description": "发票", "amount": "10", "incurred_on": "2026-02-30"},
        {"description": "", "amount": "10", "incurred_on": "2026-11-05"},
        {"description": "发票", "amount": "10", "incurred_on": "2026-11-05", "currency": "USD"},
    ):
        response = await agency.post(f"/v1/estimates/{estimate['id']}/actuals", json=bad, headers=AE)
        assert response.status_code == 422, (bad, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
    unknown = await agency.post(
        f"/v1/estimates/{uuid.UUID(int=2)}/actuals",
        json={"description": "发票", "amount": "10", "incurred_on": "2026-11-05"},
        headers=AE,
    )
    assert unknown.status_code == 404
    for estimate_id in (draft_id, estimate["id"]):
        assert (await agency.get(f"/v1/estimates/{estimate_id}/actuals", headers=AE)).json() == []
    body = await reconciliation(agency, client_id, "2026-11")
    assert totals(body) == ("500.00", "0.00", "0.00", "500.00")

    await spend(agency, estimate["id"], "499.99", "2026-11-06")
    await spend(agency, estimate["id"], "0.01", "2026-11-07")
    exactly = by_title(await reconciliation(agency, client_id, "2026-11"))["确认"]
    assert figures(exactly) == ("500.00", "500.00", "500.00", "0.00", False)
    shown = (await agency.get(f"/v1/estimates/{estimate['id']}", headers=AE)).json()
    assert (shown["actual_total"], shown["remaining"]) == ("500.00", "0.00")


fen = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("99999999.99"), places=2)
days_of_2026 = st.dates(min_value=date(2026, 1, 1), max_value=date(2026, 12, 31))
budgets = st.lists(
    st.builds(
        Budget,
        estimate_id=st.uuids(),
        title=st.just("预算"),
        currency=st.just("CNY"),
        status=st.sampled_from(["draft", "sent", "confirmed", "declined"]),
        estimated=st.decimals(min_value=0, max_value=Decimal("99999999.99"), places=2),
        first_confirmed_on=st.none() | days_of_2026,
    ),
    min_size=1,
    max_size=6,
    unique_by=lambda b: b.estimate_id,
)


@settings(max_examples=150, deadline=None)
@given(budgets, st.data())
def test_totals_are_the_sums_of_the_lines_and_every_fen_lands_in_one_month(
    plan: list[Budget], data: st.DataObject
) -> None:
    spending = data.draw(
        st.lists(
            st.builds(
                Spend,
                estimate_id=st.sampled_from([b.estimate_id for b in plan]),
                amount=fen,
                incurred_on=days_of_2026,
            ),
            max_size=30,
        )
    )
    client_id = uuid.uuid4()
    spent_in_year = Decimal("0.00")
    for number in range(1, 13):
        month = f"2026-{number:02d}"
        first, following = month_bounds(month)
        out = reconcile_month(
            client_id=client_id,
            month=month,
            first=first,
            following=following,
            budgets=plan,
            spending=spending,
        )
        assert out.estimated == sum((line.estimated for line in out.estimates), Decimal(0))
        assert out.actual_in_month == sum((line.actual_in_month for line in out.estimates), Decimal(0))
        assert out.actual_to_date == sum((line.actual_to_date for line in out.estimates), Decimal(0))
        assert out.remaining == sum((line.remaining for line in out.estimates), Decimal(0))
        assert out.remaining == out.estimated - out.actual_to_date
        for line in out.estimates:
            mine = [s for s in spending if s.estimate_id == line.estimate_id]
            assert line.actual_to_date == sum(
                (s.amount for s in mine if s.incurred_on < following), Decimal(0)
            )
            assert line.actual_in_month == sum(
                (s.amount for s in mine if first <= s.incurred_on < following), Decimal(0)
            )
            assert line.over_budget == (line.remaining < 0)
        # Whatever was spent by the month's end is always shown.
        listed = {line.estimate_id for line in out.estimates}
        assert {s.estimate_id for s in spending if s.incurred_on < following} <= listed
        spent_in_year += out.actual_in_month
    assert spent_in_year == sum((s.amount for s in spending), Decimal(0))
