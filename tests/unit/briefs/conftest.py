"""The embedded platform on a clock the tests hold still and move: Monday 2026-11-23, 10:00 in Shanghai."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.briefs.workhours import AGENCY_TZ
from services.platform import create_platform
from shared.clock import FrozenClock
from tests.conftest import bearer

AE = bearer("account_exec", sub="alice")
NOW = datetime(2026, 11, 23, 10, 0, tzinfo=AGENCY_TZ)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(NOW)


@pytest.fixture
async def agency(tmp_path: Path, clock: FrozenClock) -> AsyncIterator[httpx.AsyncClient]:
    """The embedded platform on the frozen clock, as an HTTP client."""
    app = create_platform(
        clock=clock, data_dir=tmp_path, retry_delays_ms=[10, 20, 40], outbox_poll_seconds=0.05
    )
    transport = httpx.ASGITransport(app=app)
    async with app.lifespan(), httpx.AsyncClient(transport=transport, base_url="http://kefu") as http:
        yield http


async def add_client(http: httpx.AsyncClient, name: str = "上海某某日化") -> str:
    response = await http.post("/v1/clients", json={"name": name, "industry": "日化"}, headers=AE)
    assert response.status_code == 201, response.text
    client_id: str = response.json()["id"]
    return client_id


async def confirmed_estimate(
    http: httpx.AsyncClient,
    client_id: str,
    title: str,
    lines: list[dict[str, Any]],
    *,
    confirmed_at: datetime,
) -> dict[str, Any]:
    """An estimate sent to the client and confirmed in writing at `confirmed_at`."""
    created = await http.post(
        "/v1/estimates", json={"client_id": client_id, "title": title, "lines": lines}, headers=AE
    )
    assert created.status_code == 201, created.text
    estimate = created.json()
    assert (await http.post(f"/v1/estimates/{estimate['id']}/send", headers=AE)).status_code == 200
    confirmed = await http.post(
        f"/v1/estimates/{estimate['id']}/confirm",
        json={
            "confirmed_by": "客户市场总监王女士",
            "confirmed_at": confirmed_at.isoformat(),
            "method": "email",
            "evidence_ref": f"mail://confirmations/{title}",
            "digest": estimate["digest"],
        },
        headers=AE,
    )
    assert confirmed.status_code == 200, confirmed.text
    result: dict[str, Any] = confirmed.json()
    return result


async def spend(http: httpx.AsyncClient, estimate_id: str, amount: str, on: str) -> dict[str, Any]:
    response = await http.post(
        f"/v1/estimates/{estimate_id}/actuals",
        json={"description": f"发票 {on}", "amount": amount, "incurred_on": on, "reference": f"INV-{on}"},
        headers=AE,
    )
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result
