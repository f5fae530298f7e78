"""The projector: a batch of events folds into the projections with a handful of statements.

A batch's events of one ticket are merged in Python first; the merged row then meets the stored one in a
single `INSERT … ON CONFLICT DO UPDATE` whose SET clause holds the same rules (the highest snapshot
`version` wins, the earliest first response, the latest resolution, reopen counts add up), so the result
does not depend on how events were split into batches or in which order they came. A rebuild replays
the log through the same code, so it reproduces what live consumption built.
"""

from __future__ import annotations

import uuid
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.analytics import agency_facts, feed, metrics, rollups, sla_clocks, surveys
from services.analytics.business_time import BusinessCalendar
from services.analytics.columnar import column_arrays, unnest_select
from services.analytics.models import SlaEvent, Survey, TicketFact, Webhook, WebhookDelivery
from shared.consumer import BatchContext, Received
from shared.contracts import briefs as b
from shared.contracts import tickets as t
from shared.db import dialect_name
from shared.ids import new_id

BRIEF_EVENTS = (
    b.BriefSubmitted,
    b.BriefApproved,
    b.BriefReturned,
    b.ProposalPresented,
    b.ProposalDecided,
    b.MilestoneMissed,
    b.MilestoneDelivered,
    b.EstimateConfirmed,
    b.CostRecorded,
)
_DONE = {t.TicketStatus.RESOLVED.value, t.TicketStatus.CLOSED.value}
_facts = TicketFact.__table__  # type: ignore[attr-defined]
_sla = SlaEvent.__table__  # type: ignore[attr-defined]
_surveys = Survey.__table__  # type: ignore[attr-defined]
_deliveries = WebhookDelivery.__table__  # type: ignore[attr-defined]
# Rows per multi-row statement: well inside the bind-parameter limits of PostgreSQL and SQLite.
_CHUNK = 500


@dataclass(frozen=True)
class Item:
    """One event to project; `cause` is the live delivery (None while rebuilding from the log)."""

    event_id: str
    data: Any
    cause: Received | None = None


def _earliest(a: datetime | None, b: datetime | None) -> datetime | None:
    return b if a is None else a if b is None else min(a, b)


def _latest(a: datetime | None, b: datetime | None) -> datetime | None:
    return b if a is None else a if b is None else max(a, b)


@dataclass
class TicketMerge:
    """A batch's events of one ticket, merged by the same rules the upsert applies to the stored row."""

    snapshot: t.TicketSnapshot
    policy_name: str | None = None
    first_response_at: datetime | None = None
    resolved_at: datetime | None = None
    public_replies: int | None = None
    reopen_count: int = 0
    reopens_seen: int = 0
    reopened_at: datetime | None = None
    closed_at: datetime | None = None
    resolutions: list[t.TicketResolved] = field(default_factory=list)

    def add(self, data: Any) -> None:
        snapshot: t.TicketSnapshot = data.ticket
        if snapshot.version > self.snapshot.version:
            self.snapshot = snapshot
        match data:
            case t.TicketCreated() | t.SlaOutcome():
                self.policy_name = data.policy_name or self.policy_name
            case t.TicketResponded() if data.first:
                self.first_response_at = _earliest(self.first_response_at, data.responded_at)
            case t.TicketResolved():
                self.first_response_at = _earliest(self.first_response_at, data.first_response_at)
                if self.resolved_at is None or data.resolved_at >= self.resolved_at:
                    self.public_replies = data.public_replies
                self.resolved_at = _latest(self.resolved_at, data.resolved_at)
                self.reopen_count = max(self.reopen_count, data.reopen_count)
                self.resolutions.append(data)
            case t.TicketClosed():
                self.closed_at = _latest(self.closed_at, data.closed_at)
            case t.TicketReopened():
                self.reopened_at = _latest(self.reopened_at, data.reopened_at)
                self.reopens_seen += 1
                self.reopen_count = max(self.reopen_count, self.reopens_seen)

    def row(self, calendar: BusinessCalendar) -> dict[str, Any]:
        s = self.snapshot
        row = {
            "ticket_id": s.id,
            "version": s.version,
            "kind": s.kind.value,
            "priority": s.priority.value,
            "channel": s.channel.value,
            "status": s.status.value,
            "category": s.category,
            "customer_id": s.customer_id,
            "customer_tier": s.customer_tier.value,
            "assignee": s.assignee,
            "group": s.group,
            "created_at": s.created_at,
            "policy_name": self.policy_name,
            "first_response_at": self.first_response_at,
            "resolved_at": self.resolved_at,
            "reopened_at": self.reopened_at,
            "closed_at": self.closed_at,
            "reopen_count": self.reopen_count,
            "reopens_seen": self.reopens_seen,
            "public_replies": self.public_replies,
        }
        row.update(durations(row, calendar))
        return row


def durations(row: Any, calendar: BusinessCalendar) -> dict[str, float | None]:
    """Response and resolution times of a merged row, in calendar and in business seconds."""
    get = row.get if isinstance(row, dict) else lambda name: getattr(row, name)
    created, responded, resolved = get("created_at"), get("first_response_at"), get("resolved_at")
    out: dict[str, float | None] = {
        "first_response_seconds": None,
        "first_response_business_seconds": None,
        "resolution_seconds": None,
        "resolution_business_seconds": None,
    }
    if responded is not None:
        out["first_response_seconds"] = max(0.0, (responded - created).total_seconds())
        out["first_response_business_seconds"] = calendar.seconds_between(created, responded)
    if get("status") in _DONE and resolved is not None:
        out["resolution_seconds"] = max(0.0, (resolved - created).total_seconds())
        out["resolution_business_seconds"] = calendar.seconds_between(created, resolved)
    return out


_DESCRIPTIVE = (
    "version",
    "kind",
    "priority",
    "channel",
    "status",
    "category",
    "customer_id",
    "customer_tier",
    "assignee",
    "group",
    "created_at",
)
# What `durations` reads: when the stored row keeps these as the batch proposed, so do the durations.
_DURATION_INPUTS = ("created_at", "first_response_at", "resolved_at", "status")
_DURATIONS = (
    "first_response_seconds",
    "first_response_business_seconds",
    "resolution_seconds",
    "resolution_business_seconds",
)


def _merge_rules(excluded: Any) -> dict[str, Any]:
    """The SET clause: the stored row (`ticket_facts.…`) meets the batch's merge (`excluded.…`)."""
    stored = _facts.c
    newer = excluded.version > stored.version

    def earliest(name: str) -> Any:
        new, old = excluded[name], stored[name]
        return sa.case((old.is_(None), new), (new.is_(None), old), (new < old, new), else_=old)

    def latest(name: str) -> Any:
        new, old = excluded[name], stored[name]
        return sa.case((old.is_(None), new), (new.is_(None), old), (new > old, new), else_=old)

    def greatest(a: Any, b: Any) -> Any:
        return sa.case((a >= b, a), else_=b)

    seen = stored.reopens_seen + excluded.reopens_seen
    rules: dict[str, Any] = {
        name: sa.case((newer, excluded[name]), else_=stored[name]) for name in _DESCRIPTIVE
    }
    rules |= {
        "policy_name": sa.func.coalesce(excluded.policy_name, stored.policy_name),
        "first_response_at": earliest("first_response_at"),
        "resolved_at": latest("resolved_at"),
        "reopened_at": latest("reopened_at"),
        "closed_at": latest("closed_at"),
        # The replies of the latest resolution (the batch's wins a tie, as a later event would).
        "public_replies": sa.case(
            (
                sa.and_(
                    excluded.resolved_at.is_not(None),
                    sa.or_(stored.resolved_at.is_(None), excluded.resolved_at >= stored.resolved_at),
                ),
                excluded.public_replies,
            ),
            else_=stored.public_replies,
        ),
        "reopens_seen": seen,
        "reopen_count": greatest(greatest(stored.reopen_count, excluded.reopen_count), seen),
    }
    # Durations depend on the merged instants; they are proposed here and corrected after RETURNING.
    rules |= {name: excluded[name] for name in _DURATIONS}
    return rules


async def upsert_tickets(
    session: AsyncSession, merges: dict[uuid.UUID, TicketMerge], calendar: BusinessCalendar
) -> dict[uuid.UUID, Any]:
    """One upsert per ticket of the batch; returns every touched ticket's row as stored now."""
    # Rows in key order, so two batches sharing tickets take their row locks in the same order.
    rows = [merges[ticket_id].row(calendar) for ticket_id in sorted(merges)]
    stored: dict[uuid.UUID, Any] = {}
    if dialect_name(session) == "postgresql":
        result = await session.execute(_UPSERT_PG, column_arrays(rows, _FACT_NAMES))
        stored = {row.ticket_id: row for row in result.all()}
    else:
        for start in range(0, len(rows), _CHUNK):
            statement = sqlite_insert(_facts).values(rows[start : start + _CHUNK])
            statement = statement.on_conflict_do_update(
                index_elements=["ticket_id"], set_=_merge_rules(statement.excluded)
            ).returning(*_facts.c)
            for row in (await session.execute(statement)).all():
                stored[row.ticket_id] = row
    sent = {row["ticket_id"]: row for row in rows}
    corrections = []
    for ticket_id, row in stored.items():
        proposed = sent[ticket_id]
        if all(getattr(row, name) == proposed[name] for name in _DURATION_INPUTS):
            continue  # merged to the instants the batch proposed: its durations stand
        right = durations(row, calendar)
        if any(getattr(row, name) != value for name, value in right.items()):
            corrections.append({"key": ticket_id, **right})
            stored[ticket_id] = _Row({**row._asdict(), **right})
    if corrections:
        await session.execute(
            sa.update(_facts)
            .where(_facts.c.ticket_id == sa.bindparam("key"))
            .values({name: sa.bindparam(name) for name in _DURATIONS}),
            corrections,
        )
        if rollups.kept(session):
            # The database derives the bins from the corrected durations; the rollups count those.
            bins = await session.execute(
                sa.select(_facts.c.ticket_id, *(_facts.c[name] for name in rollups.BIN_COLUMNS)).where(
                    _facts.c.ticket_id.in_([c["key"] for c in corrections])
                )
            )
            for ticket_id, *values in bins:
                stored[ticket_id] = _Row(
                    {**stored[ticket_id], **dict(zip(rollups.BIN_COLUMNS, values, strict=True))}
                )
    return stored


def _upsert_pg() -> Any:
    statement = pg_insert(_facts).from_select(_FACT_NAMES, unnest_select(_facts, _FACT_NAMES))
    return statement.on_conflict_do_update(
        index_elements=["ticket_id"], set_=_merge_rules(statement.excluded)
    ).returning(*_facts.c)


# The duration bins are generated by the database from the durations (see models.py).
_FACT_NAMES = [c.name for c in _facts.c if c.computed is None]
_SLA_NAMES = [c.name for c in _sla.c if c.name != "seq"]
# Built once (see columnar.py): the same text for every batch, compiled and prepared once.
_UPSERT_PG = _upsert_pg()
_SURVEY_NAMES = [
    "id",
    "token_hash",
    "origin_key",
    "ticket_id",
    "customer_id",
    "kind",
    "priority",
    "channel",
    "group",
    "assignee",
    "created_at",
    "expires_at",
]
_SURVEYS_PG = (
    pg_insert(_surveys)
    .from_select(_SURVEY_NAMES, unnest_select(_surveys, _SURVEY_NAMES))
    .on_conflict_do_nothing(index_elements=["origin_key"])
    .returning(_surveys.c.id)
)
_OUTCOMES_PG = (
    pg_insert(_sla)
    .from_select(_SLA_NAMES, unnest_select(_sla, _SLA_NAMES))
    .on_conflict_do_nothing(index_elements=["event_id"])
    .returning(_sla.c.seq, _sla.c.event_id)
)


class _Row(dict[str, Any]):
    """A row built in Python that reads like a result row (`row.priority`)."""

    def __getattr__(self, name: str) -> Any:
        return self[name]


def outcome_rows(items: Sequence[Item]) -> list[dict[str, Any]]:
    """The batch's SLA outcomes as `sla_events` rows."""
    rows = []
    for item in items:
        data: t.SlaOutcome = item.data
        outcome, at, elapsed, late = feed.outcome_of(data)
        rows.append(
            {
                "event_id": item.event_id,
                "outcome": outcome,
                "ticket_id": data.ticket.id,
                "metric": data.metric.value,
                "cycle": data.cycle,
                "policy_id": data.policy_id,
                "policy_name": data.policy_name,
                "target_seconds": data.target_seconds,
                "due_at": data.due_at,
                "occurred_at": at,
                "late": late,
                "elapsed_seconds": elapsed,
                "kind": data.ticket.kind.value,
                "priority": data.ticket.priority.value,
                "channel": data.ticket.channel.value,
                "assignee": data.ticket.assignee,
                "group": data.ticket.group,
            }
        )
    return rows


async def record_outcomes(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> list[Any]:
    """Store the batch's SLA outcomes once each (keyed by event id); returns the rows that are new.

    The rows are plain records that read like `SlaEvent`s (`row.seq`): building mapped objects for
    them cost more than the insert.
    """
    if not rows:
        return []
    by_id = {row["event_id"]: row for row in rows}
    new: list[Any] = []
    if dialect_name(session) == "postgresql":
        result = await session.execute(_OUTCOMES_PG, column_arrays(list(by_id.values()), _SLA_NAMES))
        new = [_Row(by_id[event_id], seq=seq) for seq, event_id in result.all()]
    else:
        for start in range(0, len(rows), _CHUNK):
            statement = (
                sqlite_insert(_sla)
                .values(rows[start : start + _CHUNK])
                .on_conflict_do_nothing(index_elements=["event_id"])
                .returning(_sla.c.seq, _sla.c.event_id)
            )
            for seq, event_id in (await session.execute(statement)).all():
                new.append(_Row(by_id[event_id], seq=seq))
    new.sort(key=lambda row: row.seq or 0)
    return new


async def announce(session: AsyncSession, rows: Sequence[Any], *, now: datetime) -> None:
    """Count live outcomes and queue warnings and breaches for every webhook subscribed to their type."""
    for (outcome, metric, priority), n in Counter((r.outcome, r.metric, r.priority) for r in rows).items():
        metrics.SLA_FEED_EVENTS.labels(outcome, metric, priority).inc(n)
    announced = [row for row in rows if row.outcome in feed.FEED_OUTCOMES]
    if not announced:
        return
    hooks = (await session.execute(sa.select(Webhook).where(Webhook.active.is_(True)))).scalars().all()
    deliveries = [
        {
            "id": new_id(),
            "webhook_id": hook.id,
            "feed_seq": row.seq or 0,
            "event_type": feed.EVENT_NAMES[row.outcome],
            "payload": feed.feed_item(row),
            "status": "pending",
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
        }
        for row in announced
        for hook in hooks
        if feed.EVENT_NAMES[row.outcome] in hook.events
    ]
    if deliveries:
        await session.execute(sa.insert(_deliveries), deliveries)


async def surveys_for_resolutions(
    ctx: BatchContext,
    resolutions: Sequence[tuple[Item, Any]],
    *,
    now: datetime,
    ttl: timedelta,
) -> None:
    """One survey per resolution cycle (none if the ticket was reopened after it), sent out for delivery."""
    wanted: dict[str, tuple[Item, dict[str, Any]]] = {}
    for item, fact in resolutions:
        resolved: t.TicketResolved = item.data
        if fact.reopened_at is not None and fact.reopened_at > resolved.resolved_at:
            continue
        ticket = resolved.ticket
        origin = f"ticket:{ticket.id}:{resolved.reopen_count}"
        wanted.setdefault(
            origin,
            (
                item,
                {
                    "id": new_id(),
                    "origin_key": origin,
                    "ticket_id": ticket.id,
                    "customer_id": ticket.customer_id,
                    "kind": ticket.kind.value,
                    "priority": ticket.priority.value,
                    "channel": ticket.channel.value,
                    "group": ticket.group,
                    "assignee": ticket.assignee,
                    "created_at": now,
                    "expires_at": now + ttl,
                },
            ),
        )
    if not wanted:
        return
    tokens: dict[uuid.UUID, str] = {}
    rows = []
    for _, row in wanted.values():
        token = surveys.new_token()
        tokens[row["id"]] = token
        rows.append({**row, "token_hash": surveys.hash_token(token)})
    # One statement for the batch: a resolution seen again under another event id (or in a batch that
    # committed first) already has its survey, and the unique origin key leaves it alone.
    session = ctx.session
    if dialect_name(session) == "postgresql":
        result = await session.execute(_SURVEYS_PG, column_arrays(rows, _SURVEY_NAMES))
    else:
        result = await session.execute(
            sqlite_insert(_surveys)
            .values(rows)
            .on_conflict_do_nothing(index_elements=["origin_key"])
            .returning(_surveys.c.id)
        )
    created = set(result.scalars().all())
    by_cause: dict[str | None, list[tuple[str, Any, str | None]]] = defaultdict(list)
    causes: dict[str | None, Received | None] = {}
    for row in rows:
        if row["id"] not in created:
            continue
        item, _ = wanted[row["origin_key"]]
        correlation = item.cause.envelope.correlationid if item.cause else None
        causes.setdefault(correlation, item.cause)
        data = surveys.requested_data(row, tokens[row["id"]])
        by_cause[correlation].append(("analytics.survey.requested.v1", data, str(row["id"])))
        metrics.SURVEYS.labels("requested").inc()
    for correlation, events in by_cause.items():
        await ctx.publish_many(events, cause=causes[correlation])


async def project(
    session: AsyncSession,
    items: Sequence[Item],
    *,
    calendar: BusinessCalendar,
    now: datetime,
    live: BatchContext | None = None,
    survey_ttl: timedelta = timedelta(days=28),
) -> None:
    """Fold a batch into the projections; `live` adds the side effects of a fresh delivery."""
    outcomes = outcome_rows([i for i in items if isinstance(i.data, t.SlaOutcome)])
    new_outcomes = await record_outcomes(session, outcomes)
    if live is not None:
        await announce(session, new_outcomes, now=now)
    for item in items:
        if isinstance(item.data, BRIEF_EVENTS):
            await _brief_event(session, item, now=now, live=live, survey_ttl=survey_ttl)
    merges = ticket_merges(items)
    if not merges:
        return
    zones = rollups.kept(session)
    # Every outcome, new or not: a clock is a fold of its events, so seeing one again changes nothing,
    # and a rebuild (whose feed rows are all there already) refolds the clocks from the log.
    clocks = sla_clocks.decide(outcomes)
    facts_before: dict[uuid.UUID, Any] = {}
    clocks_before: dict[sla_clocks.Key, Any] = {}
    if zones:
        await rollups.lock_tickets(session, sorted(merges))
        facts_before = await rollups.read_facts(session, sorted(merges))
        clocks_before = await sla_clocks.read(session, list(clocks))
    stored = await upsert_tickets(session, merges, calendar)
    changed_clocks = await sla_clocks.upsert(session, clocks)
    if live is not None:
        await _after_tickets(live, items, stored, now=now, survey_ttl=survey_ttl)
    if zones:
        # Last before the commit: every batch updates the rows of the current day and week (the "any"
        # rows above all), and holds their locks from here until it commits.
        deltas = rollups.Deltas(zones)
        for ticket_id, row in stored.items():
            deltas.change(facts_before.get(ticket_id), row)
        for key, clock in changed_clocks.items():
            deltas.change(clocks_before.get(key), clock, rollups.clock_contributions)
        await rollups.apply(session, deltas)


def ticket_merges(items: Sequence[Item]) -> dict[uuid.UUID, TicketMerge]:
    """The batch's ticket events merged per ticket, in batch order."""
    merges: dict[uuid.UUID, TicketMerge] = {}
    for item in items:
        snapshot = getattr(item.data, "ticket", None)
        if isinstance(item.data, BRIEF_EVENTS) or not isinstance(snapshot, t.TicketSnapshot):
            continue
        merge = merges.get(snapshot.id)
        if merge is None:
            merge = merges[snapshot.id] = TicketMerge(snapshot)
        merge.add(item.data)
    return merges


async def _brief_event(
    session: AsyncSession, item: Item, *, now: datetime, live: BatchContext | None, survey_ttl: timedelta
) -> None:
    # Brief events are few: the per-event fold (with its row lock) is cheap enough here.
    await agency_facts.apply_brief_event(session, item.data)
    if live is None or not isinstance(item.data, b.ProposalDecided):
        return
    new = await surveys.survey_for_presentation(session, item.data, now=now, ttl=survey_ttl)
    if new is not None:
        await live.publish(
            "analytics.survey.requested.v1",
            surveys.requested_event(new),
            subject=str(new.survey.id),
            cause=item.cause,
        )


async def _after_tickets(
    live: BatchContext,
    items: Sequence[Item],
    stored: dict[uuid.UUID, Any],
    *,
    now: datetime,
    survey_ttl: timedelta,
) -> None:
    """Counters, surveys and withdrawn ratings, judged on each ticket's row as merged by this batch."""
    resolutions = []
    for item in items:
        data = item.data
        if isinstance(data, t.TicketResolved):
            fact = stored[data.ticket.id]
            if fact.first_response_seconds is not None and data.reopen_count == 0:
                metrics.FIRST_RESPONSE.labels(fact.priority).observe(fact.first_response_seconds)
            if fact.resolution_seconds is not None:
                metrics.RESOLUTION.labels(fact.priority).observe(fact.resolution_seconds)
            resolutions.append((item, fact))
    await surveys_for_resolutions(live, resolutions, now=now, ttl=survey_ttl)
    for item in items:
        if isinstance(item.data, t.TicketReopened):
            await surveys.invalidate_for_reopen(live.session, item.data, now=now)
