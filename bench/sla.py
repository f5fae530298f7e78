"""SLA scheduler benchmark on PostgreSQL: breach lateness with many open clocks, idle cost, naive scan.

    .venv/bin/python -m bench.sla [--open 1000000] [--due 10000] [--spread 20] [--idle-seconds 30] [--quick]

Fills a scratch database with `--open` open tickets, each with a running resolution clock and its
pending breach timer (due in 30 days), then runs the tickets service's real `TimerScheduler` with its
real breach handler in this process:

1. idle: nothing due — CPU of this process, the statements it sends per minute, its memory;
2. due: `--due` timers are moved (one bulk update, then the in-process wake a commit through
   `Timers.schedule` gives) to fall due over the next `--spread` seconds; lateness = the `breached_at` in
   each `tickets.sla.breached.v1` event minus its due time;
   it is stamped when the handler runs; `committed_lateness_*` is measured when its transaction commits;
3. the naive comparison: one full scan of the running clocks, as a periodic escalation job would do.

The fill writes the rows with `INSERT … SELECT generate_series` (ids are md5 of the row number, so the
due phase can name rows without reading them back), with the tables' indexes and unique constraints
dropped during the load and built once afterwards: the schema the scheduler runs on is the migrated one.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import resource
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel
from sqlalchemy import event as sa_event
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

import shared.contracts  # noqa: F401  (registers the event catalogue)
from bench.common import (
    percentiles,
    progress,
    rounded,
    save_result,
    scratch_database,
    unique_suffix,
)
from services.tickets.models import timers as timers_table
from services.tickets.scheduled import timer_handlers
from shared.clock import SystemClock
from shared.db import Database
from shared.events import registry
from shared.migrations import upgrade
from shared.outbox import Outbox, outbox_table
from shared.timers import Timers, TimerScheduler

MIGRATIONS = Path(__file__).resolve().parents[1] / "services" / "tickets" / "migrations"
TABLES = ("tickets", "sla_clocks", "timers")

# Row g of each table: ticket md5('t'||g), its clock md5('c'||g), the clock's breach timer.
DUE = "now() + interval '30 days' + (g % 86400) * interval '1 second'"
FILL = {
    "tickets": f"""
INSERT INTO tickets (id, contact_ids, customer_tier, kind, priority, channel, subject, description, tags,
                     status, public_replies, reopen_count, escalation_level, sla_breached, sla_at_risk,
                     created_at, updated_at, version, next_due_at)
SELECT md5('t' || g)::uuid, '[]', 'standard', 'complaint', 'normal', 'email', 'bench', '', '[]',
       'open', 0, 0, 0, false, false, now(), now(), 1, {DUE}
FROM generate_series(CAST(:first AS int), CAST(:last AS int)) AS g
""",
    "sla_clocks": f"""
INSERT INTO sla_clocks (id, ticket_id, metric, cycle, target_seconds, state, elapsed_seconds, running_since,
                        paused_seconds, due_at, warned, breached, started_at, segments)
SELECT md5('c' || g)::uuid, md5('t' || g)::uuid, 'resolution', 1, 2592000, 'running', 0, now(), 0,
       {DUE}, true, false, now(), '[]'
FROM generate_series(CAST(:first AS int), CAST(:last AS int)) AS g
""",
    "timers": f"""
INSERT INTO timers (id, kind, subject, due_at, payload, created_at, attempts)
SELECT md5('x' || g)::uuid, 'sla.breach', md5('c' || g)::uuid::text, {DUE},
       json_build_object('ticket_id', md5('t' || g)::uuid::text, 'metric', 'resolution', 'cycle', 1),
       now(), 0
FROM generate_series(CAST(:first AS int), CAST(:last AS int)) AS g
""",
}

MOVE_CLOCKS = sa.text(
    "UPDATE sla_clocks AS c SET due_at = v.due FROM unnest(:ids, :dues) AS v(id, due) WHERE c.id = v.id"
).bindparams(
    sa.bindparam("ids", type_=ARRAY(sa.Uuid())),
    sa.bindparam("dues", type_=ARRAY(sa.DateTime(timezone=True))),
)
MOVE_TIMERS = sa.text(
    "UPDATE timers AS t SET due_at = v.due FROM unnest(:subjects, :dues) AS v(subject, due) "
    "WHERE t.kind = 'sla.breach' AND t.subject = v.subject"
).bindparams(
    sa.bindparam("subjects", type_=ARRAY(sa.Text())),
    sa.bindparam("dues", type_=ARRAY(sa.DateTime(timezone=True))),
)


class VisibleOutbox(Outbox):
    """The service's outbox, also noting when each breach event's transaction commits: when others see it."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.visible_ms: list[float] = []

    async def add_many(
        self, session: AsyncSession, events: Sequence[tuple[str, BaseModel, str | None]]
    ) -> Any:
        made = await super().add_many(session, events)
        due = [data.due_at for type, data, _ in events if type == "tickets.sla.breached.v1"]  # type: ignore[attr-defined]
        session.sync_session.info.setdefault(_VISIBLE_KEY, []).append((self.visible_ms, due))
        return made


_VISIBLE_KEY = "bench.sla.visible"


@sa_event.listens_for(Session, "after_commit")
def _note_visible(session: Session) -> None:
    now = datetime.now(UTC)
    for visible_ms, due in session.info.pop(_VISIBLE_KEY, ()):
        visible_ms.extend((now - due_at).total_seconds() * 1000 for due_at in due)


@sa_event.listens_for(Session, "after_rollback")
def _forget_visible(session: Session) -> None:
    session.info.pop(_VISIBLE_KEY, None)


def clock_id(g: int) -> uuid.UUID:
    """The id the fill gave clock g: PostgreSQL's md5('c' || g)::uuid."""
    return uuid.UUID(hashlib.md5(f"c{g}".encode()).hexdigest())


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class StatementCounter:
    """Statements this process sends to the database; an executemany counts once and by its rows."""

    def __init__(self, db: Database) -> None:
        self.statements = 0
        self.executions = 0
        sa_event.listen(db.engine.sync_engine, "before_cursor_execute", self._count)

    def _count(self, conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool) -> None:
        self.statements += 1
        self.executions += len(params) if many else 1


async def _schema_objects(db: Database) -> tuple[list[tuple[str, str, str]], list[tuple[str, str]]]:
    """The tables' primary keys and unique constraints, and their other indexes, with their definitions."""
    async with db.transaction() as session:
        constraints = (
            await session.execute(
                sa.text(
                    "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint "
                    "WHERE conrelid::regclass::text = ANY(:tables) AND contype IN ('p', 'u')"
                ),
                {"tables": list(TABLES)},
            )
        ).all()
        indexes = (
            await session.execute(
                sa.text(
                    "SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid) FROM pg_index AS i "
                    "WHERE i.indrelid::regclass::text = ANY(:tables) "
                    "AND NOT EXISTS (SELECT 1 FROM pg_constraint AS c WHERE c.conindid = i.indexrelid)"
                ),
                {"tables": list(TABLES)},
            )
        ).all()
    return [tuple(row) for row in constraints], [tuple(row) for row in indexes]


async def _run_all(db: Database, statements: list[str], *, parallel: int) -> None:
    """Run DDL statements on `parallel` connections at once (each statement in its own transaction)."""
    queue = list(statements)

    async def worker() -> None:
        async with db.engine.connect() as connection:
            await connection.execution_options(isolation_level="AUTOCOMMIT")
            await connection.execute(sa.text("SET maintenance_work_mem = '256MB'"))
            while queue:
                await connection.execute(sa.text(queue.pop(0)))

    await asyncio.gather(*(worker() for _ in range(parallel)))


async def fill(db: Database, total: int, chunk: int = 250_000) -> None:
    constraints, indexes = await _schema_objects(db)
    await _run_all(
        db,
        [f'DROP INDEX "{name}"' for name, _ in indexes]
        + [f'ALTER TABLE {table} DROP CONSTRAINT "{name}"' for table, name, _ in constraints],
        parallel=1,
    )

    async def load(table: str) -> None:
        for first in range(1, total + 1, chunk):
            last = min(first + chunk - 1, total)
            async with db.transaction() as session:
                await session.execute(sa.text(FILL[table]), {"first": first, "last": last})
            progress(f"  {table}: {last:,} rows")

    await asyncio.gather(*(load(table) for table in TABLES))
    progress("  building indexes and constraints")
    await _run_all(
        db,
        [
            f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}'
            for table, name, definition in constraints
        ]
        + [definition for _, definition in indexes],
        parallel=2,
    )
    await _run_all(db, [f"VACUUM ANALYZE {table}" for table in TABLES], parallel=2)


async def move_due(db: Database, timers: Timers, *, total: int, due: int, spread: float) -> datetime:
    """Move `due` random breach timers (and their clocks) to fall due over `spread` seconds from now."""
    rows = random.sample(range(1, total + 1), due)
    ids = [clock_id(g) for g in rows]
    started = time.monotonic()
    # Leave time for the update itself, so no timer is already due when it becomes visible.
    base = datetime.now(UTC) + timedelta(seconds=2 + due / 20_000)
    dues = [base + timedelta(seconds=random.uniform(0, spread)) for _ in rows]
    async with db.transaction() as session:
        await session.execute(MOVE_CLOCKS, {"ids": ids, "dues": dues})
        await session.execute(MOVE_TIMERS, {"subjects": [str(i) for i in ids], "dues": dues})
    if datetime.now(UTC) >= base:
        progress(f"  warning: moving took {time.monotonic() - started:.1f}s, past the first due time")
    timers.notify(min(dues))
    return base


async def run(args: argparse.Namespace) -> dict[str, object]:  # noqa: PLR0915  (one linear scenario)
    async with scratch_database(f"kefu_bench_sla_{unique_suffix()}") as url:
        db = Database(url, pool_size=2 + args.claimers)
        try:
            await upgrade(db, MIGRATIONS, service="tickets")
            progress(f"filling {args.open:,} open tickets")
            started = time.monotonic()
            await fill(db, args.open)
            fill_seconds = time.monotonic() - started
            progress(f"  filled in {fill_seconds:.1f}s")

            clock = SystemClock()
            timers = Timers(timers_table, clock=clock)
            outbox = VisibleOutbox(source="/kefu/tickets", registry=registry, clock=clock)
            scheduler = TimerScheduler(
                service="tickets",
                db=db,
                timers=timers,
                handlers=timer_handlers,
                outbox=outbox,
                clock=clock,
                batch_size=args.batch_size,
                claimers=args.claimers,
            )
            counter = StatementCounter(db)
            scheduler.start()
            await asyncio.sleep(1.0)  # first pass: nothing due

            progress(f"idle for {args.idle_seconds:.0f}s with nothing due")
            statements_before = counter.statements
            cpu_before = time.process_time()
            await asyncio.sleep(args.idle_seconds)
            idle_cpu_pct = 100 * (time.process_time() - cpu_before) / args.idle_seconds
            idle_queries_per_min = (counter.statements - statements_before) * 60 / args.idle_seconds
            memory_mb = rss_mb()

            progress(f"moving {args.due:,} timers to fall due over the next {args.spread:.0f}s")
            base = await move_due(db, timers, total=args.open, due=args.due, spread=args.spread)
            await asyncio.sleep(max(0.0, (base - datetime.now(UTC)).total_seconds()))
            statements_before, executions_before = counter.statements, counter.executions
            cpu_before = time.process_time()

            polling = {"statements": 0, "executions": 0}

            async def breached() -> int:
                # The progress polls are this benchmark's, not the scheduler's: leave them out of its count.
                before = counter.statements, counter.executions
                try:
                    return await count_breaches()
                finally:
                    polling["statements"] += counter.statements - before[0]
                    polling["executions"] += counter.executions - before[1]

            async def count_breaches() -> int:
                async with db.transaction() as session:
                    return int(
                        (
                            await session.execute(
                                sa.select(sa.func.count())
                                .select_from(outbox_table)
                                .where(outbox_table.c.type == "tickets.sla.breached.v1")
                            )
                        ).scalar_one()
                    )

            due_started = time.monotonic()
            deadline = due_started + args.spread + 60
            while time.monotonic() < deadline and (count := await breached()) < args.due:
                progress(f"  {count:,} of {args.due:,} breaches")
                await asyncio.sleep(2)
            due_seconds = time.monotonic() - due_started
            due_cpu_pct = 100 * (time.process_time() - cpu_before) / due_seconds
            await scheduler.stop()
            statements = counter.statements - statements_before - polling["statements"]
            executions = counter.executions - executions_before - polling["executions"]

            async with db.transaction() as session:
                payloads = (
                    await session.execute(
                        sa.select(outbox_table.c.payload).where(
                            outbox_table.c.type == "tickets.sla.breached.v1"
                        )
                    )
                ).scalars()
                lateness_ms = []
                late_flags = 0
                for payload in payloads:
                    data = json.loads(payload)["data"]
                    due_at = datetime.fromisoformat(data["due_at"])
                    lateness_ms.append(
                        (datetime.fromisoformat(data["breached_at"]) - due_at).total_seconds() * 1000
                    )
                    late_flags += bool(data["late"])

            # Before the naive scan, whose million rows are this benchmark's memory, not the scheduler's.
            memory_peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            progress("one naive full scan of running clocks, as a periodic escalation job does")
            async with db.transaction() as session:
                started = time.monotonic()
                scanned = len(
                    (
                        await session.execute(
                            sa.text(
                                "SELECT id, due_at FROM sla_clocks WHERE state = 'running' AND NOT breached"
                            )
                        )
                    ).all()
                )
                naive_scan_ms = (time.monotonic() - started) * 1000
        finally:
            await db.dispose()
    spread = percentiles(lateness_ms)
    visible = percentiles(outbox.visible_ms)
    fired = max(len(lateness_ms), 1)
    return rounded(
        {
            "bench": "sla",
            "open_timers": args.open,
            "lateness_p50_ms": spread["p50"],
            "lateness_p99_ms": spread["p99"],
            "idle_cpu_pct": idle_cpu_pct,
            "naive_scan_ms": naive_scan_ms,
            "due_timers": len(lateness_ms),
            "due_spread_s": args.spread,
            "lateness_max_ms": spread["max"],
            "committed_lateness_p50_ms": visible["p50"],
            "committed_lateness_p99_ms": visible["p99"],
            "late_flagged": late_flags,
            "idle_queries_per_min": idle_queries_per_min,
            "memory_mb": memory_mb,
            "memory_peak_mb": memory_peak_mb,
            "due_cpu_pct": due_cpu_pct,
            "statements_per_breach": statements / fired,
            "executions_per_breach": executions / fired,
            "naive_scan_rows": scanned,
            "fill_seconds": fill_seconds,
            "batch_size": args.batch_size,
            "claimers": args.claimers,
            "loadavg_1m": os.getloadavg()[0],
            "quick": args.quick,
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--open", type=int, default=1_000_000)
    parser.add_argument("--due", type=int, default=10_000)
    parser.add_argument("--spread", type=float, default=20.0, help="seconds over which the due timers fall")
    parser.add_argument("--idle-seconds", type=float, default=30.0)
    parser.add_argument("--batch-size", type=int, default=200, help="timers one scheduler pass claims")
    parser.add_argument("--claimers", type=int, default=2, help="concurrent passes while timers queue up")
    parser.add_argument("--quick", action="store_true", help="50,000 open, 1,000 due over 10 s, 10 s idle")
    args = parser.parse_args()
    if args.quick:
        args.open, args.due, args.idle_seconds, args.spread = 50_000, 1_000, 10.0, 10.0
    os.environ.setdefault("KEFU_LOG_LEVEL", "WARNING")
    result = asyncio.run(run(args))
    save_result("sla" if not args.quick else "sla-quick", result)


if __name__ == "__main__":
    main()
