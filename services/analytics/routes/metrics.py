"""`/v1/metrics…`: the dashboard headline, ticket KPIs, satisfaction and agency metrics."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

import sqlalchemy as sa
from fastapi import APIRouter, Query

from services.analytics.agency import brief_metrics
from services.analytics.buckets import Grain, window, zone
from services.analytics.kpis import BREAKDOWNS, TicketFilters, ticket_kpis
from services.analytics.models import SlaEvent, TicketFact
from services.analytics.satisfaction import SEGMENTS, satisfaction
from services.analytics.schemas import Overview, Report
from services.analytics.settings import analytics_settings
from shared.app import ClockDep, ReadSessionDep
from shared.auth import require
from shared.errors import Problem, problem_responses

router = APIRouter(prefix="/v1/metrics", tags=["metrics"], responses=problem_responses(401, 403, 422))

Since = Annotated[
    datetime | None, Query(description="Inclusive start, ISO 8601 (default: 30 days before until).")
]
Until = Annotated[datetime | None, Query(description="Exclusive end, ISO 8601 (default: now).")]
Dimension = Annotated[str | None, Query(max_length=200)]


@router.get("/overview", response_model=Overview, dependencies=[require("metrics:read")])
async def overview(
    session: ReadSessionDep,
    since: Annotated[datetime | None, Query(description="Inclusive start, ISO 8601.")] = None,
    until: Annotated[datetime | None, Query(description="Exclusive end, ISO 8601.")] = None,
) -> Overview:
    """Headline figures for the operations dashboard."""

    def within(column: Any) -> list[Any]:
        clauses = []
        if since is not None:
            clauses.append(column >= since)
        if until is not None:
            clauses.append(column < until)
        return clauses

    created = (
        await session.execute(
            sa.select(sa.func.count()).select_from(TicketFact).where(*within(TicketFact.created_at))
        )
    ).scalar_one()
    resolved = (
        await session.execute(
            sa.select(sa.func.count())
            .select_from(TicketFact)
            .where(TicketFact.status.in_(("resolved", "closed")), *within(TicketFact.resolved_at))
        )
    ).scalar_one()
    open_end = [TicketFact.created_at < until] if until else []
    backlog = (
        await session.execute(
            sa.select(sa.func.count())
            .select_from(TicketFact)
            .where(
                *open_end,
                sa.or_(
                    TicketFact.status.not_in(("resolved", "closed")),
                    *([TicketFact.resolved_at >= until] if until else []),
                ),
            )
        )
    ).scalar_one()
    outcomes = dict(
        (
            await session.execute(
                sa.select(SlaEvent.outcome, sa.func.count())
                .where(*within(SlaEvent.occurred_at))
                .group_by(SlaEvent.outcome)
            )
        ).all()
    )
    return Overview(
        tickets_created=created,
        tickets_resolved=resolved,
        backlog=backlog,
        sla_breaches=outcomes.get("breach", 0),
        sla_warnings=outcomes.get("warning", 0),
        since=since,
        until=until,
    )


@router.get("/tickets", response_model=Report, dependencies=[require("metrics:read")])
async def tickets(
    session: ReadSessionDep,
    clock: ClockDep,
    since: Since = None,
    until: Until = None,
    group_by: Annotated[Grain, Query(description="Bucket size.")] = Grain.DAY,
    tz: Annotated[str, Query(max_length=64, description="IANA time zone of the buckets.")] = "Asia/Shanghai",
    kind: Dimension = None,
    priority: Dimension = None,
    channel: Dimension = None,
    group: Dimension = None,
    agent: Dimension = None,
    policy: Dimension = None,
    category: Dimension = None,
    customer_tier: Dimension = None,
    include: Annotated[
        str | None,
        Query(
            max_length=100,
            description=(
                "Breakdowns to add, comma-separated: `agents` (`by_agent`), `groups` (`by_group`), "
                "`breaches` (`breaches_by` policy, kind, priority, channel, group and agent), "
                "`categories` (`top_complaint_categories`). Without it the report is the headline series."
            ),
            examples=["agents,groups,breaches,categories"],
        ),
    ] = None,
) -> dict[str, Any]:
    """Ticket KPIs: volumes, backlog, response and resolution percentiles, SLA achievement per bucket.

    Per bucket and for the window: tickets created and resolved, the backlog, first response and
    resolution p50/p90/p99 given twice — `calendar` (wall-clock seconds) and `business` (seconds while the
    reporting calendar is open) — SLA achievement, reopen and one-touch resolution rates. First response is
    bucketed by creation, resolution by resolution time, SLA outcomes by when they happened.

    The breakdowns per agent, per group, of breaches by dimension and of complaint categories cost more
    and are added only when named in `include`.
    """
    now = clock.now()
    start, end = window(since, until, now)
    breakdowns = _breakdowns(include)
    filters = TicketFilters(kind, priority, channel, group, agent, policy, category, customer_tier)
    figures = await ticket_kpis(
        session,
        since=start,
        until=end,
        grain=group_by,
        tz=zone(tz),
        filters=filters,
        include=breakdowns,
        now=now,
    )
    settings = analytics_settings()
    hours = ", ".join(f"{a}–{b}" for a, b in settings.business_hours)
    return {
        "since": start,
        "until": end,
        "group_by": group_by,
        "time_zone": tz,
        "filters": filters.active(),
        "business_time": (
            f"Chinese statutory working days (with make-up days), {hours} {settings.business_time_zone}"
        ),
        "percentiles": "DDSketch, 1% relative accuracy",
        "include": sorted(breakdowns),
        **figures,
    }


def _breakdowns(include: str | None) -> set[str]:
    names = {name.strip() for name in (include or "").split(",") if name.strip()}
    if unknown := names - set(BREAKDOWNS):
        raise Problem(
            422,
            f"Unknown breakdowns {', '.join(sorted(unknown))}; choose from {', '.join(BREAKDOWNS)}.",
            slug="invalid-include",
        )
    return names


@router.get("/satisfaction", response_model=Report, dependencies=[require("metrics:read")])
async def satisfaction_report(
    session: ReadSessionDep,
    clock: ClockDep,
    since: Since = None,
    until: Until = None,
    segment_by: Annotated[
        Literal["kind", "priority", "channel", "group", "agent", "client"] | None, Query()
    ] = None,
    min_n: Annotated[int | None, Query(ge=1, le=100_000, description="Minimum answers for a figure.")] = None,
    kind: Dimension = None,
    priority: Dimension = None,
    channel: Dimension = None,
    group: Dimension = None,
    agent: Dimension = None,
    client: uuid.UUID | None = None,
) -> dict[str, Any]:
    """CSAT % with a Wilson 95 % interval, NPS with its margin, CES, response rate — each with its `n`."""
    start, end = window(since, until, clock.now())
    filters: dict[str, Any] = {
        k: v
        for k, v in {
            "kind": kind,
            "priority": priority,
            "channel": channel,
            "group": group,
            "agent": agent,
            "client": client,
        }.items()
        if v is not None and k in SEGMENTS
    }
    threshold = min_n or analytics_settings().min_segment_n
    figures = await satisfaction(
        session, since=start, until=end, min_n=threshold, segment_by=segment_by, filters=filters
    )
    return {
        "since": start,
        "until": end,
        "filters": {k: str(v) for k, v in filters.items()},
        "min_n": threshold,
        "definitions": {
            "csat": "share of 4–5 answers on 1–5, Wilson score 95% interval",
            "nps": "% promoters (9–10) − % detractors (0–6), 95% margin of error",
            "ces": "mean on 1–7 and share of answers ≥ 5",
            "response_rate": "answered surveys / surveys sent; ratings of reopened tickets are left out",
        },
        **figures,
    }


@router.get("/briefs", response_model=Report, dependencies=[require("metrics:read")])
async def briefs(
    session: ReadSessionDep,
    clock: ClockDep,
    since: Since = None,
    until: Until = None,
    client: uuid.UUID | None = None,
) -> dict[str, Any]:
    """Agency delivery per client: brief turnaround, sign-off, proposal rounds, first-presentation approvals,
    on-time milestones and confirmed estimates against actual costs."""
    start, end = window(since, until, clock.now())
    figures = await brief_metrics(session, since=start, until=end, client_id=client)
    return {"since": start, "until": end, "filters": {"client": str(client)} if client else {}, **figures}
