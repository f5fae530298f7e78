"""Monthly budget reconciliation per client: what the client confirmed against what was spent."""

from __future__ import annotations

import uuid
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from services.briefs import service
from services.briefs.estimate_service import month_bounds
from services.briefs.models import ActualCost, Estimate
from services.briefs.schemas_work import ReconciliationLine, ReconciliationOut

ZERO = Decimal("0.00")


async def reconcile(session: AsyncSession, client_id: uuid.UUID, month: str) -> ReconciliationOut:
    """Every estimate with a confirmation or spending up to the month's end; declined ones are left out."""
    await service.get_client(session, client_id)
    first, following = month_bounds(month)
    estimates = list(
        (
            await session.execute(
                sa.select(Estimate)
                .where(Estimate.client_id == client_id, Estimate.status != "declined")
                .order_by(Estimate.id)
            )
        ).scalars()
    )
    costs = list(
        (
            await session.execute(
                sa.select(ActualCost).where(
                    ActualCost.client_id == client_id, ActualCost.incurred_on < following
                )
            )
        ).scalars()
    )
    lines = []
    for estimate in estimates:
        mine = [c for c in costs if c.estimate_id == estimate.id]
        estimated = estimate.confirmed_total if estimate.confirmed_total is not None else estimate.total
        in_month = sum((c.amount for c in mine if c.incurred_on >= first), ZERO)
        to_date = sum((c.amount for c in mine), ZERO)
        lines.append(
            ReconciliationLine(
                estimate_id=estimate.id,
                title=estimate.title,
                currency=estimate.currency,
                status=estimate.status,
                estimated=estimated,
                actual_in_month=in_month,
                actual_to_date=to_date,
                remaining=estimated - to_date,
                over_budget=to_date > estimated,
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
