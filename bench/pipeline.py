"""Event pipeline benchmark: outbox → RabbitMQ → consumer inbox commit on PostgreSQL, against raw aio-pika.

Run: `.venv/bin/python bench/pipeline.py` (`--quick` for a smaller run, `--help` for the knobs).

Phases, all on one broker, one scratch database and one process (like-for-like with the raw baseline):
1. raw       aio-pika, one connection: publish N persistent messages with confirms (windows of
             `--raw-window` gathered publishes) to a topic exchange bound to one quorum queue, while a
             consumer on another channel (prefetch `--prefetch`) acks each; N / (first publish → last ack).
2. write     N events written into the outbox, `--tx-events` per transaction, relay stopped.
3. drain     relay and consumer together drain those N rows: N / (relay start → N-th inbox commit).
4. concurrent  producer, relay and consumer all running at once (as in production): N / (first outbox
             write → N-th inbox commit). This is `events_per_s`, the figure compared with `raw_events_per_s`.
5. steady    one event per transaction committed at `--steady-rate`/s for `--steady-seconds`, by absolute
             schedule from several producer tasks; latency = consumer's commit − producer's commit.
6. diagnostics  (not part of the figures) cost of one `Database.transaction()` with and without
             `pool_pre_ping`, and where the steady-state latency goes.

The handled time is taken in a thin wrapper around `EventConsumer.__call__`, right after it returns
`HANDLED`, i.e. after the inbox claim and the handler's insert have committed (the broker ack follows).
The last line printed is the JSON result, also saved to bench/results/pipeline.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import logging
import pstats
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aio_pika
import sqlalchemy as sa
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import create_async_engine

from bench.common import (
    AMQP_URL,
    PG_ADMIN_DSN,
    RESULTS_DIR,
    CpuMeter,
    Sections,
    broker_version,
    cancel_on_sigterm,
    delete_amqp_objects,
    install_loop,
    percentiles,
    progress,
    rounded,
    save_result,
    scratch_database,
    server_settings,
    unique_suffix,
)
from shared.bus.amqp import AmqpTransport
from shared.bus.base import Delivery, Outcome, OutcomeKind, OutgoingMessage
from shared.clock import SystemClock
from shared.consumer import EventConsumer, EventHandlers, HandlerContext
from shared.db import Database, infra_metadata
from shared.events import EventRegistry
from shared.outbox import Outbox, OutboxRelay

EVENT_TYPE = "bench.pipeline.happened.v1"
RAW_ROUTING_KEY = "bench.raw.happened.v1"
CONSUMER_SERVICE = "sink"

bench_registry = EventRegistry()


@bench_registry.register(EVENT_TYPE, "A bench-only event, so the bench depends on no service's schema.")
class BenchHappened(BaseModel):
    n: int
    phase: str
    note: str


bench_metadata = sa.MetaData()
effects_table = sa.Table(
    "bench_effects",
    bench_metadata,
    sa.Column("event_id", sa.String(64), primary_key=True),
    sa.Column("n", sa.Integer(), nullable=False),
)


# ------------------------------------------------------------------------------------- instruments


class Probe:
    """Wraps the `EventConsumer` the transport calls: counts handled events and records when."""

    def __init__(self, consumer: EventConsumer) -> None:
        self.consumer = consumer
        self.outcomes: Counter[str] = Counter()
        self.handled = 0
        self.target = 0
        self.done = asyncio.Event()
        self.record = False
        self.delivered_at: dict[str, float] = {}
        self.handled_at: dict[str, float] = {}
        self.last_handled = 0.0
        self.in_call_s = 0.0
        self.in_flight = 0
        self.max_in_flight = 0

    def expect(self, target: int, *, record: bool = False) -> None:
        self.handled = 0
        self.target = target
        self.done = asyncio.Event()
        self.record = record
        self.delivered_at.clear()
        self.handled_at.clear()
        self.in_call_s = 0.0
        self.max_in_flight = 0

    async def __call__(self, delivery: Delivery) -> Outcome:
        started = time.monotonic()
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            outcome = await self.consumer(delivery)
        finally:
            self.in_flight -= 1
        now = time.monotonic()
        self.in_call_s += now - started
        self.outcomes[outcome.kind.value] += 1
        if outcome.kind is OutcomeKind.HANDLED:
            self.handled += 1
            self.last_handled = now
            if self.record and delivery.message_id:
                self.delivered_at[delivery.message_id] = started
                self.handled_at[delivery.message_id] = now
            if self.handled >= self.target:
                self.done.set()
        elif outcome.kind is not OutcomeKind.DUPLICATE:
            progress(f"unexpected outcome {outcome.kind}: {outcome.reason}")
        return outcome


class TimedTransport:
    """Delegates to the real transport; times the relay's `publish` calls and records per-event times."""

    def __init__(self, inner: AmqpTransport, sections: Sections) -> None:
        self.inner = inner
        self.sections = sections
        self.record = False
        self.published = 0
        self.last_published = 0.0
        self.publish_started: dict[str, float] = {}
        self.batch_sizes: list[int] = []

    def reset(self, *, record: bool = False) -> None:
        self.record = record
        self.published = 0
        self.publish_started.clear()
        self.batch_sizes.clear()

    async def publish(self, messages: Sequence[OutgoingMessage]) -> None:
        started = time.monotonic()
        try:
            await self.inner.publish(messages)
        finally:
            ended = time.monotonic()
            self.sections.add("relay.transport_publish", ended - started)
            self.batch_sizes.append(len(messages))
            self.published += len(messages)
            self.last_published = ended
            if self.record:
                for message in messages:
                    self.publish_started[message.id] = started

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def time_relay_passes(relay: OutboxRelay, sections: Sections) -> None:
    """Instance-level wrapper around `publish_batch` (select + publish + update + commit) to time it."""
    inner = relay.publish_batch

    async def publish_batch() -> int:
        started = time.monotonic()
        published = await inner()
        sections.add("relay.pass" if published else "relay.empty_pass", time.monotonic() - started)
        return published

    relay.publish_batch = publish_batch  # type: ignore[method-assign]


# ------------------------------------------------------------------------------------------ phases


async def raw_baseline(
    url: str, exchange_name: str, queue_name: str, body: bytes, events: int, window: int, prefetch: int,
    timeout: float,
) -> dict[str, Any]:
    """Raw aio-pika publish-with-confirms and consume-with-ack on one connection."""
    connection = await aio_pika.connect(url, timeout=10)
    try:
        publish_channel = await connection.channel(publisher_confirms=True)
        exchange = await publish_channel.declare_exchange(exchange_name, aio_pika.ExchangeType.TOPIC, durable=True)
        consume_channel = await connection.channel()
        await consume_channel.set_qos(prefetch_count=prefetch)
        queue = await consume_channel.declare_queue(queue_name, durable=True, arguments={"x-queue-type": "quorum"})
        await queue.bind(exchange_name, routing_key=RAW_ROUTING_KEY)

        acked = 0
        done = asyncio.Event()
        last_ack = 0.0

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            nonlocal acked, last_ack
            await message.ack()
            acked += 1
            if acked >= events:
                last_ack = time.monotonic()
                done.set()

        tag = await queue.consume(on_message)
        clock = SystemClock()
        cpu = CpuMeter().start()
        started = time.monotonic()
        publish_deadline = started + timeout
        published = 0
        for first in range(0, events, window):
            if time.monotonic() > publish_deadline:
                break
            batch = range(first, min(events, first + window))
            await asyncio.gather(
                *(
                    exchange.publish(
                        aio_pika.Message(
                            body=body,
                            content_type="application/cloudevents+json",
                            message_id=f"raw-{i}",
                            type=RAW_ROUTING_KEY,
                            timestamp=clock.now(),
                            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                        ),
                        routing_key=RAW_ROUTING_KEY,
                        mandatory=True,
                    )
                    for i in batch
                )
            )
            published += len(batch)
        publish_done = time.monotonic()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), max(1.0, publish_deadline - time.monotonic()))
        ended = last_ack if done.is_set() else time.monotonic()
        cores = cpu.stop()
        await queue.cancel(tag)
        elapsed = ended - started
        return {
            "events": events,
            "acked": acked,
            "complete": done.is_set(),
            "seconds": elapsed,
            "events_per_s": acked / elapsed,
            "publish_confirmed_per_s": published / (publish_done - started),
            "cpu_cores": cores,
        }
    finally:
        await connection.close()


async def write_outbox(
    db: Database, outbox: Outbox, *, start: int, count: int, per_tx: int, phase: str, note: str,
    deadline: float,
) -> tuple[int, float]:
    """Write `count` events, `per_tx` per transaction; returns (written, seconds)."""
    started = time.monotonic()
    written = 0
    while written < count and time.monotonic() < deadline:
        size = min(per_tx, count - written)
        async with db.transaction() as session:
            for i in range(start + written, start + written + size):
                await outbox.add(session, EVENT_TYPE, BenchHappened(n=i, phase=phase, note=note), subject=str(i))
        written += size
    return written, time.monotonic() - started


async def wait_for_handled(probe: Probe, timeout: float) -> bool:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(probe.done.wait(), timeout)
    return probe.done.is_set()


async def steady_phase(
    db: Database, outbox: Outbox, probe: Probe, transport: TimedTransport, *, rate: int, seconds: float,
    producers: int, note: str, drain_timeout: float,
) -> dict[str, Any]:
    total = int(rate * seconds)
    committed_at: dict[str, float] = {}
    lateness: list[float] = []
    commit_ms: list[float] = []
    probe.expect(total, record=True)
    transport.reset(record=True)
    next_slot = 0
    hard_stop = 0.0

    async def producer() -> None:
        nonlocal next_slot
        while True:
            slot = next_slot
            next_slot += 1
            if slot >= total:
                return
            due = t0 + slot / rate
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            begun = time.monotonic()
            if begun > hard_stop:
                return
            lateness.append(max(0.0, begun - due) * 1000)
            async with db.transaction() as session:
                event = await outbox.add(
                    session, EVENT_TYPE, BenchHappened(n=slot, phase="steady", note=note), subject=str(slot)
                )
            now = time.monotonic()
            committed_at[event.id] = now
            commit_ms.append((now - begun) * 1000)

    cpu = CpuMeter().start()
    t0 = time.monotonic() + 0.05
    hard_stop = t0 + seconds * 1.5 + 1.0
    await asyncio.gather(*(producer() for _ in range(producers)))
    produced_until = time.monotonic()
    produced = len(committed_at)
    probe.target = produced
    if probe.handled >= produced:
        probe.done.set()
    complete = await wait_for_handled(probe, drain_timeout)
    cores = cpu.stop()

    latencies, pickup, broker, consume = [], [], [], []
    negative = 0
    for event_id, committed in committed_at.items():
        handled = probe.handled_at.get(event_id)
        if handled is None:
            continue
        if handled < committed:
            negative += 1
        latencies.append((handled - committed) * 1000)
        published = transport.publish_started.get(event_id)
        delivered = probe.delivered_at.get(event_id)
        if published is not None and delivered is not None:
            pickup.append((published - committed) * 1000)
            broker.append((delivered - published) * 1000)
            consume.append((handled - delivered) * 1000)
    lat = percentiles(latencies)
    produce_window = max(produced_until - t0, 1e-9)
    return {
        "target_rate": rate,
        "seconds": seconds,
        "producers": producers,
        "events_committed": produced,
        "events_handled": probe.handled,
        "complete": complete,
        "achieved_rate": produced / produce_window,
        "latency_ms": lat,
        "negative_latencies": negative,
        "producer_commit_ms": percentiles(commit_ms),
        "producer_lateness_ms": percentiles(lateness),
        "breakdown_ms": {
            "commit_to_relay_publish": percentiles(pickup),
            "relay_publish_to_delivery": percentiles(broker),
            "delivery_to_inbox_commit": percentiles(consume),
        },
        "relay_batch_size_mean": sum(transport.batch_sizes) / max(len(transport.batch_sizes), 1),
        "relay_batches": len(transport.batch_sizes),
        "consumer_max_in_flight": probe.max_in_flight,
        "cpu_cores": cores,
    }


async def transaction_cost(url: str, db: Database, rounds: int) -> dict[str, Any]:
    """Mean ms for one tiny insert transaction: through `Database` (pool_pre_ping) and a plain engine."""
    results: dict[str, Any] = {"rounds": rounds}
    plain = create_async_engine(url, pool_size=2, max_overflow=0, pool_pre_ping=False)
    try:
        from sqlalchemy.ext.asyncio import async_sessionmaker

        plain_sessions = async_sessionmaker(plain, expire_on_commit=False)
        for label, factory in (("database_transaction_ms", None), ("no_pre_ping_ms", plain_sessions)):
            timings = []
            for i in range(rounds):
                started = time.monotonic()
                if factory is None:
                    async with db.transaction() as session:
                        await session.execute(effects_table.insert().values(event_id=f"{label}-{i}", n=i))
                else:
                    async with factory() as session, session.begin():
                        await session.execute(effects_table.insert().values(event_id=f"{label}-{i}", n=i))
                timings.append((time.monotonic() - started) * 1000)
            results[label] = percentiles(timings[5:] or timings, points=(50, 99))
    finally:
        await plain.dispose()
    return results


def profile_report(profiler: cProfile.Profile, path: Path, top: int = 35) -> list[str]:
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text)
    stats.sort_stats("tottime").print_stats(top)
    text.write("\n\n==== by cumulative time ====\n")
    stats.sort_stats("cumulative").print_stats(top)
    path.write_text(text.getvalue())
    rows = []
    for (filename, line, func), (_cc, calls, tottime, _cum, _callers) in sorted(
        stats.stats.items(), key=lambda item: item[1][2], reverse=True  # type: ignore[attr-defined]
    )[:12]:
        short = "/".join(Path(filename).parts[-2:])
        rows.append(f"{tottime:7.2f}s {calls:>9} {short}:{line}({func})")
    return rows


# -------------------------------------------------------------------------------------------- main


async def run(args: argparse.Namespace, loop_name: str) -> dict[str, Any]:
    cancel_on_sigterm()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    suffix = unique_suffix()
    exchange = f"kefu-bench-{suffix}.events"
    prefix = f"kefu-bench-{suffix}"
    raw_queue = f"{prefix}.raw"
    db_name = f"kefu_bench_pipeline_{suffix}"
    note = "x" * args.note_bytes
    events = args.events
    deadline_for = lambda: time.monotonic() + args.phase_timeout  # noqa: E731
    result: dict[str, Any] = {"bench": "pipeline"}

    transport = AmqpTransport(
        AMQP_URL,
        exchange=exchange,
        queue_prefix=prefix,
        prefetch=args.prefetch,
        concurrency=args.concurrency,
        retry_delays_ms=(1_000, 10_000, 60_000),
        connection_name=f"kefu-bench-{suffix}",
    )
    queues = [raw_queue, transport.queue_name(CONSUMER_SERVICE), transport.queue_name(CONSUMER_SERVICE, ".dead")]
    queues += [transport.queue_name(CONSUMER_SERVICE, f".retry.{n}") for n in (1, 2, 3)]
    progress(f"run {suffix}: {events} events, exchange {exchange}, database {db_name}, loop {loop_name}")
    try:
        version = await broker_version(AMQP_URL)
        pg = await server_settings(PG_ADMIN_DSN, ["server_version", "synchronous_commit", "fsync"])
        async with scratch_database(db_name) as url:
            producer_db = Database(url, pool_size=args.producer_pool)
            consumer_db = Database(url, pool_size=args.consumer_pool)
            relay: OutboxRelay | None = None
            try:
                async with producer_db.engine.begin() as connection:
                    await connection.run_sync(infra_metadata.create_all)
                    await connection.run_sync(bench_metadata.create_all)

                clock = SystemClock()
                outbox = Outbox(source="/kefu/bench-producer", registry=bench_registry, clock=clock)
                sample = (await _sample_body(outbox, note))
                progress(f"event body {len(sample)} bytes; raw baseline uses a body of the same size")

                # 1. raw baseline
                raw = await raw_baseline(
                    AMQP_URL, exchange, raw_queue, sample, events, args.raw_window, args.prefetch, args.phase_timeout
                )
                progress(
                    f"raw aio-pika: {raw['events_per_s']:.0f} events/s "
                    f"(publish+confirm alone {raw['publish_confirmed_per_s']:.0f}/s, {raw['seconds']:.2f}s)"
                )

                sections = Sections()
                await transport.connect()
                timed = TimedTransport(transport, sections)
                handlers = EventHandlers()

                @handlers.on(EVENT_TYPE)
                async def handle(ctx: HandlerContext, data: BenchHappened) -> None:
                    await ctx.session.execute(effects_table.insert().values(event_id=ctx.envelope.id, n=data.n))

                consumer = EventConsumer(
                    service=CONSUMER_SERVICE,
                    handlers=handlers,
                    registry=bench_registry,
                    db=consumer_db,
                    outbox=Outbox(source="/kefu/bench-sink", registry=bench_registry, clock=clock),
                    clock=clock,
                )
                probe = Probe(consumer)
                await transport.consume(CONSUMER_SERVICE, handlers.routing_keys, probe)
                relay = OutboxRelay(
                    service="bench-producer",
                    db=producer_db,
                    transport=timed,  # type: ignore[arg-type]
                    outbox=outbox,
                    clock=clock,
                    batch_size=args.batch_size,
                    poll_seconds=args.poll_seconds,
                )
                time_relay_passes(relay, sections)

                # 2. outbox writes alone
                written, write_s = await write_outbox(
                    producer_db, outbox, start=0, count=events, per_tx=args.tx_events, phase="drain", note=note,
                    deadline=deadline_for(),
                )
                progress(f"outbox writes: {written / write_s:.0f} events/s ({written} in {write_s:.2f}s)")

                # 3. drain: relay + consumer on a full outbox
                probe.expect(written)
                timed.reset()
                cpu = CpuMeter().start()
                started = time.monotonic()
                relay.start()
                drained = await wait_for_handled(probe, args.phase_timeout)
                ended = probe.last_handled if drained else time.monotonic()
                drain_cores = cpu.stop()
                drain_s = ended - started
                drain = {
                    "events": written,
                    "handled": probe.handled,
                    "complete": drained,
                    "seconds": drain_s,
                    "events_per_s": probe.handled / drain_s,
                    "relay_published_per_s": timed.published / max(timed.last_published - started, 1e-9),
                    "relay_batch_size_mean": sum(timed.batch_sizes) / max(len(timed.batch_sizes), 1),
                    "consumer_call_ms_mean": 1000 * probe.in_call_s / max(probe.handled, 1),
                    "consumer_max_in_flight": probe.max_in_flight,
                    "cpu_cores": drain_cores,
                    "sections": sections.summary(),
                }
                progress(
                    f"drain (relay+consumer): {drain['events_per_s']:.0f} events/s; relay alone published "
                    f"{drain['relay_published_per_s']:.0f}/s; consumer call {drain['consumer_call_ms_mean']:.1f} ms"
                )

                # 4. concurrent: producer, relay and consumer all at once
                sections.totals.clear()
                sections.counts.clear()
                probe.expect(events)
                timed.reset()
                profiler = cProfile.Profile() if args.profile else None
                cpu = CpuMeter().start()
                started = time.monotonic()
                if profiler is not None:
                    profiler.enable()
                written_c, write_c_s = await write_outbox(
                    producer_db, outbox, start=events, count=events, per_tx=args.tx_events, phase="concurrent",
                    note=note, deadline=deadline_for(),
                )
                probe.target = written_c
                if probe.handled >= written_c:
                    probe.done.set()
                concurrent_done = await wait_for_handled(probe, max(1.0, args.phase_timeout - write_c_s))
                if profiler is not None:
                    profiler.disable()
                ended = probe.last_handled if concurrent_done else time.monotonic()
                concurrent_cores = cpu.stop()
                concurrent_s = ended - started
                concurrent = {
                    "events": written_c,
                    "handled": probe.handled,
                    "complete": concurrent_done,
                    "seconds": concurrent_s,
                    "events_per_s": probe.handled / concurrent_s,
                    "producer_write_per_s": written_c / write_c_s,
                    "relay_batch_size_mean": sum(timed.batch_sizes) / max(len(timed.batch_sizes), 1),
                    "consumer_call_ms_mean": 1000 * probe.in_call_s / max(probe.handled, 1),
                    "cpu_cores": concurrent_cores,
                    "sections": sections.summary(),
                }
                progress(
                    f"concurrent (producer+relay+consumer): {concurrent['events_per_s']:.0f} events/s; "
                    f"producer wrote {concurrent['producer_write_per_s']:.0f}/s meanwhile"
                )
                if profiler is not None:
                    path = RESULTS_DIR / "pipeline-profile.txt"
                    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
                    for row in profile_report(profiler, path):
                        progress(f"  profile {row}")
                    progress(f"profile of the concurrent phase written to {path} (figures above are profiled)")

                # 5. steady-state latency
                steady = await steady_phase(
                    producer_db, outbox, probe, timed, rate=args.steady_rate, seconds=args.steady_seconds,
                    producers=args.steady_producers, note=note, drain_timeout=30.0,
                )
                lat = steady["latency_ms"]
                progress(
                    f"steady {steady['achieved_rate']:.0f}/s for {args.steady_seconds}s: p50 {lat['p50']:.1f} ms, "
                    f"p99 {lat['p99']:.1f} ms, max {lat['max']:.1f} ms ({steady['events_handled']} handled)"
                )
                await relay.stop()

                # 6. diagnostics
                diagnostics = {}
                if args.diagnose_rounds:
                    diagnostics = await transaction_cost(url, producer_db, args.diagnose_rounds)
                    progress(
                        f"one tiny transaction: Database.transaction() {diagnostics['database_transaction_ms']['p50']:.2f}"
                        f" ms vs same without pool_pre_ping {diagnostics['no_pre_ping_ms']['p50']:.2f} ms (p50)"
                    )

                ratio = concurrent["events_per_s"] / raw["events_per_s"]
                result.update(
                    {
                        "events_per_s": concurrent["events_per_s"],
                        "raw_events_per_s": raw["events_per_s"],
                        "ratio": ratio,
                        "p50_ms": lat["p50"],
                        "p99_ms": lat["p99"],
                        "max_ms": lat["max"],
                        "events": events,
                        "steady_rate": args.steady_rate,
                        "steady_achieved_rate": steady["achieved_rate"],
                        "steady_seconds": args.steady_seconds,
                        "events_per_s_concurrent": concurrent["events_per_s"],
                        "events_per_s_drain": drain["events_per_s"],
                        "outbox_write_per_s": written / write_s,
                        "targets": {"ratio": 0.5, "p99_ms": 100.0},
                        "met": {"ratio": ratio >= 0.5, "p99": lat["p99"] < 100.0},
                        "notes": (
                            "events_per_s is the concurrent figure: producer (outbox writes, "
                            f"{args.tx_events}/tx), relay and consumer all running at once in one process, N / "
                            "(first outbox write -> N-th inbox commit); events_per_s_drain is relay+consumer on "
                            "a pre-filled outbox. raw = aio-pika on one connection, confirms + acks, same body "
                            "size. Handled time is taken after EventConsumer returns HANDLED (inbox claim + one "
                            "handler insert committed), before the broker ack. Latency = that minus the "
                            "producer's commit return (monotonic), one event per transaction."
                        ),
                        "knobs": {
                            "relay_batch_size": args.batch_size,
                            "relay_poll_seconds": args.poll_seconds,
                            "prefetch": args.prefetch,
                            "consumer_concurrency": args.concurrency,
                            "producer_pool_size": args.producer_pool,
                            "consumer_pool_size": args.consumer_pool,
                            "tx_events": args.tx_events,
                            "raw_window": args.raw_window,
                            "steady_producers": args.steady_producers,
                            "body_bytes": len(sample),
                            "loop": loop_name,
                        },
                        "environment": {
                            "rabbitmq": version,
                            "postgres": pg,
                            "python": sys.version.split()[0],
                            "cores": CpuMeter().start().stop()["machine_cores"],
                        },
                        "raw": raw,
                        "drain": drain,
                        "concurrent": concurrent,
                        "steady": steady,
                        "diagnostics": diagnostics,
                        "outcomes": dict(probe.outcomes),
                    }
                )
            finally:
                if relay is not None:
                    with contextlib.suppress(Exception):
                        await relay.stop()
                await _close_transport(transport)
                await producer_db.dispose()
                await consumer_db.dispose()
    finally:
        await delete_amqp_objects(AMQP_URL, queues=queues, exchanges=[exchange])
        progress(f"deleted queues {prefix}.* and exchange {exchange}")
    return rounded(result)


async def _close_transport(transport: AmqpTransport) -> None:
    try:
        if transport.is_connected:
            await transport.delete_topology(CONSUMER_SERVICE)
    except Exception as exc:
        print(f"could not delete topology: {exc!r}", file=sys.stderr, flush=True)
    with contextlib.suppress(Exception):
        await asyncio.wait_for(transport.close(), 10)


async def _sample_body(outbox: Outbox, note: str) -> bytes:
    from shared.events import make_event

    event = make_event(
        type=EVENT_TYPE,
        source=outbox.source,
        data=BenchHappened(n=123456, phase="concurrent", note=note),
        subject="123456",
        time=outbox.clock.now(),
        correlation_id=None,
    )
    return event.to_json()


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000, help="events per throughput phase")
    parser.add_argument("--steady-seconds", type=float, default=10.0)
    parser.add_argument("--steady-rate", type=int, default=1_000, help="events/s in the latency phase")
    parser.add_argument("--steady-producers", type=int, default=8, help="concurrent producer tasks (latency phase)")
    parser.add_argument("--quick", action="store_true", help="3,000 events and 3 s of steady load")
    parser.add_argument("--batch-size", type=int, default=500, help="OutboxRelay batch_size")
    parser.add_argument("--poll-seconds", type=float, default=1.0, help="OutboxRelay poll_seconds")
    parser.add_argument("--prefetch", type=int, default=256, help="AMQP prefetch (raw baseline and transport)")
    parser.add_argument("--concurrency", type=int, default=32, help="AmqpTransport consumer concurrency")
    parser.add_argument("--consumer-pool", type=int, default=32, help="consumer Database pool_size")
    parser.add_argument("--producer-pool", type=int, default=10, help="producer/relay Database pool_size")
    parser.add_argument("--tx-events", type=int, default=100, help="outbox events per producer transaction")
    parser.add_argument("--raw-window", type=int, default=500, help="raw publishes gathered per window")
    parser.add_argument("--note-bytes", type=int, default=300, help="padding in each event's data")
    parser.add_argument("--phase-timeout", type=float, default=60.0, help="cap in seconds for each phase")
    parser.add_argument("--diagnose-rounds", type=int, default=300, help="0 to skip the transaction-cost check")
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    parser.add_argument("--profile", action="store_true", help="cProfile the concurrent phase (slows it down)")
    args = parser.parse_args(argv)
    if args.quick:
        args.events = min(args.events, 3_000)
        args.steady_seconds = min(args.steady_seconds, 3.0)
        args.diagnose_rounds = min(args.diagnose_rounds, 100)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    loop_name = install_loop(args.loop)
    try:
        result = asyncio.run(run(args, loop_name))
    except (KeyboardInterrupt, asyncio.CancelledError):
        progress("interrupted; cleaned up")
        return 130
    save_result("pipeline", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
