"""Meeting (contact) reports: due 24 working hours after the meeting, accepted after 48 without comment."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from services.briefs import service, traffic
from services.briefs.models import Brief, Meeting
from services.briefs.schemas_work import (
    ActionItemOut,
    Attendee,
    ClientResponseIn,
    MeetingCreate,
    MeetingOut,
    MilestoneKind,
)
from services.briefs.workhours import add_working_hours
from shared.clock import Clock
from shared.errors import Problem, conflict, not_found

REPORT_DUE_WORKING_HOURS = 24
DEEMED_ACCEPTED_WORKING_HOURS = 48


def report_due_at(held_at: datetime) -> datetime:
    """When the report of a meeting is due: 24 working hours after the meeting."""
    return add_working_hours(held_at, REPORT_DUE_WORKING_HOURS)


def deemed_accepted_at(issued_at: datetime) -> datetime:
    """When an issued report stands accepted unless the client has commented: 48 working hours on."""
    return add_working_hours(issued_at, DEEMED_ACCEPTED_WORKING_HOURS)


async def record(
    session: AsyncSession, request: MeetingCreate, *, actor: str, clock: Clock, timers: traffic.TimerPort
) -> Meeting:
    """Issue a meeting report; each action item becomes a milestone for its owner."""
    await service.active_client(session, request.client_id)
    if request.brief_id is not None:
        brief = await session.get(Brief, request.brief_id)
        if brief is None or brief.client_id != request.client_id:
            raise Problem(422, "brief_id must be a brief of the same client.", slug="mismatch")
    now = clock.now()
    if request.held_at > now:
        raise Problem(
            422, "A meeting is reported after it was held; held_at is in the future.", slug="validation"
        )
    meeting = Meeting(
        client_id=request.client_id,
        brief_id=request.brief_id,
        title=request.title,
        held_at=request.held_at,
        attendees=[a.model_dump() for a in request.attendees],
        summary=request.summary,
        decisions=list(request.decisions),
        report_due_at=report_due_at(request.held_at),
        issued_by=actor,
        issued_at=now,
        deemed_accepted_at=deemed_accepted_at(now),
    )
    session.add(meeting)
    await session.flush()
    items = []
    for item in request.action_items:
        milestone = await traffic.add_milestone(
            session,
            client_id=request.client_id,
            brief_id=request.brief_id,
            meeting_id=meeting.id,
            kind=MilestoneKind.ACTION_ITEM,
            name=item.description[:300],
            owner=item.owner,
            due_at=item.due_at,
            actor=actor,
            clock=clock,
            timers=timers,
        )
        items.append({**item.model_dump(mode="json"), "milestone_id": str(milestone.id)})
    meeting.action_items = items
    await session.flush()
    return meeting


async def get(session: AsyncSession, meeting_id: uuid.UUID) -> Meeting:
    meeting = await session.get(Meeting, meeting_id)
    if meeting is None:
        raise not_found("meeting", meeting_id)
    return meeting


def status_of(meeting: Meeting, now: datetime) -> str:
    if meeting.client_response == "accepted":
        return "accepted"
    if meeting.client_response == "commented":
        return "commented"
    return "deemed_accepted" if now >= meeting.deemed_accepted_at else "awaiting_client"


async def respond(
    session: AsyncSession, meeting_id: uuid.UUID, request: ClientResponseIn, *, clock: Clock
) -> Meeting:
    """The client's answer to the report: accepted, or comments to act on (only before deemed acceptance)."""
    meeting = await get(session, meeting_id)
    now = clock.now()
    status = status_of(meeting, now)
    if status != "awaiting_client":
        raise conflict(f"The report is already {status.replace('_', ' ')}.", allowed=[])
    meeting.client_response = request.response
    meeting.client_comments = request.comments
    meeting.responded_at = now
    meeting.version += 1
    await session.flush()
    return meeting


def meeting_out(meeting: Meeting, now: datetime) -> MeetingOut:
    return MeetingOut(
        id=meeting.id,
        client_id=meeting.client_id,
        brief_id=meeting.brief_id,
        title=meeting.title,
        held_at=meeting.held_at,
        attendees=[Attendee.model_validate(a) for a in meeting.attendees],
        summary=meeting.summary,
        decisions=meeting.decisions,
        action_items=[ActionItemOut.model_validate(i) for i in meeting.action_items],
        report_due_at=meeting.report_due_at,
        issued_by=meeting.issued_by,
        issued_at=meeting.issued_at,
        issued_on_time=meeting.issued_at <= meeting.report_due_at,
        status=status_of(meeting, now),  # type: ignore[arg-type]
        deemed_accepted_at=meeting.deemed_accepted_at,
        client_comments=meeting.client_comments,
        responded_at=meeting.responded_at,
    )
