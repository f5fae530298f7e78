"""Rebuild the projections by replaying the event log, in order, through the same projector.

The ticket and brief facts, the SLA clocks and the ticket rollups are emptied and refolded; the SLA feed
keeps its rows (their ids are what SSE clients resume from) and gains any the log has that it lacks.
Surveys and webhooks are analytics' own records, not projections, and are left alone. Progress is
checkpointed per batch, so an interrupted rebuild resumes where it stopped.
"""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy as sa

from services.analytics import rollups
from services.analytics.handlers import reporting_calendar
from services.analytics.models import (
    BriefFact,
    CostFact,
    EstimateFact,
    EventRecord,
    MilestoneFact,
    ProjectionCheckpoint,
    RollupZone,
    SlaClock,
    TicketFact,
    TicketRollup,
)
from services.analytics.projector import Item, project
from shared.clock import Clock
from shared.db import Database
from shared.events import EventRegistry

log = logging.getLogger("kefu.analytics.rebuild")

CHECKPOINT = "facts"
# The rollups are rebuilt with the facts (the projector keeps them); reports scan the facts until the
# rebuild has finished and marks the kept zones built again.
PROJECTION_TABLES = (
    TicketFact,
    SlaClock,
    BriefFact,
    MilestoneFact,
    EstimateFact,
    CostFact,
    TicketRollup,
    RollupZone,
)


async def rebuild(
    db: Database, registry: EventRegistry, clock: Clock, *, batch: int = 1000, resume: bool = False
) -> int:
    """Replay the log (with `resume`, the rest of an interrupted rebuild); returns events applied."""
    calendar = reporting_calendar()
    async with db.transaction() as session:
        checkpoint = await session.get(ProjectionCheckpoint, CHECKPOINT)
        if checkpoint is None:
            checkpoint = ProjectionCheckpoint(name=CHECKPOINT)
            session.add(checkpoint)
        if not resume or checkpoint.finished_at is not None:
            for table in PROJECTION_TABLES:
                await session.execute(sa.delete(table))
            checkpoint.last_seq = 0
        checkpoint.started_at, checkpoint.finished_at = clock.now(), None
        after = checkpoint.last_seq
    applied = 0
    while True:
        async with db.transaction() as session:
            records = (
                (
                    await session.execute(
                        sa.select(EventRecord)
                        .where(EventRecord.seq > after)
                        .order_by(EventRecord.seq)
                        .limit(batch)  # type: ignore[operator]
                    )
                )
                .scalars()
                .all()
            )
            items = []
            for record in records:
                data = _data(registry, record)
                if data is not None:
                    items.append(Item(record.event_id, data))
                after = record.seq or after
            await project(session, items, calendar=calendar, now=clock.now())
            applied += len(items)
            checkpoint = await session.get(ProjectionCheckpoint, CHECKPOINT)
            assert checkpoint is not None
            checkpoint.last_seq = after
            if not records:
                checkpoint.finished_at = clock.now()
                for zone in rollups.kept(session):
                    await session.merge(RollupZone(zone=zone, built_at=clock.now()))
                break
        log.info("rebuild: applied up to seq %d", after)
    return applied


def _data(registry: EventRegistry, record: EventRecord) -> Any:
    if record.type not in registry:
        return None
    try:
        return registry.get(record.type).data_model.model_validate(record.data)
    except Exception as exc:  # a logged event that no longer validates is skipped, not fatal
        log.warning("rebuild: event %s (%s) skipped: %s", record.event_id, record.type, exc)
        return None
