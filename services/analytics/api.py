"""analytics' HTTP routes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import sqlalchemy as sa
from fastapi import APIRouter, Query

from services.analytics.models import TicketFact
from services.analytics.schemas import Overview
from shared.app import SessionDep
from shared.auth import require
from shared.errors import problem_responses

router = APIRouter(prefix="/v1", tags=["metrics"], responses=problem_responses(401, 403))


@router.get("/metrics/overview", response_model=Overview, dependencies=[require("metrics:read")])
async def overview(
    session: SessionDep,
    since: Annotated[datetime | None, Query(description="Inclusive start, ISO 8601.")] = None,
    until: Annotated[datetime | None, Query(description="Exclusive end, ISO 8601.")] = None,
) -> Overview:
    """Headline figures for the operations dashboard."""
    query = sa.select(sa.func.count()).select_from(TicketFact)
    if since is not None:
        query = query.where(TicketFact.created_at >= since)
    if until is not None:
        query = query.where(TicketFact.created_at < until)
    created = (await session.execute(query)).scalar_one()
    return Overview(tickets_created=created, since=since, until=until)
