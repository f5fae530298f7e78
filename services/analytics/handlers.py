"""Events analytics consumes: every event goes to the event log, then through the projector, in batches.

The projector is the same code a rebuild replays the log through; only a live delivery has side effects
(surveys requested, webhooks queued, counters), so a rebuild never asks a customer twice.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

import shared.contracts  # noqa: F401  (the whole catalogue must be registered before the loop below)
from services.analytics import metrics
from services.analytics.business_time import BusinessCalendar
from services.analytics.columnar import column_arrays, unnest_select
from services.analytics.models import EventRecord
from services.analytics.projector import Item, project
from services.analytics.settings import analytics_settings
from shared.consumer import BatchContext, EventHandlers, Received
from shared.db import dialect_name
from shared.events import registry

handlers = EventHandlers()

_event_log = EventRecord.__table__  # type: ignore[attr-defined]
_LOG_NAMES = [c.name for c in _event_log.c if c.name != "seq"]
# One statement text whatever the batch size (see columnar.py for why arrays); an id already in the log
# is skipped, and the ids returned are the events new to it.
_LOG_PG = (
    pg_insert(_event_log)
    .from_select(_LOG_NAMES, unnest_select(_event_log, _LOG_NAMES))
    .on_conflict_do_nothing(index_elements=["event_id"])
    .returning(_event_log.c.event_id)
)


def reporting_calendar() -> BusinessCalendar:
    settings = analytics_settings()
    return BusinessCalendar.from_settings(settings.business_time_zone, settings.business_hours)


async def log_events(session: AsyncSession, events: list[Received], at: datetime) -> set[str]:
    """Append the batch's events new to the log in one statement; returns their ids.

    The log is analytics' inbox (the consumer's claim): an event already in it is a duplicate, so no
    event is written twice, once to an inbox and once to the log. Rows go in event-id order, the order
    every batch takes the unique index's locks in, so two batches sharing a redelivered event cannot
    deadlock; `seq` is the order events were logged, not an order among them that matters.
    """
    rows = [
        {
            "event_id": e.envelope.id,
            "type": e.envelope.type,
            "source": e.envelope.source,
            "subject": e.envelope.subject,
            "occurred_at": e.envelope.time,
            "data": e.envelope.data if isinstance(e.envelope.data, dict) else {"value": e.envelope.data},
        }
        for e in sorted(events, key=lambda e: e.envelope.id)
    ]
    if not rows:
        return set()
    if dialect_name(session) == "postgresql":
        result = await session.execute(_LOG_PG, column_arrays(rows, _LOG_NAMES))
    else:
        statement = (
            sqlite_insert(_event_log)
            .values(rows)
            .on_conflict_do_nothing(index_elements=["event_id"])
            .returning(_event_log.c.event_id)
        )
        result = await session.execute(statement)
    return set(result.scalars().all())


async def consume(ctx: BatchContext, events: list[Received]) -> None:
    """Project the batch's events, which `log_events` (the claim) has just logged."""
    now = ctx.clock.now()
    metrics.CONSUMER_LAG.set(max(0.0, (now - events[-1].envelope.time).total_seconds()))
    settings = analytics_settings()
    await project(
        ctx.session,
        [Item(e.envelope.id, e.data, e) for e in events],
        calendar=reporting_calendar(),
        now=now,
        live=ctx,
        survey_ttl=timedelta(days=settings.survey_ttl_days),
    )


def consumed_types() -> list[str]:
    # Analytics is the read model of everything: every type is logged, so a projection added later is
    # built by replaying the log. Its own events are not consumed (surveys are its own records).
    return sorted(e.name for e in registry if not e.name.startswith("analytics."))


def _register(types: list[str]) -> Any:
    settings = analytics_settings()
    return handlers.on_batch(
        types, max_size=settings.batch_max_size, max_wait_ms=settings.batch_max_wait_ms, claim=log_events
    )


_register(consumed_types())(consume)
