"""Agency delivery metrics per client: brief turnaround, sign-off time, proposal rounds, approval rate.

On-time milestone rate and estimate-vs-actual need events the briefs contract does not carry yet
(milestones delivered, estimate totals and actual spend); until then they are reported as unavailable
with the missed-milestone count alone.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from services.analytics.models import BriefFact, MilestoneFact


def _hours(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"median_hours": None, "n": 0}
    return {"median_hours": round(statistics.median(values) / 3600, 2), "n": len(values)}


async def brief_metrics(
    session: AsyncSession, *, since: datetime, until: datetime, client_id: str | None
) -> dict[str, Any]:
    """Per-client figures for briefs first submitted in [since, until)."""
    query = sa.select(BriefFact).where(
        BriefFact.first_submitted_at >= since, BriefFact.first_submitted_at < until
    )
    missed_query = sa.select(MilestoneFact.client_id, sa.func.count()).where(
        MilestoneFact.due_at >= since, MilestoneFact.due_at < until
    )
    if client_id is not None:
        query = query.where(BriefFact.client_id == client_id)
        missed_query = missed_query.where(MilestoneFact.client_id == client_id)
    briefs = (await session.execute(query)).scalars().all()
    missed = dict((await session.execute(missed_query.group_by(MilestoneFact.client_id))).all())

    by_client: dict[Any, list[BriefFact]] = defaultdict(list)
    for brief in briefs:
        by_client[brief.client_id].append(brief)
    clients = []
    for client, rows in sorted(by_client.items(), key=lambda item: str(item[0])):
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
        clients.append(
            {
                "client_id": str(client),
                "briefs": len(rows),
                "turnaround": _hours(turnaround),
                "sign_off": _hours(sign_off),
                "returns_per_brief": round(sum(r.returns for r in rows) / len(rows), 2),
                "proposal_rounds_per_brief": {
                    "mean": round(sum(r.client_rounds for r in presented) / len(presented), 2)
                    if presented
                    else None,
                    "n": len(presented),
                },
                "first_presentation_approval_rate": {
                    "value": round(first_approved / len(presented), 4) if presented else None,
                    "n": len(presented),
                },
                "milestones": {
                    "missed": int(missed.get(client, 0)),
                    "on_time_rate": None,
                    "status": "unavailable",
                },
                "estimate_vs_actual": {"status": "unavailable"},
            }
        )
    return {"clients": clients}
