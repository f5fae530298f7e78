"""Events analytics consumes: every event goes to the event log, then through the projector, in batches.

The projector is the same code a rebuild replays the log through; only a live delivery has side effects
(surveys requested, webhooks queued, counters), so a rebuild never asks a customer twice.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import sqlalchemy as sa
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
# `seq` follows the arrays' order, which is arrival order (see columnar.py for why arrays).
_LOG_PG = sa.insert(_event_log).from_select(_LOG_NAMES, unnest_select(_event_log, _LOG_NAMES))


def reporting_calendar() -> BusinessCalendar:
    settings = analytics_settings()
    return BusinessCalendar.from_settings(settings.business_time_zone, settings.business_hours)


async def log_events(session: AsyncSession, events: list[Received]) -> None:
    """Append the batch to the event log in one statement, in arrival order."""
    rows = [
        {
            "event_id": e.envelope.id,
            "type": e.envelope.type,
            "source": e.envelope.source,
            "subject": e.envelope.subject,
            "occurred_at": e.envelope.time,
            "data": e.envelope.data if isinstance(e.envelope.data, dict) else {"value": e.envelope.data},
        }
        for e in events
    ]
    if dialect_name(session) == "postgresql":
        await session.execute(_LOG_PG, column_arrays(rows, _LOG_NAMES))
    else:
        await session.execute(sa.insert(_event_log), rows)


async def consume(ctx: BatchContext, events: list[Received]) -> None:
    await log_events(ctx.session, events)
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
    return handlers.on_batch(types, max_size=settings.batch_max_size, max_wait_ms=settings.batch_max_wait_ms)


_register(consumed_types())(consume)
