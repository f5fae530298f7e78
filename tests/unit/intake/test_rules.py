"""Normalisation, masking, classification and warranty: intake's rules as plain functions."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from services.intake.classification import DEFAULT_RULES, Rule, classify
from services.intake.identifiers import normalise_email, normalise_id_card, normalise_phone
from services.intake.masking import mask_address, mask_email, mask_id_card, mask_phone
from services.intake.purchases import warranty_until
from services.intake.schemas import ContactCustomer
from shared.contracts.common import ContactKind, Priority, Tier


@pytest.mark.parametrize("raw", ["13800138000", "+86 138 0013 8000", "138-0013-8000", "(+86) 138 0013 8000"])
def test_mobile_number_forms_are_one_number(raw: str) -> None:
    assert normalise_phone(raw) == "+8613800138000"


def test_beijing_landline() -> None:
    assert normalise_phone("010-12345678") == "+861012345678"


@pytest.mark.parametrize("raw", ["12345", "138001380001234", "not a phone", "+86 000 0000 0000"])
def test_invalid_numbers_are_rejected_with_a_clear_error(raw: str) -> None:
    with pytest.raises(ValidationError) as error:
        ContactCustomer(phone=raw)
    assert error.value.errors()[0]["type"] == "phone_invalid"


def test_email_and_id_number_normalisation() -> None:
    assert normalise_email("  Li.Na@QQ.com ") == "li.na@qq.com"
    assert normalise_id_card("11010519491231002x") == "11010519491231002X"
    with pytest.raises(ValueError):
        normalise_id_card("1101051949")


def test_masking() -> None:
    assert mask_phone("+8613800138000") == "138****8000"
    assert mask_phone("+861012345678") == "101****5678"
    assert mask_email("zhangwei@qq.com") == "z***@qq.com"
    assert mask_id_card("11010519491231002X") == "1101**********002X"
    assert mask_address("上海市浦东新区世纪大道100号") == "上海市浦东新****"


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("我要投诉你们的快递员", ContactKind.COMPLAINT),
        ("洗衣机故障,无法脱水", ContactKind.REPAIR),
        ("The dishwasher is broken", ContactKind.REPAIR),
        ("I want to file a complaint", ContactKind.COMPLAINT),
        ("建议你们增加夜间客服", ContactKind.SUGGESTION),
        ("谢谢你们的反馈处理", ContactKind.FEEDBACK),
        ("请问这款冰箱有几种颜色?", ContactKind.INQUIRY),
        # A complaint about a broken product is a complaint first.
        ("投诉:修了三次还是坏了", ContactKind.COMPLAINT),
    ],
)
def test_kind_from_keywords(text: str, kind: ContactKind) -> None:
    assert classify(text, DEFAULT_RULES).kind == kind


def test_urgent_words_and_vip_floor() -> None:
    assert classify("紧急!热水器冒烟了", DEFAULT_RULES).priority == Priority.URGENT
    assert classify("This is an emergency", DEFAULT_RULES).priority == Priority.URGENT
    assert classify("请问营业时间", DEFAULT_RULES).priority == Priority.NORMAL
    assert classify("请问营业时间", DEFAULT_RULES, tier=Tier.VIP).priority == Priority.HIGH
    assert classify("紧急", DEFAULT_RULES, tier=Tier.VIP).priority == Priority.URGENT
    assert classify("请问", DEFAULT_RULES, tier=Tier.VIP, priority=Priority.LOW).priority == Priority.HIGH


def test_explicit_kind_wins_and_rules_are_data() -> None:
    assert classify("投诉", DEFAULT_RULES, kind=ContactKind.INQUIRY).kind == ContactKind.INQUIRY
    custom = [Rule("kind", ContactKind.REPAIR, ("滴水",))]
    verdict = classify("空调滴水", custom)
    assert verdict.kind == ContactKind.REPAIR
    assert verdict.matched == ("滴水",)


def test_warranty_until_is_the_last_covered_day() -> None:
    assert warranty_until(date(2026, 1, 15), 12) == date(2027, 1, 14)
    assert warranty_until(date(2026, 1, 31), 1) == date(2026, 2, 27)
    assert warranty_until(date(2024, 2, 29), 12) == date(2025, 2, 27)


@given(
    st.dates(min_value=date(2000, 1, 1), max_value=date(2090, 1, 1)), st.integers(min_value=1, max_value=120)
)
def test_longer_warranty_never_ends_earlier(bought: date, months: int) -> None:
    assert warranty_until(bought, months) >= bought
    assert warranty_until(bought, months + 1) > warranty_until(bought, months)
