"""The weekly status report (周工作进展报告) per client, built from the data, as JSON, Markdown or HTML."""

from __future__ import annotations

import html
import re
import uuid
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from services.briefs import service
from services.briefs.brief_fields import parse_fields
from services.briefs.models import (
    Brief,
    Estimate,
    EstimateConfirmation,
    Meeting,
    Milestone,
    Proposal,
    SignOff,
)
from services.briefs.workhours import AGENCY_TZ
from shared.contracts.briefs import BriefType
from shared.errors import Problem

_WEEK = re.compile(r"^(\d{4})-W(\d{2})$")


@dataclass(frozen=True)
class Week:
    label: str
    start: datetime  # Monday 00:00 in the agency's time zone
    end: datetime  # the next Monday 00:00


def parse_week(label: str) -> Week:
    """An ISO week such as `2026-W47`, bounded in the agency's time zone."""
    match = _WEEK.match(label)
    if match is None:
        raise Problem(422, "week must be an ISO week such as 2026-W47.", slug="validation")
    try:
        monday = date.fromisocalendar(int(match[1]), int(match[2]), 1)
    except ValueError:
        raise Problem(422, f"{label} is not a week of that year.", slug="validation") from None
    start = datetime.combine(monday, time(0), AGENCY_TZ)
    return Week(label, start, start + timedelta(days=7))


def week_of(moment: datetime) -> str:
    year, week, _ = moment.astimezone(AGENCY_TZ).isocalendar()
    return f"{year}-W{week:02d}"


class MilestoneLine(BaseModel):
    id: uuid.UUID
    name: str
    kind: str
    owner: str | None
    due_at: datetime
    status: str
    brief_id: uuid.UUID | None


class Job(BaseModel):
    brief_id: uuid.UUID
    title: str
    type: str
    status: str
    version: int
    next_step: str
    next_milestone: MilestoneLine | None


class Happening(BaseModel):
    at: datetime
    kind: str
    summary: str


class StatusReport(BaseModel):
    client_id: uuid.UUID
    client_name: str
    week: str
    period_start: datetime
    period_end: datetime
    jobs: list[Job]
    due_this_week: list[MilestoneLine]
    coming_up: list[MilestoneLine]
    overdue: list[MilestoneLine]
    decisions: list[Happening]


def _line(m: Milestone) -> MilestoneLine:
    return MilestoneLine(
        id=m.id,
        name=m.name,
        kind=m.kind,
        owner=m.owner,
        due_at=m.due_at,
        status=m.status,
        brief_id=m.brief_id,
    )


def next_step(brief: Brief, rounds: list[Proposal]) -> str:
    """What the account team does next on a job, read from its state."""
    if brief.status == "draft":
        missing = parse_fields(BriefType(brief.type), brief.fields).missing()
        return "Complete " + ", ".join(missing) if missing else "Submit for sign-off"
    if brief.status == "submitted":
        return "Awaiting sign-off by " + ", ".join(brief.required_roles)
    if brief.status == "returned":
        return "Revise per the sign-off comments and resubmit"
    open_round = next((p for p in rounds if p.status != "decided"), None)
    if open_round is not None:
        verb = "Present" if open_round.status == "prepared" else "Get a decision on"
        return f"{verb} {open_round.stage} round {open_round.round}"
    client_rounds = [p for p in rounds if p.stage == "client"]
    last_client = client_rounds[-1] if client_rounds else None
    if last_client is not None and last_client.decision == "approved":
        if brief.type == BriefType.MEDIA and brief.booked_at is None:
            return "Book media against the confirmed estimate"
        return "In execution"
    if last_client is not None and last_client.follow_up == "terminate":
        return "Engagement ended by the client"
    if last_client is not None:
        return f"Prepare client round {last_client.round + 1}"
    if any(p.stage == "internal" and p.decision == "approved" for p in rounds):
        return "Present to the client"
    return "Prepare the internal proposal"


async def build(session: AsyncSession, client_id: uuid.UUID, week: Week, *, now: datetime) -> StatusReport:
    client = await service.get_client(session, client_id)
    start, end = week.start, week.end

    briefs = list(
        (
            await session.execute(sa.select(Brief).where(Brief.client_id == client_id).order_by(Brief.id))
        ).scalars()
    )
    proposals = list(
        (
            await session.execute(
                sa.select(Proposal)
                .where(Proposal.client_id == client_id)
                .order_by(Proposal.stage, Proposal.round)
            )
        ).scalars()
    )
    milestones = list(
        (
            await session.execute(
                sa.select(Milestone)
                .where(Milestone.client_id == client_id)
                .order_by(Milestone.due_at, Milestone.id)
            )
        ).scalars()
    )
    as_of = min(now, end)
    jobs = []
    for brief in briefs:
        upcoming = next((m for m in milestones if m.brief_id == brief.id and m.status == "open"), None)
        jobs.append(
            Job(
                brief_id=brief.id,
                title=brief.title,
                type=brief.type,
                status=brief.status,
                version=brief.number,
                next_step=next_step(brief, [p for p in proposals if p.brief_id == brief.id]),
                next_milestone=_line(upcoming) if upcoming else None,
            )
        )

    happened = await _happenings(session, client_id, week, briefs, proposals, milestones)

    return StatusReport(
        client_id=client.id,
        client_name=client.name,
        week=week.label,
        period_start=start,
        period_end=end,
        jobs=jobs,
        due_this_week=[_line(m) for m in milestones if start <= m.due_at < end],
        coming_up=[
            _line(m) for m in milestones if m.status == "open" and end <= m.due_at < end + timedelta(days=14)
        ],
        overdue=[_line(m) for m in milestones if m.delivered_at is None and m.due_at < as_of],
        decisions=happened,
    )


async def _happenings(
    session: AsyncSession,
    client_id: uuid.UUID,
    week: Week,
    briefs: list[Brief],
    proposals: list[Proposal],
    milestones: list[Milestone],
) -> list[Happening]:
    """What was decided or happened in the week: sign-offs, rounds, confirmations, meetings, dates."""
    start, end = week.start, week.end
    titles = {b.id: b.title for b in briefs}
    happened: list[Happening] = []
    for p in proposals:
        label = f"{titles.get(p.brief_id, 'brief')}: {p.stage} round {p.round}"
        if p.presented_at and start <= p.presented_at < end:
            happened.append(
                Happening(at=p.presented_at, kind="proposal_presented", summary=f"{label} presented")
            )
        if p.decided_at and start <= p.decided_at < end:
            outcome = p.decision + (f" ({p.follow_up})" if p.follow_up else "")
            note = f" — {p.comments}" if p.comments else ""
            happened.append(
                Happening(at=p.decided_at, kind="proposal_decided", summary=f"{label} {outcome}{note}")
            )
    signoffs = (
        await session.execute(
            sa.select(SignOff)
            .join(Brief, Brief.id == SignOff.brief_id)
            .where(Brief.client_id == client_id, SignOff.at >= start, SignOff.at < end)
        )
    ).scalars()
    for s in signoffs:
        title = titles.get(s.brief_id, "brief")
        if s.decision == "returned":
            happened.append(
                Happening(
                    at=s.at,
                    kind="brief_returned",
                    summary=f"{title} v{s.number} returned by {s.role}: {s.comments}",
                )
            )
        elif s.completes_approval:
            happened.append(
                Happening(at=s.at, kind="brief_approved", summary=f"{title} v{s.number} approved")
            )
    confirmations = (
        await session.execute(
            sa.select(EstimateConfirmation, Estimate.title, Estimate.currency)
            .join(Estimate, Estimate.id == EstimateConfirmation.estimate_id)
            .where(
                Estimate.client_id == client_id,
                EstimateConfirmation.recorded_at >= start,
                EstimateConfirmation.recorded_at < end,
            )
        )
    ).all()
    for confirmation, title, currency in confirmations:
        happened.append(
            Happening(
                at=confirmation.recorded_at,
                kind="estimate_confirmed",
                summary=(
                    f"Estimate {title} v{confirmation.number} confirmed by {confirmation.confirmed_by}: "
                    f"{currency} {confirmation.total}"
                ),
            )
        )
    meetings = (
        await session.execute(
            sa.select(Meeting).where(
                Meeting.client_id == client_id, Meeting.held_at >= start, Meeting.held_at < end
            )
        )
    ).scalars()
    for meeting in meetings:
        for decision in meeting.decisions:
            happened.append(
                Happening(at=meeting.held_at, kind="meeting_decision", summary=f"{meeting.title}: {decision}")
            )
    for m in milestones:
        if m.delivered_at and start <= m.delivered_at < end:
            happened.append(
                Happening(at=m.delivered_at, kind="milestone_delivered", summary=f"{m.name} delivered")
            )
        if m.missed_at and start <= m.missed_at < end:
            happened.append(
                Happening(
                    at=m.missed_at,
                    kind="milestone_missed",
                    summary=f"{m.name} missed (due {m.due_at.isoformat()})",
                )
            )
    happened.sort(key=lambda h: h.at)
    return happened


def _local(moment: datetime) -> str:
    return moment.astimezone(AGENCY_TZ).strftime("%Y-%m-%d %H:%M")


def _sections(report: StatusReport) -> list[tuple[str, list[str]]]:
    def milestone(m: MilestoneLine) -> str:
        owner = f" — {m.owner}" if m.owner else ""
        return f"{_local(m.due_at)} {m.name} ({m.status}){owner}"

    jobs = [
        f"{j.title} [{j.type}, v{j.version}, {j.status}] — next: {j.next_step}"
        + (
            f"; next date {_local(j.next_milestone.due_at)} {j.next_milestone.name}"
            if j.next_milestone
            else ""
        )
        for j in report.jobs
    ]
    return [
        ("Jobs", jobs),
        ("Decisions and events this week", [f"{_local(h.at)} {h.summary}" for h in report.decisions]),
        ("Due this week", [milestone(m) for m in report.due_this_week]),
        ("Overdue", [milestone(m) for m in report.overdue]),
        ("Coming up (two weeks)", [milestone(m) for m in report.coming_up]),
    ]


def to_markdown(report: StatusReport) -> str:
    lines = [
        f"# Weekly status report — {report.client_name}",
        "",
        f"Week {report.week} ({_local(report.period_start)} to {_local(report.period_end)}, Asia/Shanghai)",
    ]
    for title, items in _sections(report):
        lines += ["", f"## {title}", ""]
        lines += [f"- {item}" for item in items] if items else ["- none"]
    return "\n".join(lines) + "\n"


def to_html(report: StatusReport) -> str:
    e = html.escape
    parts = [
        "<!doctype html>",
        '<html lang="zh-CN"><head><meta charset="utf-8">',
        f"<title>Weekly status report — {e(report.client_name)} — {e(report.week)}</title></head><body>",
        f"<h1>Weekly status report — {e(report.client_name)}</h1>",
        f"<p>Week {e(report.week)} ({e(_local(report.period_start))} to "
        f"{e(_local(report.period_end))}, Asia/Shanghai)</p>",
    ]
    for title, items in _sections(report):
        parts.append(f"<h2>{e(title)}</h2>")
        parts.append("<ul>" + "".join(f"<li>{e(i)}</li>" for i in items or ["none"]) + "</ul>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


__all__: list[Any] = ["StatusReport", "build", "parse_week", "to_html", "to_markdown", "week_of"]
