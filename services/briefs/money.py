"""Cost-estimate arithmetic and workflow: exact `Decimal` money, version digests, re-confirmation rules."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from typing import Any

from services.briefs.signoff import IllegalTransition

FEN = Decimal("0.01")


def to_fen(amount: Decimal) -> Decimal:
    """Rounded to the fen (0.01) half-up, as invoices are."""
    return amount.quantize(FEN, rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class LineItem:
    description: str
    quantity: Decimal
    unit_price: Decimal
    category: str | None = None

    @property
    def amount(self) -> Decimal:
        return to_fen(self.quantity * self.unit_price)

    def as_json(self) -> dict[str, Any]:
        return {
            "description": self.description,
            "category": self.category,
            "quantity": str(self.quantity),
            "unit_price": str(self.unit_price),
            "amount": str(self.amount),
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> LineItem:
        return cls(
            description=raw["description"],
            quantity=Decimal(raw["quantity"]),
            unit_price=Decimal(raw["unit_price"]),
            category=raw.get("category"),
        )


def total(lines: Iterable[LineItem]) -> Decimal:
    """The sum of the rounded line amounts, so the total always equals what the lines show."""
    return sum((line.amount for line in lines), Decimal("0.00"))


def digest(*, currency: str, lines: Sequence[LineItem]) -> str:
    """A SHA-256 of what the client is asked to confirm: currency and every line, amounts normalised."""
    canonical = {
        "currency": currency,
        "lines": [
            {
                "description": line.description,
                "category": line.category,
                "quantity": format(line.quantity.normalize(), "f"),
                "unit_price": format(line.unit_price.normalize(), "f"),
                "amount": str(line.amount),
            }
            for line in lines
        ],
    }
    blob = json.dumps(canonical, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def needs_reconfirmation(*, confirmed_total: Decimal, new_total: Decimal, tolerance_percent: Decimal) -> bool:
    """A confirmed estimate changed by more than the tolerance (a share of the confirmed total) is
    confirmed again; an increase from nothing is always a change beyond tolerance."""
    change = abs(new_total - confirmed_total)
    if confirmed_total == 0:
        return change > 0
    return change * 100 > confirmed_total * tolerance_percent


class EstimateStatus(StrEnum):
    DRAFT = "draft"
    SENT = "sent"
    CONFIRMED = "confirmed"
    DECLINED = "declined"


_ALLOWED: Mapping[EstimateStatus, tuple[str, ...]] = {
    EstimateStatus.DRAFT: ("edit", "send"),
    EstimateStatus.SENT: ("edit", "confirm", "decline"),
    EstimateStatus.CONFIRMED: ("edit", "record_actual"),
    EstimateStatus.DECLINED: ("edit",),
}


def allowed_actions(status: EstimateStatus) -> tuple[str, ...]:
    return _ALLOWED[status]


def check(status: EstimateStatus, action: str) -> None:
    if action not in _ALLOWED[status]:
        raise IllegalTransition(
            f"A {status} estimate cannot be given the action {action!r}.", _ALLOWED[status]
        )


def after_edit(
    status: EstimateStatus, *, confirmed_total: Decimal | None, new_total: Decimal, tolerance_percent: Decimal
) -> EstimateStatus:
    """Where an edit leaves an estimate: a sent or declined one goes back to draft (the client saw other
    figures); a confirmed one stays confirmed only within tolerance of what the client confirmed."""
    check(status, "edit")
    if status is EstimateStatus.CONFIRMED:
        assert confirmed_total is not None
        if not needs_reconfirmation(
            confirmed_total=confirmed_total, new_total=new_total, tolerance_percent=tolerance_percent
        ):
            return EstimateStatus.CONFIRMED
    return EstimateStatus.DRAFT
