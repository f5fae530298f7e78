"""Monthly budget reconciliation per client: what the client confirmed against what was spent."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from services.briefs import service
from services.briefs.estimate_service import month_bounds
from services.briefs.models import ActualCost, Estimate, EstimateConfirmation
from services.briefs.schemas_work import ReconciliationLine, ReconciliationOut
from services.briefs.workhours import AGENCY_TZ

ZERO = Decimal("0.00")


@dataclass(frozen=True)
class Budget:
    """An estimate as the reconciliation sees it."""

    estimate_id: uuid.UUID
    title: str
    currency: str
    status: str
    estimated: Decimal  # the confirmed total, or the current total while never confirmed
    first_confirmed_on: date | None  # the agency's (Shanghai) date of the first written confirmation


@dataclass(frozen=True)
class Spend:
    estimate_id: uuid.UUID
    amount: Decimal
    incurred_on: date


def reconcile_month(
    *,
    client_id: uuid.UUID,
    month: str,
    first: date,
    following: date,
    budgets: Sequence[Budget],
    spending: Sequence[Spend],
) -> ReconciliationOut:
    """Each estimate the client had confirmed by the month's end, or that money was spent against by then
    (a declined estimate only in the second case), with that month's and all spending up to its end."""
    counted = [s for s in spending if s.incurred_on < following]
    lines = []
    for budget in budgets:
        mine = [s.amount for s in counted if s.estimate_id == budget.estimate_id]
        in_month = [
            s.amount for s in counted if s.estimate_id == budget.estimate_id and s.incurred_on >= first
        ]
        confirmed_by_then = budget.first_confirmed_on is not None and budget.first_confirmed_on < following
        if not mine and (budget.status == "declined" or not confirmed_by_then):
            continue
        to_date = sum(mine, ZERO)
        lines.append(
            ReconciliationLine(
                estimate_id=budget.estimate_id,
                title=budget.title,
                currency=budget.currency,
                status=budget.status,
                estimated=budget.estimated,
                actual_in_month=sum(in_month, ZERO),
                actual_to_date=to_date,
                remaining=budget.estimated - to_date,
                over_budget=to_date > budget.estimated,
            )
        )
    currencies = {line.currency for line in lines} or {"CNY"}
    # Totals across currencies would add yuan to dollars; a mixed client gets per-estimate lines only.
    currency = currencies.pop() if len(currencies) == 1 else "MIXED"
    same = currency != "MIXED"
    return ReconciliationOut(
        client_id=client_id,
        month=month,
        currency=currency,
        estimates=lines,
        estimated=sum((x.estimated for x in lines), ZERO) if same else ZERO,
        actual_in_month=sum((x.actual_in_month for x in lines), ZERO) if same else ZERO,
        actual_to_date=sum((x.actual_to_date for x in lines), ZERO) if same else ZERO,
        remaining=sum((x.remaining for x in lines), ZERO) if same else ZERO,
    )


def _agency_date(moment: datetime) -> date:
    return moment.astimezone(AGENCY_TZ).date()


async def reconcile(session: AsyncSession, client_id: uuid.UUID, month: str) -> ReconciliationOut:
    """The month's reconciliation for one client, read from its estimates, confirmations and costs."""
    first, following = month_bounds(month)
    await service.get_client(session, client_id)
    confirmations = (
        await session.execute(
            sa.select(EstimateConfirmation.estimate_id, EstimateConfirmation.confirmed_at)
            .join(Estimate, Estimate.id == EstimateConfirmation.estimate_id)
            .where(Estimate.client_id == client_id)
        )
    ).all()
    first_confirmed: dict[uuid.UUID, date] = {}
    for estimate_id, confirmed_at in confirmations:
        on = _agency_date(confirmed_at)
        first_confirmed[estimate_id] = min(on, first_confirmed.get(estimate_id, on))
    estimates = (
        await session.execute(
            sa.select(Estimate).where(Estimate.client_id == client_id).order_by(Estimate.id)
        )
    ).scalars()
    costs = (
        await session.execute(
            sa.select(ActualCost).where(ActualCost.client_id == client_id, ActualCost.incurred_on < following)
        )
    ).scalars()
    budgets = [
        Budget(
            estimate_id=e.id,
            title=e.title,
            currency=e.currency,
            status=e.status,
            estimated=e.confirmed_total if e.confirmed_total is not None else e.total,
            first_confirmed_on=first_confirmed.get(e.id),
        )
        for e in estimates
    ]
    spending = [Spend(c.estimate_id, c.amount, c.incurred_on) for c in costs]
    return reconcile_month(
        client_id=client_id, month=month, first=first, following=following, budgets=budgets, spending=spending
    )
