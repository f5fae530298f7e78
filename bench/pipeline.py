"""Event pipeline benchmark: outbox → RabbitMQ → consumer inbox commit on PostgreSQL, against raw aio-pika.

Run: `.venv/bin/python bench/pipeline.py` (`--quick` for a smaller run, `--help` for the knobs).

Everything runs in this one process, on one broker and one scratch database, like the raw baseline:
1. raw         aio-pika on one connection: N persistent messages published with confirms (windows of
               `--raw-window` gathered publishes) to a topic exchange bound to one quorum queue, while a
               consumer on another channel (prefetch `--prefetch`) acks each; N / (first publish → last ack).
2. components  where the time goes: the relay alone drains M outbox rows into the (pre-declared) queue,
               then the consumer alone drains those M messages into the inbox.
3. write       N events written into the outbox, `--tx-events` per transaction, relay stopped.
4. drain       relay and consumer together on that full outbox: N / (relay start → N-th inbox commit).
5. concurrent  producer, relay and consumer all at once, as in production: N / (first outbox write →
               N-th inbox commit). This is `events_per_s`, the figure compared with `raw_events_per_s`.
6. steady      one event per transaction committed at `--steady-rate`/s for `--steady-seconds`, scheduled
               by absolute time from several producer tasks; latency = inbox commit − producer commit.
               A shorter `light` run at `--light-rate`/s shows the latency when the pipeline is not saturated.
7. diagnostics cost of one `Database.transaction()` with and without `pool_pre_ping` (not in the figures).

The handled time is taken in a thin wrapper around `EventConsumer.__call__` right after it returns
`HANDLED`, i.e. after the inbox claim and the handler's insert have committed (the broker ack follows).
The last line printed is the JSON result, also saved to bench/results/pipeline.json (pipeline-quick.json
with --quick).
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aio_pika
import sqlalchemy as sa
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from bench.common import (
    AMQP_URL,
    PG_ADMIN_DSN,
    RESULTS_DIR,
    Budget,
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
    wait_until,
)
from shared.bus.amqp import QUORUM, AmqpTransport
from shared.bus.base import Delivery, Outcome, OutcomeKind, OutgoingMessage
from shared.clock import SystemClock
from shared.consumer import BatchContext, EventConsumer, EventHandlers, HandlerContext, Received
from shared.db import Database, infra_metadata
from shared.events import EventRegistry, make_event
from shared.outbox import Outbox, OutboxRelay, outbox_table

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

    def settle_target(self, target: int) -> None:
        """Lower the target to what was actually produced (a phase that hit its time cap)."""
        self.target = target
        if self.handled >= target:
            self.done.set()

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

    def consumer_call_ms(self) -> float:
        return 1000 * self.in_call_s / max(self.handled, 1)


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

    def mean_batch(self) -> float:
        return sum(self.batch_sizes) / max(len(self.batch_sizes), 1)

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


@dataclass
class Rig:
    """What the pipeline phases share."""

    args: argparse.Namespace
    note: str
    producer_db: Database
    consumer_db: Database
    outbox: Outbox
    transport: AmqpTransport
    timed: TimedTransport
    probe: Probe
    handlers: EventHandlers
    relay: OutboxRelay
    sections: Sections
    budget: Budget
    exchange: str
    next_n: int = 0
    throughput_parts_left: int = 6  # relay alone, consumer alone, writes, drain, concurrent (+ raw before)

    def reset_sections(self) -> None:
        self.sections.totals.clear()
        self.sections.counts.clear()

    def latency_reserve(self) -> float:
        return float(self.args.steady_seconds + self.args.light_seconds + 12.0)

    def throughput_timeout(self) -> float:
        """Cap for the next throughput phase, keeping time for those after it and the latency phases."""
        timeout = self.budget.share(
            self.args.phase_timeout, parts_left=self.throughput_parts_left, reserve=self.latency_reserve()
        )
        self.throughput_parts_left = max(1, self.throughput_parts_left - 1)
        return timeout


# ------------------------------------------------------------------------------------------ phases


def cpu_ms_per_event(result: dict[str, Any]) -> float:
    """This process's CPU milliseconds per event in a phase (`cpu_cores` × seconds / events)."""
    rate = result.get("events_per_s") or 0.0
    return 1000 * result["cpu_cores"]["bench_process"] / rate if rate else float("nan")


async def raw_baseline(
    url: str, exchange_name: str, queue_name: str, body: bytes, args: argparse.Namespace, timeout: float
) -> dict[str, Any]:
    """Raw aio-pika publish-with-confirms and consume-with-ack on one connection."""
    events, window = args.events, args.raw_window
    connection = await aio_pika.connect(url, timeout=10)
    try:
        publish_channel = await connection.channel(publisher_confirms=True)
        exchange = await publish_channel.declare_exchange(
            exchange_name, aio_pika.ExchangeType.TOPIC, durable=True
        )
        consume_channel = await connection.channel()
        await consume_channel.set_qos(prefetch_count=args.prefetch)
        queue = await consume_channel.declare_queue(queue_name, durable=True, arguments=QUORUM)
        await queue.bind(exchange_name, routing_key=RAW_ROUTING_KEY)

        acked = 0
        done = asyncio.Event()
        last_ack = 0.0

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            nonlocal acked, last_ack
            await message.ack()
            acked += 1
            last_ack = time.monotonic()
            if acked >= events:
                done.set()

        tag = await queue.consume(on_message)
        clock = SystemClock()
        cpu = CpuMeter().start()
        started = time.monotonic()
        deadline = started + timeout
        published = 0
        for first in range(0, events, window):
            if time.monotonic() > deadline:
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
        if published < events:
            done = asyncio.Event()  # count what was published
            if acked >= published:
                done.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), max(1.0, deadline - time.monotonic()))
        ended = last_ack if acked else time.monotonic()
        cores = cpu.stop()
        await queue.cancel(tag)
        elapsed = max(ended - started, 1e-9)
        return {
            "events": events,
            "published": published,
            "acked": acked,
            "complete": acked >= events,
            "seconds": elapsed,
            "events_per_s": acked / elapsed,
            "publish_confirmed_per_s": published / max(publish_done - started, 1e-9),
            "cpu_cores": cores,
        }
    finally:
        await connection.close()


async def write_outbox(rig: Rig, count: int, phase: str, *, timeout: float) -> tuple[int, float]:
    """Write `count` events, `--tx-events` per transaction, for at most `timeout` seconds."""
    per_tx = rig.args.tx_events
    started = time.monotonic()
    deadline = started + timeout
    written = 0
    while written < count and time.monotonic() < deadline:
        size = min(per_tx, count - written)
        async with rig.producer_db.transaction() as session:
            for n in range(rig.next_n, rig.next_n + size):
                data = BenchHappened(n=n, phase=phase, note=rig.note)
                await rig.outbox.add(session, EVENT_TYPE, data, subject=str(n))
        rig.next_n += size
        written += size
    return written, time.monotonic() - started


async def wait_for_handled(probe: Probe, timeout: float) -> bool:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(probe.done.wait(), timeout)
    return probe.done.is_set()


async def consumer_queue(transport: AmqpTransport, exchange: str, action: str) -> int:
    """`declare` the consumer's main queue as `AmqpTransport.consume` will (without consuming yet), or
    `count` or `purge` its ready messages; returns how many were ready."""
    connection = await aio_pika.connect(transport.url, timeout=10)
    try:
        channel = await connection.channel()
        name = transport.queue_name(CONSUMER_SERVICE)
        if action == "declare":
            queue = await channel.declare_queue(name, durable=True, arguments=QUORUM)
            await queue.bind(exchange, routing_key=EVENT_TYPE)
            return 0
        queue = await channel.declare_queue(name, passive=True)
        ready = queue.declaration_result.message_count or 0
        if action == "purge" and ready:
            await queue.purge()
        return ready
    finally:
        await connection.close()


async def abandon_outbox_backlog(rig: Rig) -> int:
    """Stop the relay and mark what it has not published as published (a phase hit its time cap)."""
    await rig.relay.stop()
    async with rig.producer_db.transaction() as session:
        result = await session.execute(
            outbox_table.update()
            .where(outbox_table.c.published_at.is_(None))
            .values(published_at=SystemClock().now())
        )
    return int(getattr(result, "rowcount", 0) or 0)


async def settle(rig: Rig) -> None:
    """Leave nothing of a phase that hit its time cap to be counted by the next: no pending outbox
    rows, no ready messages, no handler still running. Stops the relay; cheap when all is done."""
    rows = await abandon_outbox_backlog(rig)
    ready = await consumer_queue(rig.transport, rig.exchange, "purge")
    handled = -1
    for _ in range(100):  # prefetched messages still get handled; wait until that stops (≤ 10 s)
        if rig.probe.in_flight == 0 and rig.probe.handled == handled:
            break
        handled = rig.probe.handled
        await asyncio.sleep(0.1)
    if rows or ready:
        progress(f"  abandoned {rows} unpublished outbox rows and {ready} queued messages of the last phase")


async def components_phase(rig: Rig, count: int) -> dict[str, Any]:
    """The relay alone, then the consumer alone, each on a backlog of `count` events."""
    timeout = rig.throughput_timeout()
    written, _ = await write_outbox(rig, count, "components", timeout=timeout / 2)
    rig.timed.reset()
    rig.reset_sections()
    cpu = CpuMeter().start()
    started = time.monotonic()
    rig.relay.start()
    complete = await wait_until(lambda: rig.timed.published >= written, timeout=timeout, interval=0.01)
    relay_s = max(rig.timed.last_published - started, 1e-9)
    relay_cores = cpu.stop()
    await abandon_outbox_backlog(rig)
    relay = {
        "events": written,
        "published": rig.timed.published,
        "complete": complete,
        "events_per_s": rig.timed.published / relay_s,
        "batch_size_mean": rig.timed.mean_batch(),
        "sections": rig.sections.summary(),
        "cpu_cores": relay_cores,
    }
    progress(f"relay alone: {relay['events_per_s']:.0f} events/s published and confirmed")

    rig.probe.expect(await consumer_queue(rig.transport, rig.exchange, "count"))
    cpu = CpuMeter().start()
    started = time.monotonic()
    await rig.transport.consume(CONSUMER_SERVICE, rig.handlers.routing_keys, rig.probe)
    complete = await wait_for_handled(rig.probe, rig.throughput_timeout())
    consumer_s = max((rig.probe.last_handled if complete else time.monotonic()) - started, 1e-9)
    consumer = {
        "events": rig.probe.target,
        "handled": rig.probe.handled,
        "complete": complete,
        "events_per_s": rig.probe.handled / consumer_s,
        "call_ms_mean": rig.probe.consumer_call_ms(),
        "max_in_flight": rig.probe.max_in_flight,
        "cpu_cores": cpu.stop(),
    }
    progress(
        f"consumer alone: {consumer['events_per_s']:.0f} events/s into the inbox "
        f"(mean {consumer['call_ms_mean']:.1f} ms per EventConsumer call, "
        f"{consumer['max_in_flight']} in flight)"
    )
    return {"relay_only": relay, "consumer_only": consumer}


async def drain_phase(rig: Rig, count: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Outbox writes alone (relay stopped), then relay and consumer together on that backlog."""
    await settle(rig)
    cpu = CpuMeter().start()
    written, write_s = await write_outbox(rig, count, "drain", timeout=rig.throughput_timeout())
    write = {
        "events": written,
        "seconds": write_s,
        "events_per_s": written / write_s,
        "cpu_cores": cpu.stop(),
    }
    progress(f"outbox writes alone: {write['events_per_s']:.0f} events/s ({written} in {write_s:.2f}s)")

    rig.probe.expect(written)
    rig.timed.reset()
    rig.reset_sections()
    cpu = CpuMeter().start()
    started = time.monotonic()
    rig.relay.start()
    complete = await wait_for_handled(rig.probe, rig.throughput_timeout())
    elapsed = max((rig.probe.last_handled if complete else time.monotonic()) - started, 1e-9)
    drain = {
        "events": written,
        "handled": rig.probe.handled,
        "complete": complete,
        "seconds": elapsed,
        "events_per_s": rig.probe.handled / elapsed,
        "relay_published_per_s": rig.timed.published / max(rig.timed.last_published - started, 1e-9),
        "relay_batch_size_mean": rig.timed.mean_batch(),
        "consumer_call_ms_mean": rig.probe.consumer_call_ms(),
        "consumer_max_in_flight": rig.probe.max_in_flight,
        "cpu_cores": cpu.stop(),
        "sections": rig.sections.summary(),
    }
    progress(
        f"drain (relay+consumer on a full outbox): {drain['events_per_s']:.0f} events/s; relay published "
        f"{drain['relay_published_per_s']:.0f}/s meanwhile"
    )
    return write, drain


async def concurrent_phase(rig: Rig, count: int) -> dict[str, Any]:
    """Producer, relay and consumer all running: N / (first outbox write → N-th inbox commit)."""
    await settle(rig)
    rig.relay.start()
    timeout = rig.throughput_timeout()
    rig.probe.expect(count)
    rig.timed.reset()
    rig.reset_sections()
    profiler = cProfile.Profile() if rig.args.profile else None
    cpu = CpuMeter().start()
    started = time.monotonic()
    if profiler is not None:
        profiler.enable()
    written, write_s = await write_outbox(rig, count, "concurrent", timeout=timeout)
    rig.probe.settle_target(written)
    complete = await wait_for_handled(rig.probe, max(2.0, timeout - write_s))
    if profiler is not None:
        profiler.disable()
    elapsed = max((rig.probe.last_handled if complete else time.monotonic()) - started, 1e-9)
    result = {
        "events": written,
        "handled": rig.probe.handled,
        "complete": complete,
        "seconds": elapsed,
        "events_per_s": rig.probe.handled / elapsed,
        "producer_write_per_s": written / write_s,
        "relay_batch_size_mean": rig.timed.mean_batch(),
        "consumer_call_ms_mean": rig.probe.consumer_call_ms(),
        "consumer_max_in_flight": rig.probe.max_in_flight,
        "cpu_cores": cpu.stop(),
        "sections": rig.sections.summary(),
    }
    progress(
        f"concurrent (producer+relay+consumer): {result['events_per_s']:.0f} events/s; "
        f"producer wrote {result['producer_write_per_s']:.0f}/s meanwhile"
    )
    if profiler is not None:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        path = RESULTS_DIR / "pipeline-profile.txt"
        for row in profile_report(profiler, path):
            progress(f"  profile {row}")
        progress(f"profile written to {path}; the concurrent figures above were slowed by profiling")
    return result


async def steady_phase(  # noqa: PLR0915
    rig: Rig, *, rate: int, seconds: float, label: str
) -> dict[str, Any]:
    """Commit one event per transaction at `rate`/s; latency = inbox commit − producer commit."""
    await settle(rig)
    rig.relay.start()
    total = int(rate * seconds)
    producers = rig.args.steady_producers
    committed_at: dict[str, float] = {}
    lateness: list[float] = []
    commit_ms: list[float] = []
    rig.probe.expect(total, record=True)
    rig.timed.reset(record=True)
    next_slot = 0
    t0 = time.monotonic() + 0.05
    stop_at = t0 + seconds + 0.25  # slots still unstarted then are skipped, so the phase lasts `seconds`

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
            if begun > stop_at:
                return
            lateness.append(max(0.0, begun - due) * 1000)
            n = rig.next_n + slot
            async with rig.producer_db.transaction() as session:
                event = await rig.outbox.add(
                    session, EVENT_TYPE, BenchHappened(n=n, phase=label, note=rig.note), subject=str(n)
                )
            now = time.monotonic()
            committed_at[event.id] = now
            commit_ms.append((now - begun) * 1000)

    cpu = CpuMeter().start()
    await asyncio.gather(*(producer() for _ in range(producers)))
    rig.next_n += total
    produced_until = time.monotonic()
    produced = len(committed_at)
    rig.probe.settle_target(produced)
    reserve = rig.args.light_seconds + 6.0 if label == "steady" else 2.0
    complete = await wait_for_handled(rig.probe, rig.budget.share(rig.args.drain_timeout, reserve=reserve))
    cores = cpu.stop()

    latencies, pickup, broker, consume = [], [], [], []
    negative = 0
    for event_id, committed in committed_at.items():
        handled = rig.probe.handled_at.get(event_id)
        if handled is None:
            continue
        negative += handled < committed
        latencies.append((handled - committed) * 1000)
        published = rig.timed.publish_started.get(event_id)
        delivered = rig.probe.delivered_at.get(event_id)
        if published is not None and delivered is not None:
            pickup.append((published - committed) * 1000)
            broker.append((delivered - published) * 1000)
            consume.append((handled - delivered) * 1000)
    result = {
        "target_rate": rate,
        "seconds": seconds,
        "producers": producers,
        "events_due": total,
        "events_committed": produced,
        "events_skipped": total - produced,
        "events_handled": rig.probe.handled,
        "complete": complete,
        "achieved_rate": produced / max(produced_until - t0, seconds),
        "latency_ms": percentiles(latencies),
        "negative_latencies": negative,
        "producer_commit_ms": percentiles(commit_ms),
        "producer_lateness_ms": percentiles(lateness),
        "breakdown_ms": {
            "commit_to_relay_publish": percentiles(pickup),
            "relay_publish_to_delivery": percentiles(broker),
            "delivery_to_inbox_commit": percentiles(consume),
        },
        "relay_batch_size_mean": rig.timed.mean_batch(),
        "relay_batches": len(rig.timed.batch_sizes),
        "consumer_max_in_flight": rig.probe.max_in_flight,
        "cpu_cores": cores,
    }
    lat = result["latency_ms"]
    progress(
        f"{label} at {rate}/s for {seconds:g}s: achieved {result['achieved_rate']:.0f}/s, "
        f"p50 {lat['p50']:.1f} ms, p99 {lat['p99']:.1f} ms, max {lat['max']:.1f} ms "
        f"({rig.probe.handled}/{produced} handled)"
    )
    return result


async def transaction_cost(url: str, db: Database, rounds: int) -> dict[str, Any]:
    """ms for one tiny insert transaction: through `Database`, and through a plain engine without pre-ping."""
    pool = db.engine.sync_engine.pool
    results: dict[str, Any] = {"rounds": rounds, "database_pre_ping": bool(getattr(pool, "_pre_ping", False))}
    plain = create_async_engine(url, pool_size=2, max_overflow=0, pool_pre_ping=False)
    try:
        plain_sessions = async_sessionmaker(plain, expire_on_commit=False)
        for label in ("database_transaction_ms", "no_pre_ping_ms"):
            timings, cpu_started = [], time.process_time()
            for i in range(rounds):
                started = time.monotonic()
                statement = effects_table.insert().values(event_id=f"{label}-{i}", n=i)
                if label == "database_transaction_ms":
                    async with db.transaction() as session:
                        await session.execute(statement)
                else:
                    async with plain_sessions() as session, session.begin():
                        await session.execute(statement)
                timings.append((time.monotonic() - started) * 1000)
            results[label] = percentiles(timings[5:] or timings, points=(50, 99))
            results[label]["cpu_ms_mean"] = 1000 * (time.process_time() - cpu_started) / rounds
    finally:
        await plain.dispose()
    return results


def profile_report(profiler: cProfile.Profile, path: Path, top: int = 40) -> list[str]:
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text)
    stats.sort_stats("tottime").print_stats(top)
    text.write("\n\n==== by cumulative time ====\n")
    stats.sort_stats("cumulative").print_stats(top)
    path.write_text(text.getvalue())
    entries = sorted(stats.stats.items(), key=lambda item: item[1][2], reverse=True)  # type: ignore[attr-defined]
    rows = []
    for (filename, line, func), (_cc, calls, tottime, _cum, _callers) in entries[:12]:
        short = "/".join(Path(filename).parts[-2:])
        rows.append(f"{tottime:7.2f}s {calls:>9} {short}:{line}({func})")
    return rows


# -------------------------------------------------------------------------------------------- main


async def run(args: argparse.Namespace, loop_name: str) -> dict[str, Any]:  # noqa: PLR0915
    cancel_on_sigterm()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    budget = Budget(args.budget_seconds)
    suffix = unique_suffix()
    exchange = f"kefu-bench-{suffix}.events"
    prefix = f"kefu-bench-{suffix}"
    raw_queue = f"{prefix}.raw"
    db_name = f"kefu_bench_pipeline_{suffix}"
    note = "x" * args.note_bytes
    events = args.events

    transport = AmqpTransport(
        AMQP_URL,
        exchange=exchange,
        queue_prefix=prefix,
        prefetch=args.prefetch,
        concurrency=args.concurrency,
        retry_delays_ms=(1_000, 10_000, 60_000),
        connection_name=f"kefu-bench-{suffix}",
    )
    # One AmqpTransport (one connection) for relay and consumer, as a service's Runtime has; or two.
    relay_transport = transport
    if args.separate_connections:
        relay_transport = AmqpTransport(
            AMQP_URL,
            exchange=exchange,
            queue_prefix=prefix,
            connection_name=f"kefu-bench-{suffix}-relay",
        )
    queues = [raw_queue, *transport.queue_names(CONSUMER_SERVICE)]
    progress(f"run {suffix}: {events} events, exchange {exchange}, database {db_name}, loop {loop_name}")
    try:
        idle = CpuMeter().start()
        await asyncio.sleep(1.0)
        busy = idle.stop()
        background = busy["other"] + busy["postgres"] + busy["rabbitmq"]
        if background > 0.3:
            progress(f"warning: other work is using {background:.2f} of {busy['machine_cores']:.0f} cores")
        environment = {
            "background_load_cores_at_start": background,
            "rabbitmq": await broker_version(AMQP_URL),
            "postgres": await server_settings(
                PG_ADMIN_DSN, ["server_version", "synchronous_commit", "fsync"]
            ),
            "python": sys.version.split()[0],
            "loop": loop_name,
            "cores": CpuMeter().start().stop()["machine_cores"],
        }
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
                sample = make_event(
                    type=EVENT_TYPE,
                    source=outbox.source,
                    data=BenchHappened(n=123456, phase="concurrent", note=note),
                    subject="123456",
                    time=clock.now(),
                ).to_json()
                progress(f"event body {len(sample)} bytes; the raw baseline publishes bodies of that size")

                raw_timeout = budget.share(
                    args.phase_timeout,
                    parts_left=7,
                    reserve=args.steady_seconds + args.light_seconds + 12.0,
                )
                raw = await raw_baseline(AMQP_URL, exchange, raw_queue, sample, args, raw_timeout)
                progress(
                    f"raw aio-pika: {raw['events_per_s']:.0f} events/s "
                    f"(publish+confirm {raw['publish_confirmed_per_s']:.0f}/s, {raw['seconds']:.2f}s)"
                )

                await transport.connect()
                if relay_transport is not transport:
                    await relay_transport.connect()
                sections = Sections()
                timed = TimedTransport(relay_transport, sections)
                handlers = EventHandlers()

                if args.consumer == "batch":
                    # The consumer as analytics runs it: inbox claims and effects of many events in one
                    # transaction, each delivery still acked (or retried) on its own.
                    @handlers.on_batch(
                        [EVENT_TYPE], max_size=args.consumer_batch, max_wait_ms=args.consumer_wait_ms
                    )
                    async def handle_batch(ctx: BatchContext, events: list[Received]) -> None:
                        await ctx.session.execute(
                            effects_table.insert(),
                            [{"event_id": r.envelope.id, "n": r.data.n} for r in events],
                        )
                else:

                    @handlers.on(EVENT_TYPE)
                    async def handle(ctx: HandlerContext, data: BenchHappened) -> None:
                        await ctx.session.execute(
                            effects_table.insert().values(event_id=ctx.envelope.id, n=data.n)
                        )

                consumer = EventConsumer(
                    service=CONSUMER_SERVICE,
                    handlers=handlers,
                    registry=bench_registry,
                    db=consumer_db,
                    outbox=Outbox(source="/kefu/bench-sink", registry=bench_registry, clock=clock),
                    clock=clock,
                )
                relay = OutboxRelay(
                    service="bench-producer",
                    db=producer_db,
                    transport=timed,
                    outbox=outbox,
                    clock=clock,
                    batch_size=args.batch_size,
                    poll_seconds=args.poll_seconds,
                )
                time_relay_passes(relay, sections)
                rig = Rig(
                    args,
                    note,
                    producer_db,
                    consumer_db,
                    outbox,
                    transport,
                    timed,
                    Probe(consumer),
                    handlers,
                    relay,
                    sections,
                    budget,
                    exchange,
                )
                await consumer_queue(transport, exchange, "declare")

                components = await components_phase(rig, min(events, args.component_events))
                write, drain = await drain_phase(rig, events)
                concurrent = await concurrent_phase(rig, events)
                steady = await steady_phase(
                    rig, rate=args.steady_rate, seconds=args.steady_seconds, label="steady"
                )
                light: dict[str, Any] = {}
                if args.light_rate and args.light_seconds:
                    light = await steady_phase(
                        rig, rate=args.light_rate, seconds=args.light_seconds, label="light"
                    )
                await relay.stop()

                diagnostics: dict[str, Any] = {}
                if args.diagnose_rounds:
                    diagnostics = await transaction_cost(url, producer_db, args.diagnose_rounds)
                    progress(
                        "one tiny insert transaction, p50: Database.transaction() "
                        f"{diagnostics['database_transaction_ms']['p50']:.2f} ms (pre-ping "
                        f"{'on' if diagnostics['database_pre_ping'] else 'off'}), a plain engine without "
                        f"pre-ping {diagnostics['no_pre_ping_ms']['p50']:.2f} ms"
                    )
                outcomes = dict(rig.probe.outcomes)
            finally:
                if relay is not None:
                    with contextlib.suppress(Exception):
                        await relay.stop()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(transport.close(), 10)
                if relay_transport is not transport:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(relay_transport.close(), 10)
                await producer_db.dispose()
                await consumer_db.dispose()
    finally:
        await delete_amqp_objects(AMQP_URL, queues=queues, exchanges=[exchange])
        progress(f"deleted queues {prefix}.* and exchange {exchange}")

    lat = steady["latency_ms"]
    ratio = concurrent["events_per_s"] / raw["events_per_s"]
    measured = {
        "raw": raw,
        "outbox_write": write,
        "relay_only": components["relay_only"],
        "consumer_only": components["consumer_only"],
        "drain": drain,
        "concurrent": concurrent,
    }
    for phase in measured.values():
        phase["cpu_ms_per_event"] = cpu_ms_per_event(phase)
    others = [phase["cpu_cores"]["other"] for phase in [*measured.values(), steady, light] if phase]
    result: dict[str, Any] = {
        "bench": "pipeline",
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
        "outbox_write_per_s": write["events_per_s"],
        "relay_only_per_s": components["relay_only"]["events_per_s"],
        "consumer_only_per_s": components["consumer_only"]["events_per_s"],
        "light_rate": args.light_rate,
        "light_p50_ms": light.get("latency_ms", {}).get("p50"),
        "light_p99_ms": light.get("latency_ms", {}).get("p99"),
        "cpu_ms_per_event": {name: phase["cpu_ms_per_event"] for name, phase in measured.items()},
        "other_load_cores_max": max(others),
        "targets": {"ratio": 0.5, "p99_ms": 100.0},
        "met": {"ratio": ratio >= 0.5, "p99": lat["p99"] < 100.0},
        "notes": (
            "events_per_s = concurrent phase: producer (outbox writes, "
            f"{args.tx_events} events/tx), relay and consumer all running at once in this one process, "
            "N / (first outbox write -> N-th inbox commit); events_per_s_drain = relay+consumer on a "
            "pre-filled outbox. raw = aio-pika, one connection, confirms + acks, same body size, same "
            "process. Handled time is taken after EventConsumer returns HANDLED (inbox claim + one "
            "handler insert committed), before the broker ack. Latency = that minus the producer's "
            "commit return (monotonic clock), one event per transaction. light_* = the same at a "
            "rate the pipeline sustains. cpu_ms_per_event = this process's CPU per event; "
            "other_load_cores_max = CPU used by unrelated processes during a phase (noise)."
        ),
        "knobs": {
            "consumer_mode": args.consumer,
            "consumer_batch": args.consumer_batch if args.consumer == "batch" else 1,
            "relay_batch_size": args.batch_size,
            "relay_poll_seconds": args.poll_seconds,
            "prefetch": args.prefetch,
            "consumer_concurrency": args.concurrency,
            "producer_pool_size": args.producer_pool,
            "consumer_pool_size": args.consumer_pool,
            "tx_events": args.tx_events,
            "raw_window": args.raw_window,
            "steady_producers": args.steady_producers,
            "component_events": min(events, args.component_events),
            "budget_seconds": args.budget_seconds,
            "separate_connections": args.separate_connections,
            "phase_timeout": args.phase_timeout,
            "body_bytes": len(sample),
        },
        "environment": environment,
        "raw": raw,
        "components": components,
        "write": write,
        "drain": drain,
        "concurrent": concurrent,
        "steady": steady,
        "light": light,
        "diagnostics": diagnostics,
        "outcomes": outcomes,
    }
    rounded_result: dict[str, Any] = rounded(result)
    return rounded_result


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--events", type=int, default=10_000, help="events per throughput phase")
    parser.add_argument("--component-events", type=int, default=3_000, help="events for relay/consumer alone")
    parser.add_argument("--steady-seconds", type=float, default=10.0)
    parser.add_argument("--steady-rate", type=int, default=1_000, help="events/s in the latency phase")
    parser.add_argument("--light-rate", type=int, default=200, help="events/s in the light latency phase")
    parser.add_argument("--light-seconds", type=float, default=5.0, help="0 to skip the light phase")
    parser.add_argument("--steady-producers", type=int, default=8, help="producer tasks in latency phases")
    parser.add_argument("--quick", action="store_true", help="3,000 events, 3 s steady, 2 s light")
    parser.add_argument("--batch-size", type=int, default=500, help="OutboxRelay batch_size")
    parser.add_argument("--poll-seconds", type=float, default=1.0, help="OutboxRelay poll_seconds")
    parser.add_argument(
        "--prefetch", type=int, default=128, help="AMQP prefetch (raw baseline and transport)"
    )
    parser.add_argument("--concurrency", type=int, default=16, help="AmqpTransport consumer concurrency")
    parser.add_argument("--consumer-pool", type=int, default=16, help="consumer Database pool_size")
    parser.add_argument("--producer-pool", type=int, default=10, help="producer/relay Database pool_size")
    parser.add_argument("--tx-events", type=int, default=100, help="outbox events per producer transaction")
    parser.add_argument("--raw-window", type=int, default=500, help="raw publishes gathered per window")
    parser.add_argument("--note-bytes", type=int, default=300, help="padding in each event's data")
    parser.add_argument("--phase-timeout", type=float, default=60.0, help="cap in seconds for each phase")
    parser.add_argument("--drain-timeout", type=float, default=30.0, help="cap for latency phases to drain")
    parser.add_argument(
        "--diagnose-rounds", type=int, default=300, help="0 to skip the transaction-cost check"
    )
    parser.add_argument(
        "--budget-seconds", type=float, default=170.0, help="whole-run time limit shared out between phases"
    )
    parser.add_argument(
        "--separate-connections",
        action="store_true",
        help="give the relay an AmqpTransport of its own (as another service has), not the consumer's",
    )
    parser.add_argument(
        "--consumer",
        choices=("event", "batch"),
        default="event",
        help="one transaction per event, or batched inbox claims (analytics' mode)",
    )
    parser.add_argument("--consumer-batch", type=int, default=500, help="largest batch in --consumer batch")
    parser.add_argument("--consumer-wait-ms", type=float, default=5.0, help="longest a batch waits to fill")
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    parser.add_argument("--profile", action="store_true", help="cProfile the concurrent phase (slows it)")
    args = parser.parse_args(argv)
    if args.consumer == "batch":
        # Batches fill only if the transport lets that many deliveries be in hand at once.
        args.prefetch = max(args.prefetch, 2 * args.consumer_batch)
        args.concurrency = max(args.concurrency, 2 * args.consumer_batch)
    if args.quick:
        args.events = min(args.events, 3_000)
        args.component_events = min(args.component_events, 1_000)
        args.steady_seconds = min(args.steady_seconds, 3.0)
        args.light_seconds = min(args.light_seconds, 2.0)
        args.diagnose_rounds = min(args.diagnose_rounds, 100)
        args.budget_seconds = min(args.budget_seconds, 75.0)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    loop_name = install_loop(args.loop)
    try:
        result = asyncio.run(run(args, loop_name))
    except (KeyboardInterrupt, asyncio.CancelledError):
        progress("interrupted; cleaned up")
        return 130
    save_result("pipeline-quick" if args.quick else "pipeline", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
