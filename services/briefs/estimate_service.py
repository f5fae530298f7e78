"""Cost estimates: versioned line items, sending, the client's written confirmation, actual costs."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from services.briefs import brief_service, money, service
from services.briefs.models import ActualCost, Estimate, EstimateConfirmation, EstimateVersion
from services.briefs.money import EstimateStatus, LineItem
from services.briefs.schemas_work import (
    ActualIn,
    ConfirmationOut,
    ConfirmIn,
    EstimateCreate,
    EstimateOut,
    EstimateUpdate,
    LineIn,
    LineOut,
)
from services.briefs.signoff import IllegalTransition
from shared.clock import Clock
from shared.concurrency import check_if_match
from shared.contracts.briefs import CostRecorded, EstimateConfirmed
from shared.errors import Problem, conflict, not_found
from shared.outbox import Outbox


def _lines(raw: list[LineIn]) -> list[LineItem]:
    return [LineItem(i.description, i.quantity, i.unit_price, i.category) for i in raw]


def _stored_lines(estimate: Estimate) -> list[LineItem]:
    return [LineItem.from_json(raw) for raw in estimate.lines]


def _apply_lines(estimate: Estimate, lines: list[LineItem]) -> None:
    estimate.lines = [line.as_json() for line in lines]
    estimate.total = money.total(lines)
    estimate.digest = money.digest(currency=estimate.currency, lines=lines)


def _snapshot(estimate: Estimate, *, actor: str, at: datetime) -> EstimateVersion:
    return EstimateVersion(
        estimate_id=estimate.id,
        number=estimate.number,
        lines=estimate.lines,
        total=estimate.total,
        digest=estimate.digest,
        created_by=actor,
        created_at=at,
    )


def _illegal(exc: IllegalTransition) -> Problem:
    return conflict(exc.detail, allowed=exc.allowed)


async def create(session: AsyncSession, request: EstimateCreate, *, actor: str, clock: Clock) -> Estimate:
    await service.active_client(session, request.client_id)
    if request.brief_id is not None:
        brief = await brief_service.get_brief(session, request.brief_id)
        if brief.client_id != request.client_id:
            raise Problem(422, "The brief belongs to another client.", slug="mismatch")
    now = clock.now()
    estimate = Estimate(
        client_id=request.client_id,
        brief_id=request.brief_id,
        title=request.title,
        currency=request.currency,
        total=Decimal(0),
        digest="",
        tolerance_percent=request.tolerance_percent,
        created_by=actor,
        created_at=now,
        updated_at=now,
    )
    _apply_lines(estimate, _lines(request.lines))
    session.add(estimate)
    await session.flush()
    session.add(_snapshot(estimate, actor=actor, at=now))
    await session.flush()
    return estimate


async def get(session: AsyncSession, estimate_id: uuid.UUID) -> Estimate:
    estimate = await session.get(Estimate, estimate_id)
    if estimate is None:
        raise not_found("estimate", estimate_id)
    return estimate


async def actual_total(session: AsyncSession, estimate_id: uuid.UUID) -> Decimal:
    amounts = (
        await session.execute(sa.select(ActualCost.amount).where(ActualCost.estimate_id == estimate_id))
    ).scalars()
    return sum(amounts, Decimal("0.00"))


async def estimate_out(session: AsyncSession, estimate: Estimate) -> EstimateOut:
    spent = await actual_total(session, estimate.id)
    confirmations = (
        await session.execute(
            sa.select(EstimateConfirmation)
            .where(EstimateConfirmation.estimate_id == estimate.id)
            .order_by(EstimateConfirmation.recorded_at, EstimateConfirmation.id)
        )
    ).scalars()
    return EstimateOut(
        id=estimate.id,
        client_id=estimate.client_id,
        brief_id=estimate.brief_id,
        title=estimate.title,
        currency=estimate.currency,
        lines=[LineOut(**{**raw, "category": raw.get("category")}) for raw in estimate.lines],
        total=estimate.total,
        digest=estimate.digest,
        version=estimate.number,
        status=estimate.status,  # type: ignore[arg-type]
        tolerance_percent=estimate.tolerance_percent,
        confirmed_version=estimate.confirmed_number,
        confirmed_total=estimate.confirmed_total,
        actual_total=spent,
        remaining=None if estimate.confirmed_total is None else estimate.confirmed_total - spent,
        declined_reason=estimate.declined_reason,
        allowed_actions=list(money.allowed_actions(EstimateStatus(estimate.status))),
        confirmations=[ConfirmationOut.model_validate(c) for c in confirmations],
        created_by=estimate.created_by,
        created_at=estimate.created_at,
        updated_at=estimate.updated_at,
    )


async def edit(
    session: AsyncSession,
    estimate_id: uuid.UUID,
    changes: EstimateUpdate,
    *,
    if_match: str | None,
    actor: str,
    clock: Clock,
) -> Estimate:
    """New lines make a new version; beyond the tolerance a confirmed estimate must be confirmed again."""
    estimate = await get(session, estimate_id)
    check_if_match(if_match, estimate.version)
    now = clock.now()
    if changes.title is not None:
        estimate.title = changes.title
    if changes.tolerance_percent is not None:
        estimate.tolerance_percent = changes.tolerance_percent
    if changes.lines is not None:
        lines = _lines(changes.lines)
        if money.digest(currency=estimate.currency, lines=lines) != estimate.digest:
            try:
                estimate.status = money.after_edit(
                    EstimateStatus(estimate.status),
                    confirmed_total=estimate.confirmed_total,
                    new_total=money.total(lines),
                    tolerance_percent=estimate.tolerance_percent,
                ).value
            except IllegalTransition as exc:
                raise _illegal(exc) from None
            _apply_lines(estimate, lines)
            estimate.number += 1
            session.add(_snapshot(estimate, actor=actor, at=now))
    estimate.updated_at = now
    estimate.version += 1
    await session.flush()
    return estimate


async def send(session: AsyncSession, estimate_id: uuid.UUID, *, clock: Clock) -> Estimate:
    estimate = await get(session, estimate_id)
    try:
        money.check(EstimateStatus(estimate.status), "send")
    except IllegalTransition as exc:
        raise _illegal(exc) from None
    now = clock.now()
    estimate.status, estimate.sent_at, estimate.updated_at = EstimateStatus.SENT.value, now, now
    estimate.version += 1
    await session.flush()
    return estimate


async def confirm(
    session: AsyncSession,
    estimate_id: uuid.UUID,
    request: ConfirmIn,
    *,
    actor: str,
    outbox: Outbox,
    clock: Clock,
) -> Estimate:
    """The client's written confirmation of exactly the version whose hash it quotes."""
    estimate = await get(session, estimate_id)
    try:
        money.check(EstimateStatus(estimate.status), "confirm")
    except IllegalTransition as exc:
        raise _illegal(exc) from None
    if request.digest != estimate.digest:
        raise conflict(
            f"The confirmation quotes another version of the estimate; the current version {estimate.number} "
            f"has digest {estimate.digest}.",
            allowed=["confirm"],
        )
    now = clock.now()
    if request.confirmed_at > now:
        raise Problem(422, "confirmed_at is in the future.", slug="validation")
    session.add(
        EstimateConfirmation(
            estimate_id=estimate.id,
            number=estimate.number,
            digest=estimate.digest,
            total=estimate.total,
            confirmed_by=request.confirmed_by,
            confirmed_at=request.confirmed_at,
            method=request.method.value,
            evidence_ref=request.evidence_ref,
            recorded_by=actor,
            recorded_at=now,
        )
    )
    estimate.status = EstimateStatus.CONFIRMED.value
    estimate.confirmed_number, estimate.confirmed_total = estimate.number, estimate.total
    estimate.updated_at = now
    estimate.version += 1
    await outbox.add(
        session,
        "briefs.estimate.confirmed.v1",
        EstimateConfirmed(
            estimate_id=estimate.id,
            client_id=estimate.client_id,
            brief_id=estimate.brief_id,
            version=estimate.number,
            digest=estimate.digest,
            total=estimate.total,
            currency=estimate.currency,
            confirmed_by=request.confirmed_by,
            confirmed_at=request.confirmed_at,
            method=request.method.value,
            recorded_by=actor,
        ),
        subject=str(estimate.id),
    )
    await session.flush()
    return estimate


async def decline(session: AsyncSession, estimate_id: uuid.UUID, reason: str, *, clock: Clock) -> Estimate:
    estimate = await get(session, estimate_id)
    try:
        money.check(EstimateStatus(estimate.status), "decline")
    except IllegalTransition as exc:
        raise _illegal(exc) from None
    estimate.status, estimate.declined_reason = EstimateStatus.DECLINED.value, reason
    estimate.updated_at = clock.now()
    estimate.version += 1
    await session.flush()
    return estimate


async def record_actual(
    session: AsyncSession,
    estimate_id: uuid.UUID,
    request: ActualIn,
    *,
    actor: str,
    clock: Clock,
    outbox: Outbox,
) -> ActualCost:
    """Money spent against a confirmed estimate; spending beyond it shows in `remaining`, and the cost is
    published for the estimate-vs-actual report."""
    estimate = await get(session, estimate_id)
    try:
        money.check(EstimateStatus(estimate.status), "record_actual")
    except IllegalTransition as exc:
        raise _illegal(exc) from None
    cost = ActualCost(
        estimate_id=estimate.id,
        client_id=estimate.client_id,
        description=request.description,
        amount=money.to_fen(request.amount),
        incurred_on=request.incurred_on,
        reference=request.reference,
        recorded_by=actor,
        recorded_at=clock.now(),
    )
    session.add(cost)
    await session.flush()
    await outbox.add(
        session,
        "briefs.cost.recorded.v1",
        CostRecorded(
            cost_id=cost.id,
            estimate_id=estimate.id,
            client_id=estimate.client_id,
            brief_id=estimate.brief_id,
            amount=cost.amount,
            currency=estimate.currency,
            incurred_on=cost.incurred_on,
            recorded_by=actor,
            recorded_at=cost.recorded_at,
        ),
        subject=str(estimate.id),
    )
    return cost


async def actuals(session: AsyncSession, estimate_id: uuid.UUID) -> list[ActualCost]:
    await get(session, estimate_id)
    rows = await session.execute(
        sa.select(ActualCost)
        .where(ActualCost.estimate_id == estimate_id)
        .order_by(ActualCost.incurred_on, ActualCost.id)
    )
    return list(rows.scalars())


def month_bounds(month: str) -> tuple[date, date]:
    """`2026-11` → the first day of the month and of the next."""
    try:
        first = date.fromisoformat(f"{month}-01")
        following = date(first.year + (first.month == 12), first.month % 12 + 1, 1)
    except ValueError:  # not a month, or the last month a calendar holds
        raise Problem(422, "month must be a calendar month such as 2026-11.", slug="validation") from None
    return first, following
