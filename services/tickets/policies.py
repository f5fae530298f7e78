"""SLA policies as data: the seeded defaults from the domain's response standards, and matching."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from services.tickets.models import SlaPolicy, Ticket

HOUR = 3600
METRICS = ("first_response", "next_response", "resolution")
CONDITION_FIELDS = ("kinds", "priorities", "channels", "tiers", "categories")
DEFAULT_PAUSE = {metric: ["waiting_customer"] for metric in METRICS}
DEFAULT_LADDER: list[dict[str, Any]] = [
    {"raise_priority": True, "group": "supervisors", "notify": ["supervisors"]},
    {"raise_priority": True, "group": "senior_management", "notify": ["senior_management"]},
]
PRIORITY_ORDER = ("low", "normal", "high", "urgent")

_NS = uuid.UUID("6d1f0c2e-3b7a-4c5e-9a51-1f0a7c3e9b20")
CALENDAR_24X7 = uuid.uuid5(_NS, "calendar:24x7")
CALENDAR_CHINA_OFFICE = uuid.uuid5(_NS, "calendar:china-office")

# DOMAIN rule 5: inquiries 24 h reply / 48 h solve; complaints answered and solved within 48 h (a reply
# within 24 h as for inquiries); after-sales reply within 2 h and on-site or solved within 24 h. Urgent
# cases and important (VIP) customers get a priority channel (rule 6): tighter targets.
DEFAULT_POLICIES: list[dict[str, Any]] = [
    {
        "name": "Urgent repair",
        "conditions": {"kinds": ["repair"], "priorities": ["urgent"]},
        "targets": {"first_response": 1 * HOUR, "resolution": 8 * HOUR},
    },
    {
        "name": "VIP repair",
        "conditions": {"kinds": ["repair"], "tiers": ["vip"]},
        "targets": {"first_response": 1 * HOUR, "resolution": 12 * HOUR},
    },
    {
        "name": "After-sales repair",
        "conditions": {"kinds": ["repair"]},
        "targets": {"first_response": 2 * HOUR, "resolution": 24 * HOUR},
    },
    {
        "name": "Urgent complaint or inquiry",
        "conditions": {"kinds": ["complaint", "inquiry"], "priorities": ["urgent"]},
        "targets": {"first_response": 2 * HOUR, "resolution": 24 * HOUR},
    },
    {
        "name": "VIP complaint or inquiry",
        "conditions": {"kinds": ["complaint", "inquiry"], "tiers": ["vip"]},
        "targets": {"first_response": 4 * HOUR, "resolution": 24 * HOUR},
    },
    {
        "name": "Complaint",
        "conditions": {"kinds": ["complaint"]},
        "targets": {"first_response": 24 * HOUR, "resolution": 48 * HOUR},
    },
    {
        "name": "Inquiry",
        "conditions": {"kinds": ["inquiry"]},
        "targets": {"first_response": 24 * HOUR, "resolution": 48 * HOUR},
    },
]


def default_policy_rows() -> list[dict[str, Any]]:
    return [
        {
            "id": uuid.uuid5(_NS, f"policy:{spec['name']}"),
            "position": (index + 1) * 10,
            "calendar_id": CALENDAR_24X7,
            "warning": {"fraction": 0.8},
            "pause_statuses": DEFAULT_PAUSE,
            "escalation": DEFAULT_LADDER,
            **spec,
        }
        for index, spec in enumerate(DEFAULT_POLICIES)
    ]


def matches(policy: SlaPolicy, ticket: Ticket) -> bool:
    """Every condition the policy sets must hold; an absent or empty condition matches anything."""
    values = {
        "kinds": ticket.kind,
        "priorities": ticket.priority,
        "channels": ticket.channel,
        "tiers": ticket.customer_tier,
        "categories": ticket.category,
    }
    for field, value in values.items():
        wanted = policy.conditions.get(field) or []
        if wanted and value not in wanted:
            return False
    return True


def first_match(policies: Sequence[SlaPolicy], ticket: Ticket) -> SlaPolicy | None:
    for policy in sorted(policies, key=lambda p: p.position):
        if policy.active and matches(policy, ticket):
            return policy
    return None


def warn_after(policy: SlaPolicy, target_seconds: int) -> int | None:
    """When a clock warns, in open seconds from its start: a fraction of the target or a lead time."""
    if (fraction := policy.warning.get("fraction")) is not None:
        return int(target_seconds * float(fraction))
    if (lead := policy.warning.get("lead_seconds")) is not None:
        return max(0, target_seconds - int(lead))
    return None


def pauses_in(policy: SlaPolicy | None, metric: str, status: str) -> bool:
    statuses = (policy.pause_statuses if policy else DEFAULT_PAUSE).get(metric, [])
    return status in statuses


def escalation_step(policy: SlaPolicy | None, level: int) -> dict[str, Any]:
    ladder = policy.escalation if policy is not None else DEFAULT_LADDER
    if not ladder:
        return {}
    return ladder[min(level, len(ladder)) - 1]


def raised(priority: str) -> str:
    index = PRIORITY_ORDER.index(priority) if priority in PRIORITY_ORDER else 1
    return PRIORITY_ORDER[min(index + 1, len(PRIORITY_ORDER) - 1)]
