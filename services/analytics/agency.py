"""Agency delivery metrics per client: brief turnaround, sign-off time, proposal rounds, approval rate,
on-time milestones and confirmed estimates against actual spend.

Each figure has its own window: briefs by first submission, milestones by due time, estimates by
confirmation. A client appears when any of them has something in the window.
"""

from __future__ import annotations

import statistics
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from services.analytics.models import BriefFact, CostFact, EstimateFact, MilestoneFact
from services.analytics.statistics import rate

R = TypeVar("R", BriefFact, MilestoneFact, EstimateFact, CostFact)

DEFINITIONS = {
    "turnaround": "first submission to approval of a brief, median hours",
    "sign_off": "last submission to approval, median hours",
    "proposal_rounds_per_brief": "client rounds per brief presented to the client, mean",
    "first_presentation_approval_rate": "briefs whose first client round was approved / briefs presented",
    "milestones": "milestones due in the window that were delivered or missed; on time = delivered by the "
    "due time and never missed",
    "estimate_vs_actual": "estimates confirmed in the window, latest confirmed total against the actual "
    "costs recorded on them, per currency; variance = actual − estimated",
}


def _hours(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"median_hours": None, "n": 0}
    return {"median_hours": round(statistics.median(values) / 3600, 2), "n": len(values)}


def _percent(part: Decimal, whole: Decimal) -> float | None:
    return float(round(part / whole * 100, 2)) if whole else None


def brief_figures(rows: Sequence[BriefFact]) -> dict[str, Any]:
    turnaround = [
        (r.approved_at - r.first_submitted_at).total_seconds()
        for r in rows
        if r.approved_at and r.first_submitted_at
    ]
    sign_off = [
        (r.approved_at - r.last_submitted_at).total_seconds()
        for r in rows
        if r.approved_at and r.last_submitted_at and r.approved_at >= r.last_submitted_at
    ]
    presented = [r for r in rows if r.client_rounds > 0]
    first_approved = sum(
        1 for r in presented if r.first_client_round == 1 and r.first_client_decision == "approved"
    )
    return {
        "briefs": len(rows),
        "turnaround": _hours(turnaround),
        "sign_off": _hours(sign_off),
        "returns_per_brief": round(sum(r.returns for r in rows) / len(rows), 2) if rows else None,
        "proposal_rounds_per_brief": {
            "mean": round(sum(r.client_rounds for r in presented) / len(presented), 2) if presented else None,
            "n": len(presented),
        },
        "first_presentation_approval_rate": rate(first_approved, len(presented)),
    }


def milestone_figures(rows: Sequence[MilestoneFact]) -> dict[str, Any]:
    on_time = sum(1 for m in rows if m.delivered_at and m.delivered_at <= m.due_at and m.missed_at is None)
    delivered = sum(1 for m in rows if m.delivered_at is not None)
    missed = sum(1 for m in rows if m.missed_at is not None)
    return {
        "settled": len(rows),
        "on_time": on_time,
        "delivered_late": delivered - on_time,
        "missed": missed,
        "undelivered": len(rows) - delivered,
        "on_time_rate": rate(on_time, len(rows)),
    }


def estimate_figures(estimates: Sequence[EstimateFact], costs: Iterable[CostFact]) -> list[dict[str, Any]]:
    """Per currency (amounts in different currencies are never added): estimated, actual, variance."""
    spent: dict[uuid.UUID, Decimal] = defaultdict(Decimal)
    for cost in costs:
        spent[cost.estimate_id] += cost.amount
    by_currency: dict[str, list[EstimateFact]] = defaultdict(list)
    for estimate in estimates:
        by_currency[estimate.currency].append(estimate)
    figures = []
    for currency, group in sorted(by_currency.items()):
        estimated = sum((e.confirmed_total for e in group), Decimal("0.00"))
        actual = sum((spent[e.estimate_id] for e in group), Decimal("0.00"))
        figures.append(
            {
                "currency": currency,
                "estimates": len(group),
                "estimated": str(estimated),
                "actual": str(actual),
                "variance": str(actual - estimated),
                "variance_percent": _percent(actual - estimated, estimated),
                "over_estimate": sum(1 for e in group if spent[e.estimate_id] > e.confirmed_total),
            }
        )
    return figures


async def brief_metrics(
    session: AsyncSession, *, since: datetime, until: datetime, client_id: uuid.UUID | None
) -> dict[str, Any]:
    """Per-client agency figures for [since, until)."""
    briefs = sa.select(BriefFact).where(_within(col(BriefFact.first_submitted_at), since, until))
    milestones = sa.select(MilestoneFact).where(_within(col(MilestoneFact.due_at), since, until))
    estimates = sa.select(EstimateFact).where(_within(col(EstimateFact.confirmed_at), since, until))
    if client_id is not None:
        briefs = briefs.where(col(BriefFact.client_id) == client_id)
        milestones = milestones.where(col(MilestoneFact.client_id) == client_id)
        estimates = estimates.where(col(EstimateFact.client_id) == client_id)
    brief_rows = _by_client((await session.execute(briefs)).scalars())
    milestone_rows = _by_client((await session.execute(milestones)).scalars())
    estimate_rows = _by_client((await session.execute(estimates)).scalars())
    estimate_ids = [e.estimate_id for rows in estimate_rows.values() for e in rows]
    costs = _by_client(
        (
            await session.execute(sa.select(CostFact).where(col(CostFact.estimate_id).in_(estimate_ids)))
        ).scalars()
        if estimate_ids
        else []
    )
    clients = sorted({*brief_rows, *milestone_rows, *estimate_rows}, key=str)
    return {
        "definitions": DEFINITIONS,
        "clients": [
            {
                "client_id": str(client),
                **brief_figures(brief_rows.get(client, [])),
                "milestones": milestone_figures(milestone_rows.get(client, [])),
                "estimate_vs_actual": estimate_figures(estimate_rows.get(client, []), costs.get(client, [])),
            }
            for client in clients
        ],
    }


def _within(column: Any, since: datetime, until: datetime) -> Any:
    return sa.and_(column >= since, column < until)


def _by_client(rows: Iterable[R]) -> dict[uuid.UUID, list[R]]:
    grouped: dict[uuid.UUID, list[R]] = defaultdict(list)
    for row in rows:
        grouped[row.client_id].append(row)
    return grouped
