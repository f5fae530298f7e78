"""`/v1/sla/breaches…`: the operations feed of SLA breaches and warnings, as a list and as a live stream."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any, Literal

import sqlalchemy as sa
from fastapi import APIRouter, Header, Query, Request
from sse_starlette.sse import EventSourceResponse

from services.analytics.feed import EVENT_NAMES, FEED_OUTCOMES, feed_item
from services.analytics.models import SlaEvent
from services.analytics.schemas import FeedEntry
from services.analytics.settings import analytics_settings
from shared.app import RuntimeDep, SessionDep
from shared.auth import require
from shared.errors import Problem, problem_responses
from shared.pagination import Cursor, Limit, Page, decode_cursor, encode_cursor

router = APIRouter(prefix="/v1/sla", tags=["sla feed"], responses=problem_responses(401, 403))

FeedType = Annotated[
    Literal["breach", "warning", "all"], Query(description="`breach` (default), `warning`, or `all`.")
]


def _outcomes(type_: str) -> tuple[str, ...]:
    return FEED_OUTCOMES if type_ == "all" else (type_,)


@router.get("/breaches", response_model=Page[FeedEntry], dependencies=[require("sla:read")])
async def list_breaches(
    session: SessionDep,
    since: Annotated[
        datetime | None, Query(description="Only entries that happened at or after this.")
    ] = None,
    type: FeedType = "breach",
    metric: Annotated[str | None, Query(max_length=30)] = None,
    priority: Annotated[str | None, Query(max_length=20)] = None,
    group: Annotated[str | None, Query(max_length=200)] = None,
    agent: Annotated[str | None, Query(max_length=200)] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> dict[str, Any]:
    """SLA breaches (with `type`, warnings too), oldest first from `since`: ticket, metric, policy, times."""
    query = sa.select(SlaEvent).where(SlaEvent.outcome.in_(_outcomes(type)))
    if since is not None:
        query = query.where(SlaEvent.occurred_at >= since)
    for column, value in (
        (SlaEvent.metric, metric),
        (SlaEvent.priority, priority),
        (SlaEvent.group, group),
        (SlaEvent.assignee, agent),
    ):
        if value is not None:
            query = query.where(column == value)
    if cursor is not None:
        after = decode_cursor(cursor)
        if len(after) != 1 or not isinstance(after[0], int):
            raise Problem(400, "The cursor is not one this API issued.", slug="invalid-cursor")
        query = query.where(SlaEvent.seq > after[0])  # type: ignore[operator]
    rows = (await session.execute(query.order_by(SlaEvent.seq).limit(limit + 1))).scalars().all()
    more = len(rows) > limit
    rows = rows[:limit]
    return {
        "items": [feed_item(r) for r in rows],
        "next_cursor": encode_cursor([rows[-1].seq]) if more else None,
    }


async def feed_after(runtime: Any, after: int, outcomes: tuple[str, ...], batch: int = 200) -> list[SlaEvent]:
    async with runtime.db.transaction() as session:
        query = (
            sa.select(SlaEvent)
            .where(SlaEvent.seq > after, SlaEvent.outcome.in_(outcomes))  # type: ignore[operator]
            .order_by(SlaEvent.seq)
            .limit(batch)
        )
        return list((await session.execute(query)).scalars().all())


async def last_seq(runtime: Any) -> int:
    async with runtime.db.transaction() as session:
        return int((await session.execute(sa.select(sa.func.max(SlaEvent.seq)))).scalar_one() or 0)


async def feed_events(
    request: Request, runtime: Any, after: int, outcomes: tuple[str, ...], *, poll: float
) -> AsyncIterator[dict[str, str]]:
    """Entries after `after`, then new ones as they land (polling the table, so every replica serves it)."""
    while not await request.is_disconnected():
        rows = await feed_after(runtime, after, outcomes)
        for row in rows:
            after = row.seq or after
            yield {
                "id": str(row.seq),
                "event": EVENT_NAMES[row.outcome],
                "data": json.dumps(feed_item(row), ensure_ascii=False),
            }
        if not rows:
            await asyncio.sleep(poll)


@router.get(
    "/breaches/stream",
    dependencies=[require("sla:read")],
    response_class=EventSourceResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "Server-Sent Events"}},
)
async def stream_breaches(
    request: Request,
    runtime: RuntimeDep,
    type: FeedType = "all",
    # At most 18 digits, like `from_id`'s bound: a feed id is a PostgreSQL bigint.
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=18)] = None,
    from_id: Annotated[
        int | None,
        Query(ge=0, le=10**18, description="Resume after this feed id (as Last-Event-ID)."),
    ] = None,
) -> EventSourceResponse:
    """Live feed: `sla.breach` and `sla.warning` events; resumes after `Last-Event-ID`, else starts now."""
    if last_event_id is not None:
        if not last_event_id.isdigit():
            raise Problem(400, "Last-Event-ID must be a feed id.", slug="invalid-last-event-id")
        after = int(last_event_id)
    elif from_id is not None:
        after = from_id
    else:
        after = await last_seq(runtime)
    poll = analytics_settings().feed_poll_seconds
    return EventSourceResponse(feed_events(request, runtime, after, _outcomes(type), poll=poll), ping=15)
