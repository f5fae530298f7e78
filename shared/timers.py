"""Durable timers: rows with a due time, fired once by a scheduler that sleeps until the earliest one.

A service declares `timers = timer_table(metadata)` in its models, handlers with `@timer_handlers.on(kind)`,
and `ServiceDefinition(..., timers=TimerSetup(table=timers, handlers=timer_handlers))`. Code schedules
with `await runtime.timers.schedule(session, kind=..., subject=..., due_at=...)` inside its own
transaction; the scheduler is woken when that commits.

The scheduler never scans the table on a period: it asks the partial index for the earliest pending due
time, sleeps until then (or until a commit schedules something earlier), and claims due rows with
`FOR UPDATE SKIP LOCKED` so replicas share the work and fire each timer once. Each timer's handler runs
in the transaction that marks it fired, so an effect and the event it publishes commit together. A kind
that falls due in bursts (SLA breaches) registers `@timer_handlers.on_batch(kind)` and gets all its timers
of a pass at once, to read and write them with a few statements.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from prometheus_client import Counter, Histogram
from sqlalchemy import event as sa_event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from shared.background import BackgroundLoop
from shared.clock import Clock, sleep_until_set
from shared.db import Database, UTCDateTime, any_of, dialect_insert, dialect_name
from shared.ids import new_id
from shared.outbox import Outbox

log = logging.getLogger("kefu.timers")

TIMERS_FIRED = Counter("kefu_timers_fired_total", "Timers fired, by outcome", ["service", "kind", "outcome"])
TIMER_LATENESS = Histogram(
    "kefu_timer_lateness_seconds",
    "How long after its due time a timer fired",
    ["service"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0, 600.0),
)

# A timer fired more than this long after its due time is reported as late (e.g. after downtime).
LATE_AFTER = timedelta(seconds=1)
# Backstop so a timer scheduled by another replica (whose commit cannot wake this process) still fires
# promptly: one index probe at most this often, whatever the table holds.
MAX_SLEEP_SECONDS = 30.0
# A handler that keeps failing is retried with backoff, then given up with its error kept on the row.
MAX_ATTEMPTS = 8

_WAKE_KEY = "kefu.timers.wake"


def timer_table(metadata: sa.MetaData) -> sa.Table:
    """The `timers` table in a service's own metadata; call once in its `models.py`."""
    return sa.Table(
        "timers",
        metadata,
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("kind", sa.String(100), nullable=False),
        sa.Column("subject", sa.String(200), nullable=False),
        sa.Column("due_at", UTCDateTime(), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("fired_at", UTCDateTime(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.UniqueConstraint("kind", "subject", name="uq_timers_kind_subject"),
        # Only pending timers are indexed by due time: the scheduler's one query reads its head.
        sa.Index(
            "ix_timers_pending_due",
            "due_at",
            postgresql_where=sa.text("fired_at IS NULL"),
            sqlite_where=sa.text("fired_at IS NULL"),
        ),
    )


@dataclass(frozen=True)
class DueTimer:
    """A timer as its handler sees it."""

    kind: str
    subject: str
    due_at: datetime
    payload: dict[str, Any] | None
    late: bool


class Timers:
    """Schedule and cancel timers inside the caller's transaction; the scheduler wakes after commit."""

    def __init__(self, table: sa.Table, *, clock: Clock) -> None:
        self.table = table
        self.clock = clock
        self._upserts: dict[str, Any] = {}
        self.wake = asyncio.Event()
        # When the scheduler next looks by itself; None while it is awake and about to look anyway.
        self.sleeping_until: datetime | None = None

    async def schedule(
        self,
        session: AsyncSession,
        *,
        kind: str,
        subject: str,
        due_at: datetime,
        payload: dict[str, Any] | None = None,
    ) -> None:
        """Insert the `(kind, subject)` timer, or move it to `due_at` (un-firing it if it had fired)."""
        await self.schedule_many(session, [(kind, subject, due_at, payload)])

    async def schedule_many(
        self, session: AsyncSession, timers: Sequence[tuple[str, str, datetime, dict[str, Any] | None]]
    ) -> None:
        """`schedule` for many `(kind, subject, due_at, payload)` in one statement; the last of a
        `(kind, subject)` given twice wins."""
        latest = {(kind, subject): (due_at, payload) for kind, subject, due_at, payload in timers}
        if not latest:
            return
        if any(due_at.tzinfo is None for due_at, _ in latest.values()):
            raise ValueError("timers need an aware due time")
        now = self.clock.now()
        rows = [
            {
                "id": new_id(),
                "kind": kind,
                "subject": subject,
                "due_at": due_at,
                "payload": payload,
                "created_at": now,
                "fired_at": None,
                "attempts": 0,
            }
            for (kind, subject), (due_at, payload) in latest.items()
        ]
        await session.execute(self._upsert(session), rows)
        self._wake_after_commit(session, min(due_at for due_at, _ in latest.values()))

    def _upsert(self, session: AsyncSession) -> Any:
        """The insert-or-move statement, built once per dialect. With the rows passed as parameters its
        compiled form is cached; rows written into the statement (`.values([...])`) would make it
        uncacheable, compiled anew on every call (6 % of tickets' CPU under load)."""
        name = dialect_name(session)
        if name not in self._upserts:
            statement = dialect_insert(session)(self.table)
            self._upserts[name] = statement.on_conflict_do_update(
                index_elements=["kind", "subject"],
                set_={
                    "due_at": statement.excluded.due_at,
                    "payload": statement.excluded.payload,
                    "fired_at": None,
                    "attempts": 0,
                    "last_error": None,
                },
            )
        return self._upserts[name]

    async def cancel(self, session: AsyncSession, *, kind: str, subject: str) -> None:
        """Forget the `(kind, subject)` timer if it is still pending (a no-op otherwise)."""
        await session.execute(
            self.table.delete()
            .where(self.table.c.kind == kind)
            .where(self.table.c.subject == subject)
            .where(self.table.c.fired_at.is_(None))
        )
        self._wake_after_commit(session, None)

    async def cancel_many(self, session: AsyncSession, *, kind: str, subjects: list[str]) -> None:
        """`cancel` for many subjects of one kind, in one statement."""
        if not subjects:
            return
        await session.execute(
            self.table.delete()
            .where(self.table.c.kind == kind)
            .where(any_of(self.table.c.subject, subjects, postgresql=dialect_name(session) == "postgresql"))
            .where(self.table.c.fired_at.is_(None))
        )
        # No wake: a cancelled timer never makes anything due sooner, and a sleep until it costs one probe.

    async def pending(self, session: AsyncSession, *, kind: str, subject: str) -> datetime | None:
        """The due time of a pending timer, or None."""
        return (
            await session.execute(
                sa.select(self.table.c.due_at)
                .where(self.table.c.kind == kind)
                .where(self.table.c.subject == subject)
                .where(self.table.c.fired_at.is_(None))
            )
        ).scalar_one_or_none()

    def _wake_after_commit(self, session: AsyncSession, due_at: datetime | None) -> None:
        session.sync_session.info.setdefault(_WAKE_KEY, []).append((self, due_at))

    def notify(self, due_at: datetime | None) -> None:
        """Wake the scheduler if `due_at` comes before it would look again (None: always)."""
        if due_at is None or self.sleeping_until is None or due_at < self.sleeping_until:
            self.wake.set()


@sa_event.listens_for(Session, "after_commit")
def _wake_schedulers(session: Session) -> None:
    for timers, due_at in session.info.pop(_WAKE_KEY, ()):
        timers.notify(due_at)


@sa_event.listens_for(Session, "after_rollback")
def _forget_wakes(session: Session) -> None:
    session.info.pop(_WAKE_KEY, None)


@dataclass(frozen=True)
class TimerContext:
    """What a timer handler works with: the transaction that marks the timer fired, and friends."""

    session: AsyncSession
    outbox: Outbox
    clock: Clock
    timers: Timers
    # Work to do once the transaction has committed (metrics, say), so a rolled-back attempt leaves none.
    committed: list[Callable[[], None]] = field(default_factory=list)

    async def publish(self, type: str, data: Any, *, subject: str | None = None) -> None:
        await self.outbox.add(self.session, type, data, subject=subject)

    def on_commit(self, callback: Callable[[], None]) -> None:
        self.committed.append(callback)


TimerHandler = Callable[[TimerContext, DueTimer], Awaitable[None]]
BatchTimerHandler = Callable[[TimerContext, list[DueTimer]], Awaitable[None]]


class TimerHandlers:
    """A service's timer handlers by kind; `@timer_handlers.on("sla.breach")`.

    `@timer_handlers.on_batch(kind)` takes every due timer of that kind claimed in one pass, so a kind that
    falls due in bursts is handled with a few statements per pass instead of a few per timer.
    """

    def __init__(self) -> None:
        self.by_kind: dict[str, TimerHandler] = {}
        self.batch_by_kind: dict[str, BatchTimerHandler] = {}

    def _check_new(self, kind: str) -> None:
        if kind in self.by_kind or kind in self.batch_by_kind:
            raise ValueError(f"two handlers for timer kind {kind}")

    def on(self, kind: str) -> Callable[[TimerHandler], TimerHandler]:
        def register(handler: TimerHandler) -> TimerHandler:
            self._check_new(kind)
            self.by_kind[kind] = handler
            return handler

        return register

    def on_batch(self, kind: str) -> Callable[[BatchTimerHandler], BatchTimerHandler]:
        def register(handler: BatchTimerHandler) -> BatchTimerHandler:
            self._check_new(kind)
            self.batch_by_kind[kind] = handler
            return handler

        return register

    def handles(self, kind: str) -> bool:
        return kind in self.by_kind or kind in self.batch_by_kind

    async def run(self, context: TimerContext, kind: str, due: list[DueTimer]) -> None:
        """Hand `due` (all of one kind) to the kind's handler: in one call, or one call per timer."""
        batch = self.batch_by_kind.get(kind)
        if batch is not None:
            await batch(context, due)
            return
        handler = self.by_kind[kind]
        for timer in due:
            await handler(context, timer)


@dataclass(frozen=True)
class TimerSetup:
    """What a `ServiceDefinition` declares to get a scheduler: its table and its handlers."""

    table: sa.Table
    handlers: TimerHandlers
    batch_size: int = 200


class _HandlerFailed(Exception):
    """A handler raised while a whole batch ran in one transaction; `timer_id` is None for a batch handler."""

    def __init__(self, timer_id: Any, error: Exception) -> None:
        super().__init__(str(error))
        self.timer_id = timer_id
        self.error = error


class TimerScheduler:
    """Fires due timers within a second of their due time; several replicas may run one each.

    A pass claims up to `batch_size` due rows and handles them in one transaction: one statement marks
    them fired and each kind's handler gets its timers together. Only if a handler fails is the batch
    rolled back and run again timer by timer, each in its own savepoint, so one failing timer never holds
    back the others. When a pass finds a full batch, `claimers` passes run at once (SKIP LOCKED keeps
    their rows apart) so database round trips overlap with the handlers' work.
    """

    def __init__(
        self,
        *,
        service: str,
        db: Database,
        timers: Timers,
        handlers: TimerHandlers,
        outbox: Outbox,
        clock: Clock,
        batch_size: int = 200,
        claimers: int = 2,
        max_sleep_seconds: float = MAX_SLEEP_SECONDS,
    ) -> None:
        self.service = service
        self.db = db
        self.timers = timers
        self.table = timers.table
        self.handlers = handlers
        self.outbox = outbox
        self.clock = clock
        self.batch_size = batch_size
        # SQLite has one writer at a time: concurrent passes would only queue behind each other.
        self.claimers = 1 if db.is_sqlite else max(1, claimers)
        self.max_sleep_seconds = max_sleep_seconds
        self.probes = 0  # earliest-due queries made, for the benchmark's idle cost
        self._loop = BackgroundLoop(f"kefu-{service}-timers", timers.wake)

    def start(self) -> None:
        self._loop.start(self._run)

    async def stop(self) -> None:
        """Finish the pass in hand (its timers fired and marked), then stop."""
        await self._loop.stop()

    async def _run(self) -> None:
        while self._loop.next_pass():
            self.timers.sleeping_until = None
            try:
                await self._drain()
                delay = await self._seconds_until_next()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("timer pass failed")
                delay = 1.0
            self.timers.sleeping_until = self.clock.now() + timedelta(seconds=delay)
            await sleep_until_set(self.timers.wake, delay)

    async def _drain(self) -> None:
        """Fire what is due; while passes come back full, more is due: several claimers take turns."""
        if await self.fire_due() < self.batch_size:
            return

        async def claimer() -> None:
            # Each claimer goes on by itself until it finds less than a full batch, so none waits on another.
            while not self._loop.stopping and await self.fire_due() >= self.batch_size:
                pass

        await asyncio.gather(*(claimer() for _ in range(self.claimers)))

    async def _seconds_until_next(self) -> float:
        earliest = await self.earliest_due()
        if earliest is None:
            return self.max_sleep_seconds
        seconds = (earliest - self.clock.now()).total_seconds()
        # Wake a hair after the due time so the row is due by our clock when we claim it.
        return min(self.max_sleep_seconds, max(0.0, seconds) + 0.001)

    async def earliest_due(self) -> datetime | None:
        """The earliest pending due time: one probe of the partial index's head."""
        self.probes += 1
        async with self.db.transaction() as session:
            return (
                await session.execute(
                    sa.select(self.table.c.due_at)
                    .where(self.table.c.fired_at.is_(None))
                    .order_by(self.table.c.due_at)
                    .limit(1)
                )
            ).scalar_one_or_none()

    async def _claim(self, session: AsyncSession, now: datetime, ids: list[Any] | None = None) -> list[Any]:
        table = self.table
        query = (
            sa.select(table)
            .where(table.c.fired_at.is_(None))
            .where(table.c.due_at <= now)
            # The partial index's order alone: a backlog after downtime is read a batch at a time.
            .order_by(table.c.due_at)
            .limit(self.batch_size)
        )
        if ids is not None:
            query = query.where(any_of(table.c.id, ids, postgresql=not self.db.is_sqlite))
        if not self.db.is_sqlite:
            # Replicas (and this process's other claimers) skip rows another pass holds: each fires once.
            query = query.with_for_update(skip_locked=True)
        return list((await session.execute(query)).mappings().all())

    def _due(self, row: Any, fired_at: datetime) -> DueTimer:
        return DueTimer(
            kind=row["kind"],
            subject=row["subject"],
            due_at=row["due_at"],
            payload=row["payload"],
            late=fired_at - row["due_at"] > LATE_AFTER,
        )

    async def fire_due(self) -> int:
        """Fire one batch of what is due now (by the clock); returns how many timers were handled.

        Tests with a `FrozenClock` call this after moving the clock.
        """
        now = self.clock.now()
        context: TimerContext | None = None
        try:
            async with self.db.transaction() as session:
                rows = await self._claim(session, now)
                if not rows:
                    return 0
                context = TimerContext(session, self.outbox, self.clock, self.timers)
                await self._fire_together(context, rows)
        except _HandlerFailed as failure:
            return await self._fire_one_by_one(now, [row["id"] for row in rows], failure)
        for callback in context.committed:
            callback()
        return len(rows)

    async def _fire_together(self, context: TimerContext, rows: list[Any]) -> None:
        table = self.table
        fired_at = self.clock.now()
        by_kind: dict[str, list[Any]] = {}
        for row in rows:
            by_kind.setdefault(row["kind"], []).append(row)
        unhandled = [row["id"] for row in rows if not self.handlers.handles(row["kind"])]
        # Mark fired before handlers run, so a handler that re-schedules its own (kind, subject) moves
        # the timer instead of being overwritten.
        postgresql = not self.db.is_sqlite
        fired = any_of(table.c.id, [row["id"] for row in rows], postgresql=postgresql)
        await context.session.execute(table.update().where(fired).values(fired_at=fired_at))
        if unhandled:
            await context.session.execute(
                table.update().where(table.c.id.in_(unhandled)).values(last_error="no handler for this kind")
            )
        for kind, kind_rows in by_kind.items():
            if not self.handlers.handles(kind):
                log.error("no handler for timer kind %r; marking it fired", kind)
                TIMERS_FIRED.labels(self.service, kind, "unhandled").inc(len(kind_rows))
                continue
            due = [self._due(row, fired_at) for row in kind_rows]
            if kind in self.handlers.batch_by_kind:
                try:
                    await self.handlers.run(context, kind, due)
                except Exception as exc:
                    raise _HandlerFailed(None, exc) from exc
            else:
                handler = self.handlers.by_kind[kind]
                for row, timer in zip(kind_rows, due, strict=True):
                    try:
                        await handler(context, timer)
                    except Exception as exc:
                        raise _HandlerFailed(row["id"], exc) from exc
            for timer in due:
                context.on_commit(self._fired_metrics(timer, fired_at))

    def _fired_metrics(self, due: DueTimer, fired_at: datetime) -> Callable[[], None]:
        def observe() -> None:
            TIMERS_FIRED.labels(self.service, due.kind, "late" if due.late else "fired").inc()
            TIMER_LATENESS.labels(self.service).observe(max(0.0, (fired_at - due.due_at).total_seconds()))

        return observe

    async def _fire_one_by_one(self, now: datetime, ids: list[Any], failure: _HandlerFailed) -> int:
        """The batch failed as a whole: run it again, each timer in a savepoint of its own.

        The timer whose handler failed is not run again now: it is retried with backoff, like any failure.
        """
        committed: list[Callable[[], None]] = []
        async with self.db.transaction() as session:
            rows = await self._claim(session, now, ids)
            for row in rows:
                if row["id"] == failure.timer_id:
                    await self._failed(session, row, now, failure.error)
                    continue
                context = TimerContext(session, self.outbox, self.clock, self.timers)
                await self._fire_one(context, row, now)
                committed.extend(context.committed)
        for callback in committed:
            callback()
        return len(rows)

    async def _fire_one(self, context: TimerContext, row: Any, now: datetime) -> None:
        table = self.table
        session = context.session
        fired_at = self.clock.now()
        due = self._due(row, fired_at)
        mark = table.update().where(table.c.id == row["id"]).values(fired_at=fired_at)
        if not self.handlers.handles(row["kind"]):
            log.error("no handler for timer kind %r; marking it fired", row["kind"])
            await session.execute(mark.values(last_error="no handler for this kind"))
            TIMERS_FIRED.labels(self.service, row["kind"], "unhandled").inc()
            return
        try:
            async with session.begin_nested():
                await session.execute(mark)
                await self.handlers.run(context, due.kind, [due])
        except Exception as exc:
            context.committed.clear()
            await self._failed(session, row, now, exc)
            return
        context.on_commit(self._fired_metrics(due, fired_at))

    async def _failed(self, session: AsyncSession, row: Any, now: datetime, exc: Exception) -> None:
        table = self.table
        attempts = row["attempts"] + 1
        error = f"{type(exc).__name__}: {exc}"[:2000]
        if attempts >= MAX_ATTEMPTS:
            log.error(
                "timer %s/%s failed %d times; giving up", row["kind"], row["subject"], attempts, exc_info=exc
            )
            values: dict[str, Any] = {"fired_at": self.clock.now(), "attempts": attempts, "last_error": error}
            outcome = "gave_up"
        else:
            retry_in = min(300.0, math.pow(2, attempts))
            log.warning(
                "timer %s/%s failed (%s); retry in %.0fs", row["kind"], row["subject"], error, retry_in
            )
            values = {"due_at": now + timedelta(seconds=retry_in), "attempts": attempts, "last_error": error}
            outcome = "retried"
        await session.execute(table.update().where(table.c.id == row["id"]).values(**values))
        TIMERS_FIRED.labels(self.service, row["kind"], outcome).inc()


__all__ = [
    "BatchTimerHandler",
    "DueTimer",
    "TimerContext",
    "TimerHandlers",
    "TimerScheduler",
    "TimerSetup",
    "Timers",
    "timer_table",
]
