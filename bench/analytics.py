"""Analytics benchmark: ingest rate into the projections, and `/v1/metrics/tickets` latency at scale.

1. Ingest: mixed ticket events (created, responded, resolved, SLA outcomes) published onto a private
   exchange of the local RabbitMQ while analytics is stopped, so they wait in its queue; then analytics
   starts and the rate is measured from its consumer's start until every event is committed to the log
   and the projections on PostgreSQL (the queue drained into committed projections).
2. Query: N ticket facts and their 2·N SLA clocks bulk-loaded with COPY, then `/v1/metrics/tickets`
   grouped by week with two filters (p95 over repeated calls; the report includes SLA achievement),
   compared in the same run with a plain SQL GROUP BY over the raw facts.

`python -m bench.analytics [--quick]`; the last line printed is the JSON result.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import random
import time
import uuid
from datetime import UTC, datetime, timedelta

import aio_pika
import asyncpg
import httpx

from bench.common import (
    AMQP_URL,
    CpuMeter,
    delete_amqp_objects,
    install_loop,
    percentiles,
    progress,
    rounded,
    save_result,
    scratch_database,
    unique_suffix,
)

START = datetime(2025, 1, 6, tzinfo=UTC)


def _events(tickets: int) -> list[tuple[str, bytes]]:
    from tests.unit.analytics.events import envelope, lifecycle, sla_outcome

    rng = random.Random(1)
    out = []
    for i in range(tickets):
        ticket = uuid.uuid4()
        created = START + timedelta(minutes=i)
        replied = created + timedelta(minutes=rng.randint(5, 3000))
        kind = rng.choice(["complaint", "inquiry", "repair"])
        events = lifecycle(
            ticket, created, responded_at=replied, resolved_at=replied + timedelta(hours=2), kind=kind
        )
        outcome = "tickets.sla.met.v1" if rng.random() < 0.8 else "tickets.sla.breached.v1"
        events.append(sla_outcome(outcome, ticket, created, replied, kind=kind))
        out.extend((t, envelope(t, d)) for t, d in events)
    return out


async def _queue(events: list[tuple[str, bytes]], exchange_name: str, prefix: str, sink: str) -> None:
    """Publish every event (confirmed) while analytics is stopped: they wait in its queue."""
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.declare_exchange(exchange_name, aio_pika.ExchangeType.TOPIC, durable=True)
        # Surveys requested by analytics need a route, or its relay would retry them as unroutable.
        sink_queue = await channel.declare_queue(sink, durable=False, auto_delete=False)
        await sink_queue.bind(exchange, routing_key="analytics.#")
        published = time.perf_counter()
        for i in range(0, len(events), 1000):
            await asyncio.gather(
                *(
                    exchange.publish(
                        aio_pika.Message(body, content_type="application/cloudevents+json"),
                        routing_key=key,
                    )
                    for key, body in events[i : i + 1000]
                )
            )
        queue = await channel.declare_queue(f"{prefix}.analytics", passive=True)
        waiting = queue.declaration_result.message_count
        progress(f"ingest: queued in {time.perf_counter() - published:.1f} s; {waiting} waiting")


async def _ingest(url: str, count_tickets: int) -> dict[str, float]:
    from services.analytics.app import DEFINITION
    from shared.app import create_service_app
    from shared.settings import ServiceSettings

    tag = unique_suffix()
    exchange_name, prefix = f"bench-{tag}.events", f"bench-{tag}"
    sink = f"{prefix}.sink"
    settings = ServiceSettings.for_service(
        "analytics", database_url=url, amqp_url=AMQP_URL, exchange=exchange_name, queue_prefix=prefix
    )
    events = _events(count_tickets)
    progress(f"ingest: {len(events)} events for {count_tickets} tickets")
    dsn = url.replace("postgresql+asyncpg://", "postgresql://")
    try:
        # A first start declares the queue and its bindings; the events then wait in it, so the
        # measurement is the consumer draining the queue into committed projections.
        app = create_service_app(DEFINITION, settings)
        async with app.router.lifespan_context(app):
            pass
        await _queue(events, exchange_name, prefix, sink)
        app = create_service_app(DEFINITION, settings)
        db = await asyncpg.connect(dsn)
        try:
            started = time.perf_counter()
            async with app.router.lifespan_context(app):
                # As a served process does once started (services/cli.py): what start-up built is frozen.
                gc.collect()
                gc.freeze()
                # The service is up (migrations checked, broker connected, consumer attached): from here
                # on the clock measures the consumer draining the queue into committed projections.
                consuming = time.perf_counter()
                cpu_before = time.process_time()
                meter = CpuMeter().start()
                before, done = await _wait_committed(db, len(events))
                finished = time.perf_counter()
                # The service runs in this process: its CPU time (the 10 Hz progress poll included) per
                # event says what the consumer costs, whatever else the machine was doing.
                cpu_seconds = time.process_time() - cpu_before
                cores = meter.stop()
                facts = await db.fetchval("SELECT count(*) FROM ticket_facts")
                progress(f"ingest: {facts} ticket facts; service start took {consuming - started:.2f} s")
        finally:
            await db.close()
    finally:
        await delete_amqp_objects(
            AMQP_URL,
            queues=[
                f"{prefix}.analytics",
                f"{prefix}.analytics.dead",
                sink,
                *(f"{prefix}.analytics.retry.{n}" for n in range(5)),
            ],
            exchanges=[exchange_name],
        )
    if done < len(events):
        raise RuntimeError(f"only {done} of {len(events)} events committed in time")
    rate = (len(events) - before) / (finished - consuming)
    with_start = len(events) / (finished - started)
    drained = max(len(events) - before, 1)
    per_event = {
        "ingest_cpu_ms_per_event": cpu_seconds * 1000 / drained,
        **{
            f"ingest_{group}_cpu_ms_per_event": cores[group] * (finished - consuming) * 1000 / drained
            for group in ("postgres", "rabbitmq")
        },
    }
    progress(f"ingest: {rate:.0f} events/s from the queue ({with_start:.0f} including the service's start)")
    progress(
        "ingest: CPU ms per event: {ingest_cpu_ms_per_event:.3f} in the service, "
        "{ingest_postgres_cpu_ms_per_event:.3f} in PostgreSQL, "
        "{ingest_rabbitmq_cpu_ms_per_event:.3f} in RabbitMQ".format(**per_event)
    )
    return {"ingest_events_per_s": rate, "ingest_events_per_s_with_start": with_start, **per_event}


async def _wait_committed(db: asyncpg.Connection, total: int) -> tuple[int, int]:
    """Poll the event log until `total` events are committed: (committed at the start, at the end)."""
    before = done = await db.fetchval("SELECT count(*) FROM event_log")  # during the start
    deadline = time.monotonic() + 300
    last_report = time.monotonic()
    while done < total and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        done = await db.fetchval("SELECT count(*) FROM event_log")
        if time.monotonic() - last_report > 2:
            last_report = time.monotonic()
            progress(f"ingest: {done} of {total} committed")
    return before, done


_CLOCK_COLUMNS = [
    "ticket_id",
    "metric",
    "cycle",
    "outcome",
    "occurred_at",
    "event_id",
    "policy_name",
    "kind",
    "priority",
    "channel",
    "assignee",
    "group",
]


async def _load_facts(dsn: str, n: int) -> None:
    rng = random.Random(2)
    kinds, channels, priorities = (
        ["complaint", "inquiry", "repair"],
        ["phone", "email", "chat", "web"],
        ["low", "normal", "high", "urgent"],
    )
    span = 365 * 86400
    connection = await asyncpg.connect(dsn)
    try:
        batch, clocks = [], []
        for i in range(n):
            ticket = uuid.uuid4()
            created = START + timedelta(seconds=rng.randrange(span))
            frt = rng.uniform(60, 86400 * 2)
            resolved = created + timedelta(seconds=frt + rng.uniform(600, 86400 * 3))
            res = (resolved - created).total_seconds()
            kind, priority, channel = rng.choice(kinds), rng.choice(priorities), rng.choice(channels)
            agent, group = f"agent{rng.randrange(50)}", f"group{rng.randrange(5)}"
            # Its two SLA clocks, as the projector folds them from met and breach events.
            responded = created + timedelta(seconds=frt)
            for metric, at in (("first_response", responded), ("resolution", resolved)):
                outcome = "met" if rng.random() < 0.8 else "breach"
                event = f"{ticket}:{metric}"
                clocks.append(
                    (ticket, metric, 1, outcome, at, event, "standard", kind, priority, channel, agent, group)
                )
            batch.append(
                (
                    ticket,
                    3,
                    kind,
                    priority,
                    channel,
                    "resolved",
                    None,
                    "standard",
                    agent,
                    group,
                    created,
                    created + timedelta(seconds=frt),
                    resolved,
                    0,
                    0,
                    1,
                    frt,
                    frt * 0.3,
                    res,
                    res * 0.3,
                )
            )
            if len(batch) == 50_000 or i == n - 1:
                await connection.copy_records_to_table(
                    "ticket_facts",
                    records=batch,
                    columns=[
                        "ticket_id",
                        "version",
                        "kind",
                        "priority",
                        "channel",
                        "status",
                        "category",
                        "customer_tier",
                        "assignee",
                        "group",
                        "created_at",
                        "first_response_at",
                        "resolved_at",
                        "reopen_count",
                        "reopens_seen",
                        "public_replies",
                        "first_response_seconds",
                        "first_response_business_seconds",
                        "resolution_seconds",
                        "resolution_business_seconds",
                    ],
                )
                await connection.copy_records_to_table("sla_clocks", records=clocks, columns=_CLOCK_COLUMNS)
                batch.clear()
                clocks.clear()
                progress(f"query: loaded {i + 1} facts and their SLA clocks")
        # As after any bulk load: statistics for the planner, and a visibility map for index-only scans.
        await connection.execute("VACUUM ANALYZE ticket_facts")
        await connection.execute("VACUUM ANALYZE sla_clocks")
    finally:
        await connection.close()


async def _query(url: str, n: int, repeats: int) -> tuple[dict[str, float], float, float]:
    from services.analytics import rollups
    from services.analytics.app import DEFINITION
    from shared.app import create_service_app
    from shared.auth import issue_token
    from shared.settings import ServiceSettings

    dsn = url.replace("postgresql+asyncpg://", "postgresql://")
    settings = ServiceSettings.for_service("analytics", database_url=url, amqp_url=None)
    app = create_service_app(DEFINITION, settings)
    token = issue_token(secret=settings.jwt_secret, subject="bench", roles=["analyst"])
    analyst = {"Authorization": f"Bearer {token}"}
    async with app.router.lifespan_context(app):
        gc.collect()
        gc.freeze()  # as a served process does once started (services/cli.py)
        await _load_facts(dsn, n)
        # The facts were copied in behind the projector's back: their rollups are built from them, as
        # `python -m services.analytics rollups` does.
        started = time.perf_counter()
        async with app.state.runtime.db.transaction() as session:
            await rollups.backfill(session, rollups.rollup_zones(), now=datetime.now(UTC))
        built = time.perf_counter() - started
        progress(f"query: rollups built from the facts in {built:.1f} s")
        params = {
            "since": "2025-01-06T00:00:00Z",
            "until": "2026-01-05T00:00:00Z",
            "group_by": "week",
            "kind": "complaint",
            "channel": "phone",
        }
        timings = []
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://a", timeout=60
        ) as http:
            for _ in range(repeats):
                started = time.perf_counter()
                response = await http.get("/v1/metrics/tickets", params=params, headers=analyst)
                timings.append((time.perf_counter() - started) * 1000)
                assert response.status_code == 200, response.text
    connection = await asyncpg.connect(dsn)
    try:
        plain = []
        for _ in range(repeats):
            started = time.perf_counter()
            await connection.fetch(
                """SELECT date_trunc('week', created_at AT TIME ZONE 'Asia/Shanghai') AS week, count(*),
                       percentile_cont(ARRAY[0.5, 0.9, 0.99]) WITHIN GROUP (ORDER BY first_response_seconds)
                   FROM ticket_facts WHERE kind = 'complaint' AND channel = 'phone'
                     AND created_at >= '2025-01-06' AND created_at < '2026-01-05' GROUP BY 1 ORDER BY 1"""
            )
            plain.append((time.perf_counter() - started) * 1000)
    finally:
        await connection.close()
    figures = percentiles(timings, (50, 95))
    # The first call also prepares every statement and warms the process; what it costs is in `max`.
    figures["p95_after_first"] = percentiles(timings[1:], (95,))["p95"]
    plain_ms = percentiles(plain, (95,))["p95"]
    progress(
        f"query: p50 {figures['p50']:.0f} ms, p95 {figures['p95']:.0f} ms; plain SQL p95 {plain_ms:.0f} ms"
    )
    return figures, plain_ms, built


async def main(quick: bool, loop: str) -> None:
    tickets_ingest = 750 if quick else 12_000
    facts = 50_000 if quick else 1_000_000
    repeats = 5 if quick else 20
    # The machine is shared: its load before and after says how far the figures can be trusted.
    load_before = list(os.getloadavg())
    async with scratch_database(f"kefu_bench_analytics_{unique_suffix()}") as url:
        ingest = await _ingest(url, tickets_ingest)
    async with scratch_database(f"kefu_bench_analytics_q_{unique_suffix()}") as url:
        query, plain, built = await _query(url, facts, repeats)
    save_result(
        "analytics-quick" if quick else "analytics",  # a quick run does not replace the full figures
        rounded(
            {
                "bench": "analytics",
                "quick": quick,
                "loop": loop,
                "ingest_events": tickets_ingest * 4,
                **ingest,
                "facts": facts,
                "query_p50_ms": query["p50"],
                "query_p95_ms": query["p95"],
                "query_p95_after_first_ms": query["p95_after_first"],
                "query_max_ms": query["max"],
                "plain_sql_ms": plain,
                "rollups_build_s": built,
                "load_average_before": load_before,
                "load_average": list(os.getloadavg()),
            }
        ),
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for CI")
    # The services are served by uvicorn, which runs them on uvloop when it is installed (it is).
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    args = parser.parse_args()
    loop_name = install_loop(args.loop)
    asyncio.run(main(args.quick, loop_name))
