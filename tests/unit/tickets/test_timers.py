"""The shared timer machinery on SQLite: schedule, move, cancel, fire once, late after downtime, retry."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine.default import CACHE_HIT, CACHE_MISS

from shared.clock import FrozenClock, SystemClock
from shared.db import Database, infra_metadata
from shared.events import registry
from shared.outbox import Outbox
from shared.timers import DueTimer, TimerContext, TimerHandlers, Timers, TimerScheduler, timer_table

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

metadata = sa.MetaData()
timers_table = timer_table(metadata)
# What batch handlers in these tests write, to show which attempts committed.
effects = sa.Table("effects", metadata, sa.Column("subject", sa.String(50), nullable=False))


class Harness:
    def __init__(self, db: Database, clock: FrozenClock | SystemClock) -> None:
        self.db = db
        self.clock = clock
        self.timers = Timers(timers_table, clock=clock)
        self.fired: list[DueTimer] = []
        self.handlers = TimerHandlers()
        self.fail_times = 0

        @self.handlers.on("reminder")
        async def remind(ctx: TimerContext, timer: DueTimer) -> None:
            if self.fail_times:
                self.fail_times -= 1
                raise RuntimeError("downstream unavailable")
            self.fired.append(timer)

        @self.handlers.on("repeat")
        async def repeat(ctx: TimerContext, timer: DueTimer) -> None:
            self.fired.append(timer)
            await ctx.timers.schedule(
                ctx.session, kind="repeat", subject=timer.subject, due_at=timer.due_at + timedelta(hours=1)
            )

        self.scheduler = TimerScheduler(
            service="test",
            db=db,
            timers=self.timers,
            handlers=self.handlers,
            outbox=Outbox(source="/kefu/test", registry=registry, clock=clock),
            clock=clock,
        )

    async def schedule(self, subject: str, due_at: datetime, kind: str = "reminder") -> None:
        async with self.db.transaction() as session:
            await self.timers.schedule(
                session, kind=kind, subject=subject, due_at=due_at, payload={"n": subject}
            )


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'timers.db'}")
    async with database.engine.begin() as connection:
        await connection.run_sync(infra_metadata.create_all)
        await connection.run_sync(metadata.create_all)
    yield database
    await database.dispose()


async def test_fires_only_what_is_due_once_with_its_payload(db: Database) -> None:
    clock = FrozenClock(T0)
    h = Harness(db, clock)
    await h.schedule("a", T0 + timedelta(minutes=5))
    await h.schedule("b", T0 + timedelta(minutes=10))
    assert await h.scheduler.fire_due() == 0
    clock.advance(timedelta(minutes=5))
    assert await h.scheduler.fire_due() == 1
    assert await h.scheduler.fire_due() == 0
    assert [(t.subject, t.payload, t.late) for t in h.fired] == [("a", {"n": "a"}, False)]
    assert await h.scheduler.earliest_due() == T0 + timedelta(minutes=10)


async def test_schedule_moves_and_cancel_forgets(db: Database) -> None:
    clock = FrozenClock(T0)
    h = Harness(db, clock)
    await h.schedule("a", T0 + timedelta(minutes=5))
    await h.schedule("a", T0 + timedelta(minutes=20))
    await h.schedule("b", T0 + timedelta(minutes=5))
    async with db.transaction() as session:
        await h.timers.cancel(session, kind="reminder", subject="b")
    clock.advance(timedelta(minutes=10))
    assert await h.scheduler.fire_due() == 0
    clock.advance(timedelta(minutes=10))
    assert await h.scheduler.fire_due() == 1
    assert [t.subject for t in h.fired] == ["a"]


async def test_a_fired_timer_scheduled_again_fires_again(db: Database) -> None:
    clock = FrozenClock(T0)
    h = Harness(db, clock)
    await h.schedule("r", T0, kind="repeat")
    assert await h.scheduler.fire_due() == 1
    clock.advance(timedelta(hours=1))
    assert await h.scheduler.fire_due() == 1
    assert [t.due_at for t in h.fired] == [T0, T0 + timedelta(hours=1)]


async def test_schedule_many_inserts_and_moves_in_one_call_the_last_of_a_pair_winning(db: Database) -> None:
    clock = FrozenClock(T0)
    h = Harness(db, clock)
    await h.schedule("a", T0 + timedelta(hours=5))
    async with db.transaction() as session:
        await h.timers.schedule_many(
            session,
            [
                ("reminder", "a", T0 + timedelta(minutes=1), {"n": "moved"}),
                ("reminder", "b", T0 + timedelta(minutes=9), None),
                ("reminder", "b", T0 + timedelta(minutes=2), {"n": "last"}),
            ],
        )
    clock.advance(timedelta(minutes=2))
    assert await h.scheduler.fire_due() == 2
    assert sorted((t.subject, t.payload) for t in h.fired) == [("a", {"n": "moved"}), ("b", {"n": "last"})]


async def test_scheduling_reuses_one_compiled_statement_whatever_the_number_of_timers(db: Database) -> None:
    # Rows written into the statement would compile it anew on every call: CPU on every ticket action.
    h = Harness(db, FrozenClock(T0))
    outcomes: list[object] = []

    def record(conn: object, cursor: object, statement: str, *rest: object) -> None:
        context = rest[-2]
        if statement.startswith("INSERT INTO timers"):
            outcomes.append(context.cache_hit)  # type: ignore[attr-defined]

    sa.event.listen(db.engine.sync_engine, "after_cursor_execute", record)
    for n in (1, 3, 2, 3, 1):
        async with db.transaction() as session:
            await h.timers.schedule_many(
                session, [("reminder", f"{n}-{i}", T0 + timedelta(hours=1), None) for i in range(n)]
            )
    sa.event.remove(db.engine.sync_engine, "after_cursor_execute", record)

    # Compiled once for one row and once for several (an executemany), then only taken from the cache.
    assert outcomes == [CACHE_MISS, CACHE_MISS, CACHE_HIT, CACHE_HIT, CACHE_HIT]


async def test_timer_due_during_downtime_fires_once_marked_late(db: Database) -> None:
    clock = FrozenClock(T0)
    h = Harness(db, clock)
    await h.schedule("a", T0 + timedelta(seconds=30))
    clock.advance(timedelta(hours=2))  # the service was down
    assert await h.scheduler.fire_due() == 1
    assert await h.scheduler.fire_due() == 0
    assert h.fired[0].late is True


async def test_a_failing_handler_is_retried_later_and_then_fires(db: Database) -> None:
    clock = FrozenClock(T0)
    h = Harness(db, clock)
    h.fail_times = 1
    await h.schedule("a", T0)
    await h.schedule("b", T0)
    assert await h.scheduler.fire_due() == 2
    assert [t.subject for t in h.fired] == ["b"]  # one failure does not hold back the others
    assert await h.scheduler.fire_due() == 0  # backing off
    clock.advance(timedelta(seconds=5))
    assert await h.scheduler.fire_due() == 1
    assert sorted(t.subject for t in h.fired) == ["a", "b"]


async def test_naive_due_time_is_refused(db: Database) -> None:
    h = Harness(db, FrozenClock(T0))
    with pytest.raises(ValueError):
        await h.schedule("a", datetime(2026, 1, 1))


async def test_running_scheduler_is_woken_by_a_commit_and_fires_on_time(db: Database) -> None:
    h = Harness(db, SystemClock())
    h.scheduler.start()
    try:
        await asyncio.sleep(0.1)  # asleep: nothing pending
        due = datetime.now(UTC) + timedelta(milliseconds=300)
        await h.schedule("soon", due)
        for _ in range(200):
            if h.fired:
                break
            await asyncio.sleep(0.02)
        assert [t.subject for t in h.fired] == ["soon"]
        assert h.fired[0].late is False
    finally:
        await h.scheduler.stop()


class BatchHarness(Harness):
    """A kind handled in batches, whose effects are rows in the handler's own transaction."""

    def __init__(self, db: Database, clock: FrozenClock) -> None:
        super().__init__(db, clock)
        self.calls: list[list[str]] = []
        self.poison: set[str] = set()

        @self.handlers.on_batch("batched")
        async def handle(ctx: TimerContext, due: list[DueTimer]) -> None:
            self.calls.append([t.subject for t in due])
            await ctx.session.execute(effects.insert(), [{"subject": t.subject} for t in due])
            if self.poison & {t.subject for t in due}:
                raise RuntimeError("downstream unavailable")

    async def effects(self) -> list[str]:
        async with self.db.transaction() as session:
            return list(
                (await session.execute(sa.select(effects.c.subject).order_by(effects.c.subject))).scalars()
            )


async def test_a_batch_handler_gets_every_due_timer_of_its_kind_in_one_call(db: Database) -> None:
    clock = FrozenClock(T0)
    h = BatchHarness(db, clock)
    for n, subject in enumerate(["c", "a", "b"]):
        await h.schedule(subject, T0 + timedelta(seconds=n), kind="batched")
    await h.schedule("r", T0, kind="reminder")
    clock.advance(timedelta(seconds=5))
    assert await h.scheduler.fire_due() == 4
    assert h.calls == [["c", "a", "b"]]  # in due order
    assert [t.subject for t in h.fired] == ["r"]
    assert await h.effects() == ["a", "b", "c"]
    assert await h.scheduler.fire_due() == 0


async def test_one_failing_timer_in_a_batch_does_not_hold_back_the_others(db: Database) -> None:
    clock = FrozenClock(T0)
    h = BatchHarness(db, clock)
    for subject in ["a", "bad", "c"]:
        await h.schedule(subject, T0, kind="batched")
    h.poison = {"bad"}
    assert await h.scheduler.fire_due() == 3
    # The failed batch was rolled back and run again timer by timer: each effect is there once.
    assert h.calls == [["a", "bad", "c"], ["a"], ["bad"], ["c"]]
    assert await h.effects() == ["a", "c"]
    async with db.transaction() as session:
        retry_at = await h.timers.pending(session, kind="batched", subject="bad")
    assert retry_at is not None and retry_at > T0
    h.poison = set()
    clock.advance(timedelta(seconds=5))
    assert await h.scheduler.fire_due() == 1
    assert await h.effects() == ["a", "bad", "c"]


async def test_cancel_many_forgets_pending_timers_only(db: Database) -> None:
    clock = FrozenClock(T0)
    h = Harness(db, clock)
    for subject in ["a", "b", "c"]:
        await h.schedule(subject, T0 + timedelta(minutes=5))
    async with db.transaction() as session:
        await h.timers.cancel_many(session, kind="reminder", subjects=["a", "c", "unknown"])
        await h.timers.cancel_many(session, kind="reminder", subjects=[])
    clock.advance(timedelta(minutes=5))
    assert await h.scheduler.fire_due() == 1
    assert [t.subject for t in h.fired] == ["b"]


def test_a_kind_has_one_handler_whether_batched_or_not() -> None:
    handlers = TimerHandlers()

    @handlers.on("x")
    async def one(ctx: TimerContext, timer: DueTimer) -> None: ...

    with pytest.raises(ValueError):

        @handlers.on_batch("x")
        async def many(ctx: TimerContext, due: list[DueTimer]) -> None: ...
