"""Classifying a contact by rules that are data: keywords (Chinese and English) → kind and priority."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from shared.contracts.common import ContactKind, Priority, Tier

PRIORITY_ORDER = [Priority.LOW, Priority.NORMAL, Priority.HIGH, Priority.URGENT]


@dataclass(frozen=True)
class Rule:
    target: str  # "kind" or "priority"
    value: str
    keywords: tuple[str, ...]


# Seeded on first start; operators change them through the API. Order matters: the first match wins, so
# a complaint about a broken product is a complaint, and repair words only decide the rest.
DEFAULT_RULES: tuple[Rule, ...] = (
    Rule(
        "kind",
        ContactKind.COMPLAINT,
        ("投诉", "不满", "差评", "欺骗", "退款", "complaint", "complain", "unacceptable", "refund"),
    ),
    Rule(
        "kind",
        ContactKind.REPAIR,
        (
            "维修",
            "故障",
            "坏了",
            "修理",
            "漏水",
            "不工作",
            "无法开机",
            "上门",
            "repair",
            "broken",
            "fault",
            "not working",
            "doesn't work",
            "leak",
        ),
    ),
    Rule(
        "kind",
        ContactKind.SUGGESTION,
        ("建议", "希望增加", "改进", "suggest", "suggestion", "would be nice", "feature request"),
    ),
    Rule("kind", ContactKind.FEEDBACK, ("反馈", "表扬", "感谢", "feedback", "thank you", "thanks", "praise")),
    Rule(
        "priority",
        Priority.URGENT,
        (
            "紧急",
            "加急",
            "马上",
            "立即",
            "危险",
            "冒烟",
            "起火",
            "urgent",
            "emergency",
            "asap",
            "immediately",
            "smoke",
            "fire",
        ),
    ),
    Rule("priority", Priority.HIGH, ("尽快", "严重", "多次", "soon", "serious", "repeatedly")),
)


@dataclass(frozen=True)
class Classification:
    kind: ContactKind
    priority: Priority
    matched: tuple[str, ...]  # the keywords that decided, for the agent to see why


def classify(
    text: str,
    rules: Sequence[Rule],
    *,
    tier: Tier = Tier.STANDARD,
    kind: ContactKind | None = None,
    priority: Priority | None = None,
) -> Classification:
    """Kind and priority given explicitly win; otherwise the first matching rule; VIPs are at least high."""
    lowered = text.lower()
    matched: list[str] = []

    def first(target: str) -> str | None:
        for rule in rules:
            if rule.target != target:
                continue
            hit = next((k for k in rule.keywords if k.lower() in lowered), None)
            if hit is not None:
                matched.append(hit)
                return rule.value
        return None

    chosen_kind = kind or ContactKind(first("kind") or ContactKind.INQUIRY)
    chosen_priority = priority or Priority(first("priority") or Priority.NORMAL)
    if tier == Tier.VIP and PRIORITY_ORDER.index(chosen_priority) < PRIORITY_ORDER.index(Priority.HIGH):
        chosen_priority = Priority.HIGH  # important customers get the priority channel (DOMAIN rule 6)
    return Classification(chosen_kind, chosen_priority, tuple(matched))
