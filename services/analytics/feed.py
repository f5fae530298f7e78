"""The SLA feed: warnings, breaches and met clocks as rows; breaches and warnings go out to operators."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from services.analytics import metrics
from services.analytics.models import SlaEvent, Webhook, WebhookDelivery
from shared.clock import utc_iso
from shared.contracts import tickets as t

FEED_OUTCOMES = ("warning", "breach")
EVENT_NAMES = {"warning": "sla.warning", "breach": "sla.breach"}


def outcome_of(data: t.SlaOutcome) -> tuple[str, datetime, int | None, bool]:
    if isinstance(data, t.SlaBreached):
        return "breach", data.breached_at, None, data.late
    if isinstance(data, t.SlaWarning):
        return "warning", data.warned_at, None, data.late
    assert isinstance(data, t.SlaMet)
    return "met", data.met_at, data.elapsed_seconds, False


async def record_outcome(session: AsyncSession, event_id: str, data: t.SlaOutcome) -> SlaEvent | None:
    """Store one SLA outcome once (keyed by event id); None when it was already there."""
    if (await session.execute(sa.select(SlaEvent.seq).where(SlaEvent.event_id == event_id))).first():
        return None
    outcome, at, elapsed, late = outcome_of(data)
    row = SlaEvent(
        event_id=event_id,
        outcome=outcome,
        ticket_id=data.ticket.id,
        metric=data.metric.value,
        cycle=data.cycle,
        policy_id=data.policy_id,
        policy_name=data.policy_name,
        target_seconds=data.target_seconds,
        due_at=data.due_at,
        occurred_at=at,
        late=late,
        elapsed_seconds=elapsed,
        kind=data.ticket.kind.value,
        priority=data.ticket.priority.value,
        channel=data.ticket.channel.value,
        assignee=data.ticket.assignee,
        group=data.ticket.group,
    )
    session.add(row)
    await session.flush()  # the seq is the feed position, the SSE id and the webhook item
    return row


def feed_item(row: SlaEvent) -> dict[str, Any]:
    """The public shape of a feed entry (list, SSE data and webhook body)."""
    return {
        "id": row.seq,
        "type": EVENT_NAMES.get(row.outcome, row.outcome),
        "ticket_id": str(row.ticket_id),
        "metric": row.metric,
        "cycle": row.cycle,
        "policy_id": str(row.policy_id) if row.policy_id else None,
        "policy_name": row.policy_name,
        "target_seconds": row.target_seconds,
        "due_at": utc_iso(row.due_at),
        "occurred_at": utc_iso(row.occurred_at),
        "late": row.late,
        "kind": row.kind,
        "priority": row.priority,
        "channel": row.channel,
        "assignee": row.assignee,
        "group": row.group,
    }


async def announce(session: AsyncSession, row: SlaEvent, *, now: datetime) -> None:
    """Count a live warning or breach and queue it for every webhook subscribed to its type."""
    metrics.SLA_FEED_EVENTS.labels(row.outcome, row.metric, row.priority).inc()
    if row.outcome not in FEED_OUTCOMES:
        return
    event_name = EVENT_NAMES[row.outcome]
    hooks = (await session.execute(sa.select(Webhook).where(Webhook.active.is_(True)))).scalars().all()
    item = feed_item(row)
    for hook in hooks:
        if event_name in hook.events:
            session.add(
                WebhookDelivery(
                    webhook_id=hook.id,
                    feed_seq=row.seq or 0,
                    event_type=event_name,
                    payload=item,
                    next_attempt_at=now,
                    created_at=now,
                )
            )
