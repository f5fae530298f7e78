"""Purchases and warranty: what the customer bought, and whether the warranty still covers it."""

from __future__ import annotations

import uuid
from datetime import date

import sqlalchemy as sa
from dateutil.relativedelta import relativedelta
from sqlalchemy.ext.asyncio import AsyncSession

from services.intake.models import Purchase
from services.intake.schemas import PurchaseCreate, PurchaseOut
from shared.clock import Clock


def warranty_until(purchased_at: date, months: int) -> date:
    """The last day covered: a 12-month warranty bought on 2026-01-31 covers up to 2027-01-30."""
    return purchased_at + relativedelta(months=months) - relativedelta(days=1)


def in_warranty(purchase: Purchase, as_of: date) -> bool:
    return purchase.purchased_at <= as_of <= purchase.warranty_until


async def record(
    session: AsyncSession, customer_id: uuid.UUID, request: PurchaseCreate, *, clock: Clock
) -> tuple[Purchase, bool]:
    """Record a purchase once per (order, serial); returns it and whether it was new."""
    if request.order_id is not None:
        existing = (
            await session.execute(
                sa.select(Purchase).where(
                    Purchase.order_id == request.order_id, Purchase.serial == request.serial
                )
            )
        ).scalar_one_or_none()
        if existing is not None:
            return existing, False
    purchase = Purchase(
        customer_id=customer_id,
        product=request.product,
        model=request.model,
        serial=request.serial,
        purchased_at=request.purchased_at,
        warranty_months=request.warranty_months,
        warranty_until=warranty_until(request.purchased_at, request.warranty_months),
        order_id=request.order_id,
        created_at=clock.now(),
    )
    session.add(purchase)
    await session.flush()
    return purchase, True


async def by_serial(session: AsyncSession, serial: str, customer_id: uuid.UUID | None) -> Purchase | None:
    """The purchase with this serial, preferring the customer's own."""
    rows = (
        (await session.execute(sa.select(Purchase).where(Purchase.serial == serial.strip()))).scalars().all()
    )
    own = [p for p in rows if p.customer_id == customer_id]
    return (own or rows or [None])[0]


def purchase_out(purchase: Purchase, as_of: date) -> PurchaseOut:
    return PurchaseOut.model_validate({**purchase.model_dump(), "in_warranty": in_warranty(purchase, as_of)})
