"""Money, digests, working hours and weeks: exact arithmetic, checked on many generated cases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from services.briefs import money
from services.briefs.dossier import Heading, health
from services.briefs.money import LineItem
from services.briefs.status_report import parse_week, week_of
from services.briefs.workhours import AGENCY_TZ, add_working_hours, is_working_day, working_hours_between

amounts = st.decimals(min_value=0, max_value=Decimal("1e9"), places=4, allow_nan=False, allow_infinity=False)
quantities = st.decimals(min_value=Decimal("0.0001"), max_value=10000, places=4)
lines = st.lists(
    st.builds(
        LineItem, description=st.text(min_size=1, max_size=20), quantity=quantities, unit_price=amounts
    ),
    min_size=1,
    max_size=20,
)


@given(lines)
def test_total_is_the_sum_of_the_rounded_lines_exactly(items: list[LineItem]) -> None:
    total = money.total(items)
    assert total == sum(line.amount for line in items)
    assert total.as_tuple().exponent == -2
    for line in items:
        assert abs(line.amount - line.quantity * line.unit_price) <= Decimal("0.005")


@given(lines)
def test_digest_is_stable_and_survives_a_json_round_trip(items: list[LineItem]) -> None:
    stored = [LineItem.from_json(line.as_json()) for line in items]
    assert money.digest(currency="CNY", lines=items) == money.digest(currency="CNY", lines=stored)
    assert money.digest(currency="CNY", lines=items) != money.digest(currency="USD", lines=items)


def test_digest_changes_with_any_line() -> None:
    base = [LineItem("拍摄", Decimal("1"), Decimal("1000"))]
    assert money.digest(currency="CNY", lines=base) != money.digest(
        currency="CNY", lines=[LineItem("拍摄", Decimal("1"), Decimal("1000.01"))]
    )
    # The same figure written differently is the same estimate.
    assert money.digest(currency="CNY", lines=base) == money.digest(
        currency="CNY", lines=[LineItem("拍摄", Decimal("1.00"), Decimal("1000.000"))]
    )


@given(amounts, amounts, st.decimals(min_value=0, max_value=100, places=2))
def test_reconfirmation_is_exactly_beyond_the_tolerance(
    confirmed: Decimal, new: Decimal, pct: Decimal
) -> None:
    confirmed, new = money.to_fen(confirmed), money.to_fen(new)
    needs = money.needs_reconfirmation(confirmed_total=confirmed, new_total=new, tolerance_percent=pct)
    if confirmed == 0:
        assert needs == (new != 0)
    else:
        assert needs == (abs(new - confirmed) / confirmed * 100 > pct)


moments = st.datetimes(
    min_value=datetime(2024, 1, 1), max_value=datetime(2026, 12, 20), timezones=st.just(UTC)
)


@settings(max_examples=200)
@given(moments, st.integers(min_value=0, max_value=200))
def test_adding_working_hours_counts_only_office_hours(start: datetime, hours: int) -> None:
    end = add_working_hours(start, hours)
    assert end >= start
    assert abs(working_hours_between(start, end) - hours) < 1e-6


def test_a_meeting_on_friday_afternoon_is_reported_by_wednesday() -> None:
    # Friday 2026-11-20 15:00 in Shanghai: 3 h that day, 8 h Monday, 8 h Tuesday, 5 h Wednesday.
    friday = datetime(2026, 11, 20, 15, 0, tzinfo=AGENCY_TZ)
    assert add_working_hours(friday, 24) == datetime(2026, 11, 25, 15, 0, tzinfo=AGENCY_TZ)


def test_statutory_holidays_and_make_up_days_count() -> None:
    national_day = datetime(2026, 10, 1, tzinfo=AGENCY_TZ).date()
    assert not is_working_day(national_day)
    assert is_working_day(datetime(2026, 11, 23, tzinfo=AGENCY_TZ).date())
    # Beyond the package's years the calendar is plain weekdays rather than a crash.
    assert is_working_day(datetime(2031, 3, 3).date())


def test_weeks_are_iso_weeks_in_shanghai() -> None:
    week = parse_week("2026-W47")
    assert week.start == datetime(2026, 11, 16, tzinfo=AGENCY_TZ)
    assert week.end - week.start == timedelta(days=7)
    # Sunday 23:30 UTC is already Monday in Shanghai.
    assert week_of(datetime(2026, 11, 22, 16, 30, tzinfo=UTC)) == "2026-W48"


def test_dossier_health() -> None:
    now = datetime(2026, 11, 23, tzinfo=UTC)
    state = health(
        {Heading.PRODUCT: now - timedelta(days=10), Heading.MARKET: now - timedelta(days=400)},
        now=now,
        stale_after=timedelta(days=180),
    )
    assert state.completeness == 0.125
    assert state.stale == [Heading.MARKET]
    assert len(state.missing) == 14
