"""SLA scheduler benchmark on PostgreSQL: breach lateness with many open clocks, idle cost, naive scan.

    .venv/bin/python -m bench.sla [--open 1000000] [--due 10000] [--idle-seconds 30] [--quick]

Fills a scratch database with `--open` open tickets, each with a running resolution clock and its
pending breach timer (due in 30 days), then runs the tickets service's real `TimerScheduler` with its
real breach handler in this process:

1. idle: nothing due — CPU of this process and the scheduler's queries per minute;
2. due: `--due` timers are moved (through `Timers.schedule`, as the service does) to fall due over the
   next 20 s; lateness = the `breached_at` in each `tickets.sla.breached.v1` event minus its due time;
3. the naive comparison: one full scan of the running clocks, as a periodic escalation job would do.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

import shared.contracts  # noqa: F401  (registers the event catalogue)
from bench.common import (
    CpuMeter,
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

FILL = """
WITH t AS (
  INSERT INTO tickets (id, contact_ids, customer_tier, kind, priority, channel, subject, description, tags,
                       status, public_replies, reopen_count, escalation_level, sla_breached, sla_at_risk,
                       created_at, updated_at, version, next_due_at)
  SELECT gen_random_uuid(), '[]', 'standard', 'complaint', 'normal', 'email', 'bench', '', '[]',
         'open', 0, 0, 0, false, false, now(), now(), 1, now() + interval '30 days'
  FROM generate_series(1, :n)
  RETURNING id
), c AS (
  INSERT INTO sla_clocks (id, ticket_id, metric, cycle, target_seconds, state, elapsed_seconds, running_since,
                          paused_seconds, due_at, warned, breached, started_at, segments)
  SELECT gen_random_uuid(), t.id, 'resolution', 1, 2592000, 'running', 0, now(), 0,
         now() + interval '30 days', true, false, now(), '[]'
  FROM t
  RETURNING id, ticket_id, due_at
)
INSERT INTO timers (id, kind, subject, due_at, payload, created_at, attempts)
SELECT gen_random_uuid(), 'sla.breach', c.id::text, c.due_at,
       json_build_object('ticket_id', c.ticket_id::text, 'metric', 'resolution', 'cycle', 1), now(), 0
FROM c
"""


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def fill(db: Database, total: int, chunk: int = 100_000) -> None:
    done = 0
    while done < total:
        n = min(chunk, total - done)
        async with db.transaction() as session:
            await session.execute(sa.text(FILL), {"n": n})
        done += n
        progress(f"  {done:,} open tickets with running clocks and timers")
    async with db.engine.connect() as connection:
        await connection.execution_options(isolation_level="AUTOCOMMIT")
        for table in ("tickets", "sla_clocks", "timers"):
            await connection.execute(sa.text(f"VACUUM ANALYZE {table}"))


async def run(args: argparse.Namespace) -> dict[str, object]:  # noqa: PLR0915  (one linear scenario)
    async with scratch_database(f"kefu_bench_sla_{unique_suffix()}") as url:
        db = Database(url, pool_size=5)
        try:
            await upgrade(db, MIGRATIONS, service="tickets")
            progress(f"filling {args.open:,} open tickets")
            started = time.monotonic()
            await fill(db, args.open)
            fill_seconds = time.monotonic() - started

            clock = SystemClock()
            timers = Timers(timers_table, clock=clock)
            outbox = Outbox(source="/kefu/tickets", registry=registry, clock=clock)
            scheduler = TimerScheduler(
                service="tickets", db=db, timers=timers, handlers=timer_handlers, outbox=outbox, clock=clock
            )
            scheduler.start()
            await asyncio.sleep(1.0)  # first pass: nothing due

            progress(f"idle for {args.idle_seconds:.0f}s with nothing due")
            probes_before = scheduler.probes
            meter = CpuMeter().start()
            cpu_before = time.process_time()
            await asyncio.sleep(args.idle_seconds)
            idle_cpu_pct = 100 * (time.process_time() - cpu_before) / args.idle_seconds
            meter.stop()
            idle_queries_per_min = (scheduler.probes - probes_before) * 60 / args.idle_seconds
            memory_mb = rss_mb()

            progress(f"moving {args.due:,} timers to fall due over the next {args.spread:.0f}s")
            async with db.transaction() as session:
                rows = (
                    await session.execute(
                        sa.select(timers_table.c.subject, timers_table.c.payload)
                        .order_by(sa.func.random())
                        .limit(args.due)
                    )
                ).all()
            base = datetime.now(UTC) + timedelta(seconds=2)
            for start in range(0, len(rows), 500):
                async with db.transaction() as session:
                    for subject, payload in rows[start : start + 500]:
                        due = base + timedelta(seconds=random.uniform(0, args.spread))
                        await session.execute(
                            sa.text("UPDATE sla_clocks SET due_at = :due WHERE id = CAST(:id AS uuid)"),
                            {"due": due, "id": subject},
                        )
                        await timers.schedule(
                            session, kind="sla.breach", subject=subject, due_at=due, payload=payload
                        )

            async def breached() -> int:
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

            deadline = time.monotonic() + args.spread + 60
            while time.monotonic() < deadline and (count := await breached()) < len(rows):
                progress(f"  {count:,} of {len(rows):,} breaches")
                await asyncio.sleep(2)
            await scheduler.stop()

            async with db.transaction() as session:
                payloads = (
                    await session.execute(
                        sa.select(outbox_table.c.payload).where(
                            outbox_table.c.type == "tickets.sla.breached.v1"
                        )
                    )
                ).scalars()
                lateness_ms = []
                for payload in payloads:
                    data = json.loads(payload)["data"]
                    due_at = datetime.fromisoformat(data["due_at"])
                    lateness_ms.append(
                        (datetime.fromisoformat(data["breached_at"]) - due_at).total_seconds() * 1000
                    )

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
    return rounded(
        {
            "bench": "sla",
            "open_timers": args.open,
            "due_timers": len(lateness_ms),
            "lateness_p50_ms": spread["p50"],
            "lateness_p99_ms": spread["p99"],
            "lateness_max_ms": spread["max"],
            "idle_cpu_pct": idle_cpu_pct,
            "idle_queries_per_min": idle_queries_per_min,
            "memory_mb": memory_mb,
            "naive_scan_ms": naive_scan_ms,
            "naive_scan_rows": scanned,
            "fill_seconds": fill_seconds,
            "quick": args.quick,
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--open", type=int, default=1_000_000)
    parser.add_argument("--due", type=int, default=10_000)
    parser.add_argument("--spread", type=float, default=20.0, help="seconds over which the due timers fall")
    parser.add_argument("--idle-seconds", type=float, default=30.0)
    parser.add_argument("--quick", action="store_true", help="50,000 open, 1,000 due, 10 s idle")
    args = parser.parse_args()
    if args.quick:
        args.open, args.due, args.idle_seconds, args.spread = 50_000, 1_000, 10.0, 10.0
    os.environ.setdefault("KEFU_LOG_LEVEL", "WARNING")
    result = asyncio.run(run(args))
    save_result("sla" if not args.quick else "sla-quick", result)


if __name__ == "__main__":
    main()
