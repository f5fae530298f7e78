"""Events analytics consumes: every event goes to the event log, then through the projector.

The projector is the same code a rebuild replays the log through; only a live delivery has side effects
(surveys requested, webhooks queued, counters), so a rebuild never asks a customer twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

import shared.contracts  # noqa: F401  (the whole catalogue must be registered before the loop below)
from services.analytics import facts, feed, metrics, surveys
from services.analytics.business_time import BusinessCalendar
from services.analytics.models import EventRecord
from services.analytics.settings import analytics_settings
from shared.consumer import EventHandlers, HandlerContext
from shared.contracts import briefs as b
from shared.contracts import tickets as t
from shared.events import CloudEvent, registry

handlers = EventHandlers()

BRIEF_EVENTS = (
    b.BriefSubmitted,
    b.BriefApproved,
    b.BriefReturned,
    b.ProposalPresented,
    b.ProposalDecided,
    b.MilestoneMissed,
)


def reporting_calendar() -> BusinessCalendar:
    settings = analytics_settings()
    return BusinessCalendar.from_settings(settings.business_time_zone, settings.business_hours)


async def log_event(session: AsyncSession, envelope: CloudEvent) -> None:
    session.add(
        EventRecord(
            event_id=envelope.id,
            type=envelope.type,
            source=envelope.source,
            subject=envelope.subject,
            occurred_at=envelope.time,
            data=envelope.data if isinstance(envelope.data, dict) else {"value": envelope.data},
        )
    )


@dataclass
class Projector:
    """Applies one event's data to the projections; `live` adds the side effects of a fresh delivery."""

    session: AsyncSession
    calendar: BusinessCalendar
    now: datetime
    ctx: HandlerContext | None = None  # None while rebuilding

    async def apply(self, event_id: str, data: Any) -> None:
        if isinstance(data, t.SlaOutcome):
            row = await feed.record_outcome(self.session, event_id, data)
            if row is not None and self.ctx is not None:
                await feed.announce(self.session, row, now=self.now)
        if isinstance(data, BRIEF_EVENTS):
            await facts.apply_brief_event(self.session, data)
            if isinstance(data, b.ProposalDecided) and self.ctx is not None:
                await self._survey(
                    await surveys.survey_for_presentation(self.session, data, now=self.now, ttl=self._ttl)
                )
            return
        fact = await facts.apply_ticket_event(self.session, data, self.calendar)
        if self.ctx is None or fact is None:
            return
        if isinstance(data, t.TicketResolved):
            if fact.first_response_seconds is not None and data.reopen_count == 0:
                metrics.FIRST_RESPONSE.labels(fact.priority).observe(fact.first_response_seconds)
            if fact.resolution_seconds is not None:
                metrics.RESOLUTION.labels(fact.priority).observe(fact.resolution_seconds)
            new = await surveys.survey_for_resolution(self.session, data, fact, now=self.now, ttl=self._ttl)
            await self._survey(new)
        elif isinstance(data, t.TicketReopened):
            await surveys.invalidate_for_reopen(self.session, data, now=self.now)

    @property
    def _ttl(self) -> timedelta:
        return timedelta(days=analytics_settings().survey_ttl_days)

    async def _survey(self, new: surveys.NewSurvey | None) -> None:
        if new is not None and self.ctx is not None:
            await self.ctx.publish(
                "analytics.survey.requested.v1", surveys.requested_event(new), subject=str(new.survey.id)
            )


async def consume(ctx: HandlerContext, data: Any) -> None:
    await log_event(ctx.session, ctx.envelope)
    now = ctx.clock.now()
    metrics.CONSUMER_LAG.set(max(0.0, (now - ctx.envelope.time).total_seconds()))
    await Projector(ctx.session, reporting_calendar(), now, ctx).apply(ctx.envelope.id, data)


# Analytics is the read model of everything: every type is logged, so a projection added later is built
# by replaying the log. Its own events are not consumed (surveys are its own records).
for event_type in registry:
    if not event_type.name.startswith("analytics."):
        handlers.on(event_type.name)(consume)
