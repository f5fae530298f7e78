"""Transactional outbox: events are rows written with the change; a relay publishes them until confirmed."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel
from sqlalchemy import event as sa_event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from shared import observability
from shared.background import BackgroundLoop
from shared.bus.base import OutgoingMessage, PublishFailed, Transport
from shared.clock import Clock, sleep_until_set, utc_iso
from shared.db import Database, UTCDateTime, any_of, infra_metadata
from shared.events import CloudEvent, EventRegistry, make_event
from shared.ids import new_id
from shared.observability import correlation_id

log = logging.getLogger("kefu.outbox")

outbox_table = sa.Table(
    "outbox",
    infra_metadata,
    sa.Column(
        "seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True
    ),
    sa.Column("event_id", sa.String(64), nullable=False, unique=True),
    sa.Column("type", sa.String(200), nullable=False),
    sa.Column("payload", sa.LargeBinary(), nullable=False),
    sa.Column("correlation_id", sa.String(200)),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("published_at", UTCDateTime()),
    sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("next_attempt_at", UTCDateTime()),
    sa.Column("last_error", sa.Text()),
    sa.Index(
        "ix_outbox_pending",
        "seq",
        postgresql_where=sa.text("published_at IS NULL"),
        sqlite_where=sa.text("published_at IS NULL"),
    ),
)

_WAKE_KEY = "kefu.outbox.wake"
# Built once: every change that publishes runs it, and a reused statement keeps its compiled form.
_INSERT = outbox_table.insert()


def _event_row(
    *,
    type: str,
    source: str,
    data: BaseModel,
    subject: str | None,
    time: datetime,
    correlation: str | None,
) -> tuple[CloudEvent, bytes]:
    """The envelope and its JSON, as `make_event(...).to_json()` makes them, without validating it again.

    Every field but `data` comes from the outbox itself and is checked here; `data` is a validated model.
    Anything out of the ordinary goes through `make_event`, which raises what it always did.
    """
    if (
        time.tzinfo is None
        or len(type) > 200
        or len(source) > 500
        or (subject is not None and len(subject) > 500)
        or (correlation is not None and len(correlation) > 200)
    ):
        event = make_event(
            type=type, source=source, data=data, subject=subject, time=time, correlation_id=correlation
        )
        return event, event.to_json()
    payload = data.model_dump(mode="json")
    event = CloudEvent.model_construct(
        id=str(new_id()),
        source=source,
        type=type,
        time=time,
        subject=subject,
        data=payload,
        correlationid=correlation,
    )
    # The same keys, order and form as CloudEvent.to_json(): absent attributes left out, time in UTC.
    body: dict[str, object] = {"specversion": "1.0", "id": event.id, "source": source, "type": type}
    body["time"] = utc_iso(time)
    if subject is not None:
        body["subject"] = subject
    body["datacontenttype"] = "application/json"
    body["data"] = payload
    if correlation is not None:
        body["correlationid"] = correlation
    return event, json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


class Outbox:
    """The one way a service publishes: `await outbox.add(session, type, data)` inside its transaction."""

    def __init__(self, *, source: str, registry: EventRegistry, clock: Clock) -> None:
        self.source = source
        self.registry = registry
        self.clock = clock
        self.wake = asyncio.Event()

    async def add(
        self, session: AsyncSession, type: str, data: BaseModel, *, subject: str | None = None
    ) -> CloudEvent:
        event, row = self.row(type, data, subject=subject)
        await session.execute(_INSERT, row)
        # Wake the relay as soon as this transaction commits, not at the next poll.
        session.sync_session.info.setdefault(_WAKE_KEY, set()).add(self.wake)
        return event

    def row(
        self, type: str, data: BaseModel, *, subject: str | None = None, now: datetime | None = None
    ) -> tuple[CloudEvent, dict[str, Any]]:
        """The event and the outbox row `add` would insert, for a writer that inserts it in its own
        statement; it must call `committed()` once its transaction commits."""
        expected = self.registry.get(type).data_model
        if not isinstance(data, expected):
            raise TypeError(f"{type} carries {expected.__name__}, not {data.__class__.__name__}")
        now = now or self.clock.now()
        event, payload = _event_row(
            type=type,
            source=self.source,
            data=data,
            subject=subject,
            time=now,
            correlation=correlation_id.get(),
        )
        return event, {
            "event_id": event.id,
            "type": event.type,
            "payload": payload,
            "correlation_id": event.correlationid,
            "created_at": now,
        }

    def committed(self) -> None:
        """Rows were committed outside a session: wake the relay as `add`'s commit hook does."""
        self.wake.set()

    async def add_many(
        self, session: AsyncSession, events: Sequence[tuple[str, BaseModel, str | None]]
    ) -> list[CloudEvent]:
        """`add` for many `(type, data, subject)` at once: one multi-row insert, events kept in order."""
        if not events:
            return []
        now = self.clock.now()
        made = [self.row(type, data, subject=subject, now=now) for type, data, subject in events]
        await session.execute(_INSERT, [row for _, row in made])
        session.sync_session.info.setdefault(_WAKE_KEY, set()).add(self.wake)
        return [event for event, _ in made]


@sa_event.listens_for(Session, "after_commit")
def _wake_relays(session: Session) -> None:
    for wake in session.info.pop(_WAKE_KEY, ()):
        wake.set()


@sa_event.listens_for(Session, "after_rollback")
def _forget_wakes(session: Session) -> None:
    session.info.pop(_WAKE_KEY, None)


class OutboxRelay:
    """Publishes pending outbox rows in batches with publisher confirms; safe with several replicas."""

    def __init__(
        self,
        *,
        service: str,
        db: Database,
        transport: Transport,
        outbox: Outbox,
        clock: Clock,
        batch_size: int = 200,
        poll_seconds: float = 1.0,
        max_backoff_seconds: float = 60.0,
        linger_seconds: float = 0.002,
        pass_interval_seconds: float = 0.05,
        retention: timedelta = timedelta(days=1),
    ) -> None:
        self.service = service
        self.db = db
        self.transport = transport
        self.outbox = outbox
        self.clock = clock
        self.batch_size = batch_size
        self.poll_seconds = poll_seconds
        self.max_backoff_seconds = max_backoff_seconds
        self.linger_seconds = linger_seconds
        self.pass_interval_seconds = pass_interval_seconds
        self.retention = retention
        self._loop = BackgroundLoop(f"kefu-{service}-outbox-relay", outbox.wake)
        self._last_purge: datetime | None = None

    def start(self) -> None:
        self._loop.start(self._run)

    async def stop(self) -> None:
        """Finish the batch in hand (published and marked, or left for the next start), then stop."""
        await self._loop.stop()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while self._loop.next_pass():
            last_pass = loop.time()
            try:
                published = await self.publish_batch()
                await self._purge_published()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("outbox relay pass failed")
                published = 0
            if published >= self.batch_size:
                continue  # more may be waiting: drain before sleeping
            # The polling backstop: rows committed by other replicas, retries coming due.
            if await sleep_until_set(self.outbox.wake, self.poll_seconds):
                # Woken by a commit: others usually commit within a few milliseconds, and one pass for
                # all of them costs far less than a pass (a transaction and a broker round trip) each.
                # Under a steady stream of commits, passes start at most every `pass_interval_seconds`:
                # a pass costs about as much CPU as the request that woke it, so one per commit would
                # halve what the service can take; a quiet service still publishes after the linger.
                delay = max(self.linger_seconds, last_pass + self.pass_interval_seconds - loop.time())
                if delay > 0:
                    await asyncio.sleep(delay)

    async def publish_batch(self) -> int:
        """Publish one batch of due rows; returns how many were confirmed."""
        now = self.clock.now()
        async with self.db.transaction() as session:
            query = (
                sa.select(
                    outbox_table.c.seq,
                    outbox_table.c.event_id,
                    outbox_table.c.type,
                    outbox_table.c.payload,
                    outbox_table.c.correlation_id,
                    outbox_table.c.created_at,
                    outbox_table.c.attempts,
                )
                .where(outbox_table.c.published_at.is_(None))
                .where(
                    sa.or_(outbox_table.c.next_attempt_at.is_(None), outbox_table.c.next_attempt_at <= now)
                )
                .order_by(outbox_table.c.seq)
                .limit(self.batch_size)
            )
            if not self.db.is_sqlite:
                # Replicas skip each other's rows instead of publishing them twice.
                query = query.with_for_update(skip_locked=True)
            rows = (await session.execute(query)).all()
            if not rows:
                return 0
            messages = [
                OutgoingMessage(
                    id=row.event_id,
                    routing_key=row.type,
                    body=row.payload,
                    timestamp=row.created_at,
                    correlation_id=row.correlation_id,
                )
                for row in rows
            ]
            failed: set[str] = set()
            reason = ""
            try:
                await self.transport.publish(messages)
            except PublishFailed as exc:
                failed, reason = exc.failed_ids, exc.reason
            confirmed = [row.seq for row in rows if row.event_id not in failed]
            if confirmed:
                await session.execute(
                    outbox_table.update()
                    .where(any_of(outbox_table.c.seq, confirmed, postgresql=not self.db.is_sqlite))
                    .values(published_at=self.clock.now())
                )
            for row in rows:
                if row.event_id in failed:
                    delay = min(self.max_backoff_seconds, 0.5 * 2 ** min(row.attempts, 16))
                    await session.execute(
                        outbox_table.update()
                        .where(outbox_table.c.seq == row.seq)
                        .values(
                            attempts=row.attempts + 1,
                            last_error=reason[:2000],
                            next_attempt_at=now + timedelta(seconds=delay),
                        )
                    )
            for row in rows:
                if row.event_id not in failed:
                    observability.EVENTS_PUBLISHED.labels(self.service, row.type).inc()
            if failed:
                log.warning("%d of %d events not confirmed: %s", len(failed), len(rows), reason)
            return len(confirmed)

    async def _purge_published(self) -> None:
        now = self.clock.now()
        if self._last_purge is not None and now - self._last_purge < timedelta(minutes=5):
            return
        self._last_purge = now
        async with self.db.transaction() as session:
            await session.execute(
                outbox_table.delete()
                .where(outbox_table.c.published_at.is_not(None))
                .where(outbox_table.c.published_at < now - self.retention)
            )

    async def pending(self) -> tuple[int, float]:
        """How many rows wait, and the age in seconds of the oldest (exported as metrics)."""
        async with self.db.transaction() as session:
            row = (
                await session.execute(
                    sa.select(sa.func.count(), sa.func.min(outbox_table.c.created_at)).where(
                        outbox_table.c.published_at.is_(None)
                    )
                )
            ).one()
        count, oldest = row
        age = (self.clock.now() - oldest).total_seconds() if oldest is not None else 0.0
        return int(count), max(age, 0.0)
