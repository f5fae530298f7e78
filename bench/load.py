"""Mixed traffic against the distributed platform: the highest journey rate held with p99 < 200 ms, no errors.

The four services run as processes (one uvicorn worker each) on scratch PostgreSQL databases and a private
RabbitMQ exchange and queue prefix, started with the reliability harness's `ServiceProcess`. The load is
open-loop: customer journeys begin on a fixed schedule whatever the earlier ones are doing, so a slow
platform meets a growing queue of work instead of a politely waiting client. One journey is

    POST /v1/contacts (an agent records the call)  →  GET /v1/tickets?contact_id= until the ticket appears
    →  POST /v1/tickets/{id}/reply  →  POST /v1/tickets/{id}/resolve
    →  the survey link arrives (analytics.survey.requested.v1)  →  POST /v1/surveys/{token}/responses

with `--think` seconds between the agent's and the customer's steps; beside the journeys, metric reads
(overview, tickets, satisfaction in turn) arrive at `--reads-per-journey` × the journey rate.

A short step search (`--step-seconds` each, the rate multiplied by `--factor` while a step passes, then
one step between the last pass and the first failure) finds the highest rate at which the p99 of all
requests stays under `--p99-ms` (of every operation with `--per-op-p99`; slower operations are listed
either way), nothing fails (any non-2xx answer, transport error, or journey left unfinished counts), the
load generator keeps its schedule, and contacts become tickets within `--max-lag-s`. That rate is then
held for `--duration` seconds (300 by default; `--rate` skips the search). Each service's RSS is sampled
through the hold; after a short drain the queues, dead letters and outboxes must be empty.

Each simulated agent has its own credential (`--agents`), and the write rate limit keeps its default
(per credential and service process), far above what one agent sends here: the bench pays the
limiter's cost like production does and is never throttled. Survey answers carry no credential and are
charged to the client address, whose default budget is also far above the survey rate.

The load generator is this process, pinned to the machine's last core once the services are up. On a
PostgreSQL server with autovacuum off, the bench vacuums and analyzes its databases every minute
(`--vacuum-every`), as autovacuum would.

    .venv/bin/python -m bench.load                     # search, then 5 minutes at the best rate
    .venv/bin/python -m bench.load --duration 30       # a short try (saved as load-quick.json)
    .venv/bin/python -m bench.load --rate 12           # no search
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aio_pika
import aiohttp
import asyncpg
from prometheus_client.parser import text_string_to_metric_families

from bench.common import (
    AMQP_URL,
    CpuMeter,
    cancel_on_sigterm,
    delete_amqp_objects,
    load_average,
    percentiles,
    pin_to_last_core,
    process_cpu_seconds,
    progress,
    rounded,
    save_result,
    scratch_database,
    server_settings,
    stop_task,
    unique_suffix,
)
from services.catalogue import SERVICES
from shared.auth import issue_token
from shared.bus.amqp import AmqpTransport
from shared.ratelimit import RateLimitSettings
from shared.settings import ServiceSettings
from tests.reliability.harness import CONSUMERS, ServiceProcess, asyncpg_dsn, service_env

SURVEY_REQUESTED = "analytics.survey.requested.v1"
SECRET = ServiceSettings.for_service("kefu").jwt_secret

CONTACTS = [
    ("complaint", "投诉:客服电话一直打不通", "我已经打了三天电话都没人接,非常不满意,要求给个说法。"),
    ("repair", "洗衣机漏水", "上个月买的滚筒洗衣机每次洗衣服底部都会漏水,麻烦尽快安排师傅上门看看。"),
    ("repair", "冰箱不制冷", "冰箱冷藏室温度一直降不下来,已经重启过两次也没用,请问是不是压缩机的问题?"),
    ("inquiry", "咨询保修期", "请问我去年买的空调还在保修期内吗?发票丢了还能保修吗?"),
]
REPLIES = ["您好,已收到您的反馈,我们正在为您处理。", "师傅明天上午上门,请保持电话畅通。"]
RESOLUTIONS = [
    ("answered", "已告知保修政策及所需凭证。"),
    ("repaired", "师傅上门更换了密封圈,试机正常。"),
    ("apologised", "已致歉并为客户登记补偿。"),
]
METRIC_READS = ["/v1/metrics/overview", "/v1/metrics/tickets", "/v1/metrics/satisfaction"]


def phone(n: int) -> str:
    return f"137{n:08d}"


def serial(n: int) -> str:
    return f"SN{n:010d}"


def bearer(subject: str, role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(secret=SECRET, subject=subject, roles=[role])}"}


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def rss_mb(pid: int) -> float:
    """Resident memory of one process from /proc (0.0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


# ------------------------------------------------------------------------------------------ recording


@dataclass
class Recorder:
    """Every request of one phase: latency per operation, failures by kind, journey lags and outcomes."""

    latencies: dict[str, list[float]] = field(default_factory=dict)
    errors: Counter[str] = field(default_factory=Counter)
    error_samples: list[str] = field(default_factory=list)
    ticket_lag: list[float] = field(default_factory=list)  # contact created → ticket created (server clocks)
    visible_lag: list[float] = field(default_factory=list)  # contact answered → ticket found by polling
    survey_lag: list[float] = field(default_factory=list)  # resolve answered → survey link received
    late: list[float] = field(default_factory=list)  # how far behind schedule each arrival was sent
    journeys_started: int = 0
    journeys_done: int = 0
    reads_started: int = 0
    started: float = field(default_factory=time.monotonic)
    by_minute: dict[int, list[float]] = field(default_factory=dict)  # every latency, by minute of the phase

    def add(self, op: str, seconds: float) -> None:
        self.latencies.setdefault(op, []).append(seconds)
        self.by_minute.setdefault(int((time.monotonic() - self.started) // 60), []).append(seconds)

    def fail(self, what: str, detail: str = "") -> None:
        self.errors[what] += 1
        if len(self.error_samples) < 10:
            self.error_samples.append(f"{what}: {detail}"[:300])

    @property
    def requests(self) -> int:
        return sum(len(v) for v in self.latencies.values())

    def summary(self, seconds: float) -> dict[str, Any]:
        ops = {
            op: {"count": len(values), **{k + "_ms": v * 1000 for k, v in percentiles(values).items()}}
            for op, values in sorted(self.latencies.items())
        }
        every = [v for values in self.latencies.values() for v in values]
        overall = {k + "_ms": v * 1000 for k, v in percentiles(every).items()}
        return {
            "journeys_started": self.journeys_started,
            "journeys_done": self.journeys_done,
            "journeys_per_s": self.journeys_done / seconds,
            "metric_reads": self.reads_started,
            "requests": self.requests,
            "requests_per_s": self.requests / seconds,
            "errors": sum(self.errors.values()),
            "errors_by_kind": dict(self.errors),
            "error_samples": self.error_samples,
            "p50_ms": overall["p50_ms"],
            "p99_ms": overall["p99_ms"],
            "worst_op_p99_ms": max((o["p99_ms"] for o in ops.values()), default=float("nan")),
            "ops": ops,
            "ticket_lag_ms": _ms(self.ticket_lag),
            "ticket_visible_lag_ms": _ms(self.visible_lag),
            "survey_lag_ms": _ms(self.survey_lag),
            "schedule_late_ms": _ms(self.late),
            # A latency creeping up minute by minute is a platform slowing as its data grows.
            "p99_ms_by_minute": [
                1000 * percentiles(values)["p99"] for _, values in sorted(self.by_minute.items())
            ],
        }


def _ms(values: list[float]) -> dict[str, float]:
    return {k: v * 1000 for k, v in percentiles(values, (50, 99)).items() if k != "mean"}


# ------------------------------------------------------------------------------------------ surveys


class SurveyLinks:
    """The survey links analytics sends out, caught on a private queue bound to the bench's exchange."""

    def __init__(self) -> None:
        self.tokens: dict[str, tuple[str, float]] = {}  # ticket id → (token, when it arrived)
        self._waiting: dict[str, asyncio.Future[None]] = {}
        self._connection: aio_pika.abc.AbstractRobustConnection | None = None

    async def start(self, url: str, exchange: str) -> None:
        self._connection = await aio_pika.connect_robust(url, timeout=10)
        channel = await self._connection.channel()
        await channel.set_qos(prefetch_count=500)
        events = await channel.declare_exchange(exchange, aio_pika.ExchangeType.TOPIC, durable=True)
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        await queue.bind(events, SURVEY_REQUESTED)
        await queue.consume(self._on_message, no_ack=True)

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()

    async def _on_message(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        data = json.loads(message.body)["data"]
        ticket = str(data.get("ticket_id"))
        self.tokens[ticket] = (str(data["token"]), time.monotonic())
        waiter = self._waiting.pop(ticket, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def token_for(self, ticket: str, timeout: float) -> tuple[str, float] | None:
        if ticket not in self.tokens:
            waiter = self._waiting.setdefault(ticket, asyncio.get_running_loop().create_future())
            try:
                await asyncio.wait_for(waiter, timeout)
            except TimeoutError:
                self._waiting.pop(ticket, None)
                return None
        return self.tokens.pop(ticket)


# ------------------------------------------------------------------------------------------ traffic


@dataclass
class Traffic:
    """The load generator: journeys and metric reads at a fixed arrival rate, recorded per phase."""

    http: aiohttp.ClientSession
    urls: dict[str, str]
    links: SurveyLinks
    options: argparse.Namespace
    agents: list[dict[str, str]]
    analyst: dict[str, str]
    rng: random.Random = field(default_factory=lambda: random.Random(11))
    serial: int = 0

    async def call(
        self, rec: Recorder, op: str, method: str, url: str, body: Any = None, headers: Any = None
    ) -> Any:
        """One request; any answer but 2xx, and any transport error or timeout, is an error."""
        started = time.perf_counter()
        try:
            async with self.http.request(method, url, json=body, headers=headers) as response:
                raw = await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            rec.add(op, time.perf_counter() - started)
            rec.fail(f"{op}: {type(exc).__name__}", repr(exc))
            return None
        rec.add(op, time.perf_counter() - started)
        if not 200 <= status < 300:
            rec.fail(f"{op}: HTTP {status}", raw.decode(errors="replace"))
            return None
        return json.loads(raw) if raw else {}

    async def journey(self, rec: Recorder, n: int) -> None:
        options, rng = self.options, self.rng
        agent = self.agents[n % len(self.agents)]
        kind, subject, text = rng.choice(CONTACTS)
        customer = rng.randrange(options.customers)
        contact = await self.call(
            rec,
            "contact",
            "POST",
            f"{self.urls['intake']}/v1/contacts",
            {
                "channel": rng.choice(["phone", "chat", "email", "web"]),
                "customer": {"phone": phone(customer)},
                "subject": subject,
                "body": text,
                "kind": kind,
                # Repairs name the product, which the seeded purchase keeps in warranty: no quote first.
                **({"product_serial": serial(customer)} if kind == "repair" else {}),
            },
            agent,
        )
        if contact is None:
            return
        answered = time.monotonic()
        ticket = None
        while ticket is None:
            await asyncio.sleep(options.poll)
            page = await self.call(
                rec,
                "ticket_lookup",
                "GET",
                f"{self.urls['tickets']}/v1/tickets?contact_id={contact['id']}",
                headers=agent,
            )
            if page is None:
                return
            if page["items"]:
                ticket = page["items"][0]
            elif time.monotonic() - answered > options.wait_timeout:
                rec.fail("journey: no ticket", f"contact {contact['id']} after {options.wait_timeout}s")
                return
        rec.visible_lag.append(time.monotonic() - answered)
        rec.ticket_lag.append(
            (parse_time(ticket["created_at"]) - parse_time(contact["created_at"])).total_seconds()
        )
        ticket_url = f"{self.urls['tickets']}/v1/tickets/{ticket['id']}"
        await asyncio.sleep(options.think)
        if (
            await self.call(rec, "reply", "POST", f"{ticket_url}/reply", {"body": rng.choice(REPLIES)}, agent)
            is None
        ):
            return
        await asyncio.sleep(options.think)
        code, summary = rng.choice(RESOLUTIONS)
        body = {"resolution_code": code, "summary": summary}
        if ticket["kind"] == "repair":
            body.update(resolution_code="repaired", summary=RESOLUTIONS[1][1], outcome="repaired")
        if await self.call(rec, "resolve", "POST", f"{ticket_url}/resolve", body, agent) is None:
            return
        resolved = time.monotonic()
        link = await self.links.token_for(ticket["id"], options.wait_timeout)
        if link is None:
            rec.fail("journey: no survey link", f"ticket {ticket['id']} after {options.wait_timeout}s")
            return
        token, arrived = link
        rec.survey_lag.append(max(arrived - resolved, 0.0))
        await asyncio.sleep(options.think)
        # A few customers are unhappy: DOMAIN rule 9 reopens and escalates their tickets.
        low = rng.random() < options.low_csat_share
        answer = {
            "csat": rng.randint(1, 2) if low else rng.randint(3, 5),
            "nps": rng.randint(0, 4) if low else rng.randint(6, 10),
            "ces": rng.randint(1, 7),
        }
        survey_url = f"{self.urls['analytics']}/v1/surveys/{token}/responses"
        if await self.call(rec, "survey", "POST", survey_url, answer) is None:
            return
        rec.journeys_done += 1

    async def metric_read(self, rec: Recorder, n: int) -> None:
        path = METRIC_READS[n % len(METRIC_READS)]
        op = "metrics_" + path.rsplit("/", 1)[1]
        await self.call(rec, op, "GET", f"{self.urls['analytics']}{path}", headers=self.analyst)

    async def phase(self, rate: float, seconds: float) -> tuple[Recorder, float]:
        """Journeys at `rate`/s and metric reads beside them for `seconds`; waits for journeys under way."""
        rec = Recorder()
        tasks: set[asyncio.Task[None]] = set()
        started = time.monotonic()

        async def arrivals(
            every: float, make: Callable[[Recorder, int], Coroutine[Any, Any, None]], counter: str
        ) -> None:
            # Scheduled by absolute time: a slow answer never delays the next arrival.
            n = 0
            while (at := started + n * every) < started + seconds:
                delay = at - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                rec.late.append(max(time.monotonic() - at, 0.0))
                setattr(rec, counter, getattr(rec, counter) + 1)
                task = asyncio.create_task(make(rec, self.serial))
                self.serial += 1
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                n += 1

        streams = [arrivals(1 / rate, self.journey, "journeys_started")]
        if self.options.reads_per_journey > 0:
            streams.append(
                arrivals(1 / (rate * self.options.reads_per_journey), self.metric_read, "reads_started")
            )
        try:
            await asyncio.gather(*streams)
        except BaseException:
            # Interrupted (Ctrl-C, SIGTERM): no journey may outlive the HTTP session it uses.
            for task in tasks:
                task.cancel()
            raise
        elapsed = time.monotonic() - started
        if tasks:
            _, unfinished = await asyncio.wait(set(tasks), timeout=2 * self.options.wait_timeout + 10)
            for task in unfinished:
                task.cancel()
                rec.fail("journey: unfinished", "still running long after the phase ended")
        return rec, elapsed


# ------------------------------------------------------------------------------------------ platform


@dataclass
class Platform:
    services: dict[str, ServiceProcess]
    databases: dict[str, str]
    transport: AmqpTransport

    def pids(self) -> dict[str, int]:
        return {name: s.process.pid for name, s in self.services.items() if s.process is not None}

    def rss(self) -> dict[str, float]:
        return {name: rss_mb(pid) for name, pid in self.pids().items()}

    async def handler_times(self, http: aiohttp.ClientSession) -> dict[str, list[float]]:
        """Each route's request-latency histogram as the services record it: [count, sum, count ≤ 200 ms].

        Taken inside the service (from the ASGI call to the response), so set beside the client's latency
        it tells time spent handling a request from time spent waiting to be handled.
        """
        totals: dict[str, list[float]] = {}
        for service in self.services.values():
            async with http.get(f"{service.url}/metrics") as response:
                text = await response.text()
            for family in text_string_to_metric_families(text):
                if family.name != "kefu_http_request_duration_seconds":
                    continue
                for sample in family.samples:
                    labels = sample.labels
                    if labels.get("route", "").startswith(("/metrics", "/readyz", "/healthz")):
                        continue
                    entry = totals.setdefault(f"{labels['method']} {labels['route']}", [0.0, 0.0, 0.0])
                    if sample.name.endswith("_count"):
                        entry[0] += sample.value
                    elif sample.name.endswith("_sum"):
                        entry[1] += sample.value
                    elif sample.name.endswith("_bucket") and labels.get("le") == "0.2":
                        entry[2] += sample.value
        return totals

    def cpu(self) -> dict[str, float]:
        return {name: process_cpu_seconds(pid) for name, pid in self.pids().items()}

    async def queue_depths(self) -> dict[str, int]:
        depths: dict[str, int] = {}
        for name in CONSUMERS:
            depths.update(await self.transport.queue_depths(name))
        return depths

    async def unsent(self) -> dict[str, int]:
        counts = {}
        for name, url in self.databases.items():
            connection = await asyncpg.connect(asyncpg_dsn(url), timeout=10)
            try:
                counts[name] = int(
                    await connection.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL")
                )
            finally:
                await connection.close()
        return counts

    async def drain(self, timeout: float) -> tuple[dict[str, int], dict[str, int], float]:
        """Wait until queues and outboxes are empty (or `timeout`); the last depths and how long it took."""
        started = time.monotonic()
        while True:
            depths, unsent = await self.queue_depths(), await self.unsent()
            quiet = not any(depths.values()) and not any(unsent.values())
            if quiet or time.monotonic() - started > timeout:
                return depths, unsent, time.monotonic() - started
            await asyncio.sleep(0.5)

    def log_errors(self) -> dict[str, int]:
        """Lines logged at ERROR or above (or tracebacks) by each service so far."""
        found = {}
        for name, service in self.services.items():
            text = service.log_path.read_text(errors="replace") if service.log_path.exists() else ""
            found[name] = sum(
                1
                for line in text.splitlines()
                if '"level": "ERROR"' in line or '"level": "CRITICAL"' in line or line.startswith("Traceback")
            )
        return found


class QueueWatch:
    """Samples the services' queue depths every few seconds, to show backlog building during a phase."""

    def __init__(self, platform: Platform, every: float = 5.0) -> None:
        self.platform, self.every = platform, every
        self.max_total = 0
        self.samples: list[tuple[float, int]] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    def reset(self) -> None:
        self.max_total, self.samples = 0, []

    async def stop(self) -> None:
        await stop_task(self._task)

    async def _run(self) -> None:
        started = time.monotonic()
        while True:
            try:
                total = sum((await self.platform.queue_depths()).values())
            except Exception as exc:  # a sampling hiccup must not end the run
                progress(f"queue sampling failed: {exc!r}")
            else:
                self.max_total = max(self.max_total, total)
                self.samples.append((time.monotonic() - started, total))
            await asyncio.sleep(self.every)


class Maintenance:
    """What autovacuum does on a production server, for a server that has it off.

    Without VACUUM and ANALYZE the outbox (every row updated once when published) fills with dead rows,
    and statements prepared while the tables were empty keep their first plans: in a 20-minute hold the
    relay's pending-rows query was read as a sequential scan of the whole outbox, 4 times a second. A
    measurement of the platform, not of a server misconfigured for it, runs `VACUUM (ANALYZE)` on the
    bench's databases every `every` seconds when `autovacuum` is off; the result records that it did.
    """

    def __init__(self, databases: dict[str, str], every: float) -> None:
        self.databases, self.every = databases, every
        self.runs = 0
        self.seconds = 0.0
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> bool:
        """Start if the server needs it; returns whether it does."""
        if self.every <= 0:
            return False
        dsn = asyncpg_dsn(next(iter(self.databases.values())))
        if (await server_settings(dsn, ["autovacuum"]))["autovacuum"] == "on":
            return False
        self._task = asyncio.create_task(self._run())
        return True

    async def stop(self) -> None:
        await stop_task(self._task)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.every)
            started = time.monotonic()
            for url in self.databases.values():
                try:
                    connection = await asyncpg.connect(asyncpg_dsn(url), timeout=10)
                    try:
                        await connection.execute("VACUUM (ANALYZE)")
                    finally:
                        await connection.close()
                except Exception as exc:  # a missed round must not end the run
                    progress(f"VACUUM (ANALYZE) failed: {exc!r}")
            self.runs += 1
            self.seconds += time.monotonic() - started


async def start_platform(
    stack: AsyncExitStack, suffix: str, options: argparse.Namespace, log_dir: Path
) -> Platform:
    exchange, prefix = f"kefu-bench-load-{suffix}.events", f"kefu-bench-load-{suffix}"
    databases = {
        name: await stack.enter_async_context(scratch_database(f"kefu_bench_load_{suffix}_{name}"))
        for name in SERVICES
    }
    # The production defaults for what the harness tunes for fault tests (faster polling, longer retries).
    production = ServiceSettings()
    transport = AmqpTransport(
        AMQP_URL, exchange=exchange, queue_prefix=prefix, retry_delays_ms=production.retry_delays_ms
    )

    async def remove_topology() -> None:
        with contextlib.suppress(Exception):
            await transport.close()
        cleanup = AmqpTransport(
            AMQP_URL, exchange=exchange, queue_prefix=prefix, retry_delays_ms=production.retry_delays_ms
        )
        try:
            await cleanup.connect()
            for name in SERVICES:
                await cleanup.delete_topology(name)
        except Exception as exc:
            print(f"could not delete the bench's queues: {exc!r}", file=sys.stderr, flush=True)
        finally:
            await cleanup.close()
        await delete_amqp_objects(AMQP_URL, exchanges=[exchange])

    stack.push_async_callback(remove_topology)
    services = {}
    for name in SERVICES:
        env = service_env(
            name,
            databases,
            AMQP_URL,
            exchange,
            prefix,
            KEFU_OUTBOX_POLL_SECONDS=str(production.outbox_poll_seconds),
            KEFU_RETRY_DELAYS_MS=json.dumps(production.retry_delays_ms),
            KEFU_LOG_LEVEL=options.log_level,
            **{f"{name.upper()}_DB_POOL_SIZE": str(options.db_pool)},
        )
        services[name] = ServiceProcess(name, env, log_dir / f"{name}.log")

    async def stop_all() -> None:
        await asyncio.gather(*(s.stop() for s in services.values()))

    stack.push_async_callback(stop_all)
    # Consumers first, so their queues exist before the first event is published.
    await asyncio.gather(services["tickets"].start(), services["analytics"].start())
    await asyncio.gather(services["intake"].start(), services["briefs"].start())
    await transport.connect()
    return Platform(services, databases, transport)


# ------------------------------------------------------------------------------------------ phases


def verdict(result: dict[str, Any], rate: float, options: argparse.Namespace) -> list[str]:
    """Why a phase did not sustain its rate (empty when it did)."""
    why = []
    if result["errors"]:
        why.append(f"{result['errors']} errors {result['errors_by_kind']}")
    slow = {op: round(o["p99_ms"]) for op, o in result["ops"].items() if o["p99_ms"] >= options.p99_ms}
    if not result["p99_ms"] < options.p99_ms:
        why.append(f"p99 {result['p99_ms']:.0f} ms ≥ {options.p99_ms:g} ms (slowest operations {slow})")
    elif options.per_op_p99 and slow:
        why.append(f"operations with p99 ≥ {options.p99_ms:g} ms: {slow}")
    if result["journeys_done"] < result["journeys_started"]:
        why.append(f"{result['journeys_started'] - result['journeys_done']} journeys unfinished")
    if result["ticket_visible_lag_ms"]["p99"] > 1000 * options.max_lag_s:
        why.append(f"contact→ticket p99 {result['ticket_visible_lag_ms']['p99']:.0f} ms")
    if result["schedule_late_ms"]["p99"] > 50:
        why.append(f"load generator behind schedule (p99 {result['schedule_late_ms']['p99']:.0f} ms)")
    return why


async def measure(
    traffic: Traffic, platform: Platform, watch: QueueWatch, rate: float, seconds: float
) -> dict[str, Any]:
    handled_before = await platform.handler_times(traffic.http)
    cpu_before, meter = platform.cpu(), CpuMeter().start()
    watch.reset()
    rec, elapsed = await traffic.phase(rate, seconds)
    handled_after = await platform.handler_times(traffic.http)
    groups = meter.stop()
    cpu_after = platform.cpu()
    result = {"rate": rate, "seconds": elapsed, **rec.summary(elapsed)}
    result["queue_depth_max"] = watch.max_total
    result["handler_ms"] = {}
    for route, (count, total, fast) in sorted(handled_after.items()):
        before = handled_before.get(route, [0.0, 0.0, 0.0])
        n = count - before[0]
        if n > 0:
            result["handler_ms"][route] = {
                "count": n,
                "mean_ms": 1000 * (total - before[1]) / n,
                "over_200ms": n - (fast - before[2]),
            }
    limit = traffic.options.p99_ms
    result["slow_ops"] = {op: o["p99_ms"] for op, o in result["ops"].items() if o["p99_ms"] >= limit}
    used = {name: cpu_after[name] - cpu_before[name] for name in cpu_after}
    # PostgreSQL and RabbitMQ serve the machine's other work too: theirs is the whole server's CPU.
    result["cpu_cores"] = {name: seconds / elapsed for name, seconds in used.items()} | {
        "postgres_all": groups["postgres"],
        "rabbitmq_all": groups["rabbitmq"],
        "load_generator": groups["bench_process"],
    }
    # CPU per journey (with its share of metric reads) moves far less with the machine's other work
    # than latency does: the capacity of each service on a core of its own is 1000 / this.
    result["cpu_ms_per_journey"] = {
        name: 1000 * seconds / max(rec.journeys_started, 1) for name, seconds in used.items()
    }
    result["load_avg"] = load_average()
    return result


def describe(result: dict[str, Any]) -> str:
    return (
        f"{result['journeys_done']}/{result['journeys_started']} journeys, "
        f"{result['requests_per_s']:.0f} req/s, p50 {result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms "
        f"(worst op {result['worst_op_p99_ms']:.0f}), "
        f"errors {result['errors']}, contact→ticket p99 {result['ticket_visible_lag_ms']['p99']:.0f} ms, "
        f"queues ≤ {result['queue_depth_max']}, tickets CPU {result['cpu_cores']['tickets']:.2f} cores "
        f"({result['cpu_ms_per_journey']['tickets']:.0f} ms/journey), load {result['load_avg']}"
    )


async def search(
    traffic: Traffic, platform: Platform, watch: QueueWatch, options: argparse.Namespace
) -> tuple[float | None, list[dict[str, Any]]]:
    """Raise the rate by `factor` while steps pass, then try once between the best pass and the failure."""
    steps: list[dict[str, Any]] = []
    best: float | None = None
    failed: float | None = None
    rate = options.start_rate

    async def step(rate: float) -> bool:
        progress(f"step: {rate:.2f} journeys/s for {options.step_seconds:g}s")
        result = await measure(traffic, platform, watch, rate, options.step_seconds)
        result["why_not"] = verdict(result, rate, options)
        result["sustained"] = not result["why_not"]
        steps.append(result)
        progress(f"  {'pass' if result['sustained'] else 'FAIL'}: {describe(result)}")
        for reason in result["why_not"]:
            progress(f"  - {reason}")
        depths, unsent, took = await platform.drain(60)
        if any(depths.values()) or any(unsent.values()):
            progress(f"  not drained after {took:.0f}s: queues {depths}, outboxes {unsent}")
        return bool(result["sustained"])

    async def passes(rate: float) -> bool:
        # The machine is shared: a step spoilt by someone else's burst is tried again before it counts.
        for attempt in range(1 + options.retries):
            if attempt:
                progress(f"  trying {rate:.2f}/s again")
            if await step(rate):
                return True
        return False

    while rate <= options.max_rate:
        if await passes(rate):
            best = rate
            rate = round(rate * options.factor, 2)
        else:
            failed = rate
            break
    if best is None and failed is not None:
        # Even the first step failed: halve until one passes (a few times at most).
        rate = failed
        for _ in range(3):
            rate = round(rate / 2, 2)
            if await step(rate):
                best = rate
                break
    elif best is not None and failed is not None and failed / best > 1.15:
        between = round((best * failed) ** 0.5, 2)
        if await step(between):
            best = between
    return best, steps


async def hold(
    traffic: Traffic, platform: Platform, watch: QueueWatch, rate: float, options: argparse.Namespace
) -> dict[str, Any]:
    """The best rate for the full duration, with each service's memory sampled along the way."""
    rss_samples: list[dict[str, Any]] = []
    started = time.monotonic()

    async def sample_memory() -> None:
        while True:
            rss_samples.append({"t_s": time.monotonic() - started, **platform.rss()})
            await asyncio.sleep(options.rss_every)

    sampler = asyncio.create_task(sample_memory())
    try:
        progress(f"hold: {rate:.2f} journeys/s for {options.duration:g}s")
        result = await measure(traffic, platform, watch, rate, options.duration)
    finally:
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
    rss_samples.append({"t_s": time.monotonic() - started, **platform.rss()})
    result["why_not"] = verdict(result, rate, options)
    result["sustained"] = not result["why_not"]
    result["rss_samples_mb"] = rss_samples
    result["queue_samples"] = watch.samples
    progress(f"  {'held' if result['sustained'] else 'NOT held'}: {describe(result)}")
    for reason in result["why_not"]:
        progress(f"  - {reason}")
    return result


async def hold_highest(
    traffic: Traffic,
    platform: Platform,
    watch: QueueWatch,
    rate: float,
    steps: list[dict[str, Any]],
    options: argparse.Namespace,
) -> tuple[float, dict[str, Any], list[dict[str, Any]]]:
    """Hold `rate`; if it is not held, the next passing step down, up to `--hold-fallbacks` times.

    A 30-second step can pass at a rate the platform does not keep up for minutes (on a saturated machine
    latency creeps up). Returns the rate held last, its result and the holds that failed before it.
    """
    lower = sorted((s["rate"] for s in steps if s["sustained"] and s["rate"] < rate), reverse=True)
    failed: list[dict[str, Any]] = []
    while True:
        held = await hold(traffic, platform, watch, rate, options)
        if held["sustained"] or not lower or len(failed) >= options.hold_fallbacks:
            return rate, held, failed
        failed.append(held)
        rate = lower.pop(0)
        progress(f"not held for {options.duration:g}s; holding the next passing step down, {rate:g}/s")
        await platform.drain(60)


async def seed_customers(traffic: Traffic, count: int) -> None:
    """The customers the contacts come from, each with a product in warranty, known beforehand."""
    rec = Recorder()
    gate = asyncio.Semaphore(16)

    intake, agent = traffic.urls["intake"], traffic.agents[0]
    bought = (datetime.now(UTC) - timedelta(days=60)).date().isoformat()

    async def one(n: int) -> None:
        async with gate:
            body = {"name": f"客户{n}", "phones": [phone(n)]}
            created = await traffic.call(rec, "seed", "POST", f"{intake}/v1/customers", body, agent)
            if created is None:
                return
            purchase = {
                "product": "滚筒洗衣机",
                "model": "XQG100-14",
                "serial": serial(n),
                "purchased_at": bought,
                "warranty_months": 24,
            }
            url = f"{intake}/v1/customers/{created['id']}/purchases"
            await traffic.call(rec, "seed", "POST", url, purchase, agent)

    await asyncio.gather(*(one(n) for n in range(count)))
    if rec.errors:
        raise RuntimeError(f"seeding customers failed: {dict(rec.errors)} {rec.error_samples[:3]}")


async def run(options: argparse.Namespace) -> dict[str, Any]:
    cancel_on_sigterm()
    suffix = unique_suffix()
    log_dir = Path(tempfile.mkdtemp(prefix=f"kefu-bench-load-{suffix}-"))
    load_start = load_average()
    progress(f"load average {load_start}; service logs in {log_dir}")
    ok = False
    async with AsyncExitStack() as stack:
        platform = await start_platform(stack, suffix, options, log_dir)
        urls = {name: s.url for name, s in platform.services.items()}
        progress(f"services up: {', '.join(f'{n} pid {p}' for n, p in platform.pids().items())}")
        rss_ready = platform.rss()
        # Only now, so that the services started above are not confined with it.
        core = pin_to_last_core()
        progress(f"load generator on core {core}, load average {load_average()}")
        links = SurveyLinks()
        await links.start(AMQP_URL, platform.transport.exchange_name)
        stack.push_async_callback(links.close)
        watch = QueueWatch(platform)
        watch.start()
        stack.push_async_callback(watch.stop)
        maintenance = Maintenance(platform.databases, options.vacuum_every)
        if await maintenance.start():
            progress(f"autovacuum is off: VACUUM (ANALYZE) every {options.vacuum_every:g}s instead")
        stack.push_async_callback(maintenance.stop)
        # Idle connections are dropped before uvicorn's 5 s keep-alive ends: otherwise the server may
        # close one just as a request goes out on it, a transport error no real service fault caused.
        connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=3)
        http = await stack.enter_async_context(
            aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30))
        )
        traffic = Traffic(
            http,
            urls,
            links,
            options,
            agents=[bearer(f"agent-{i:02d}", "agent") for i in range(options.agents)],
            analyst=bearer("analyst", "analyst"),
        )
        progress(f"seeding {options.customers} customers")
        await seed_customers(traffic, options.customers)
        warm_rate = options.rate or options.start_rate
        progress(f"warm-up: {warm_rate:g} journeys/s for {options.warmup:g}s (not counted)")
        await traffic.phase(warm_rate, options.warmup)
        await platform.drain(60)

        steps: list[dict[str, Any]] = []
        if options.rate:
            rate: float | None = options.rate
        else:
            rate, steps = await search(traffic, platform, watch, options)
        if rate is None:
            rate = min(s["rate"] for s in steps)
            progress(f"no step sustained its rate; holding the lowest tried, {rate:g}/s")
        rate, held, failed_holds = await hold_highest(traffic, platform, watch, rate, steps, options)
        progress("draining")
        depths, unsent, drain_s = await platform.drain(options.drain)
        dead = {name: n for name, n in depths.items() if name.endswith(".dead")}
        progress(f"after {drain_s:.1f}s: queues {depths}, outboxes {unsent}")
        rss_drained = platform.rss()
        log_errors = platform.log_errors()
        ok = True

    if ok and not options.keep_logs:
        shutil.rmtree(log_dir, ignore_errors=True)
    return {
        "bench": "load",
        "rate": rate,
        "p99_ms": held["p99_ms"],
        "errors": held["errors"],
        # The hold's first and last memory samples: taken as it starts and as it ends.
        "rss_mb": {
            name: [held["rss_samples_mb"][0][name], held["rss_samples_mb"][-1][name]] for name in rss_ready
        },
        "queues_end": depths,
        "sustained": held["sustained"],
        "why_not": held["why_not"],
        "rate_unit": "journeys started per second (contact, ticket lookups, reply, resolve, survey)",
        "requests_per_s": held["requests_per_s"],
        "p50_ms": held["p50_ms"],
        "worst_op_p99_ms": held["worst_op_p99_ms"],
        "slow_ops": held["slow_ops"],
        "ops": held["ops"],
        "handler_ms": held["handler_ms"],
        "ticket_lag_ms": held["ticket_lag_ms"],
        "ticket_visible_lag_ms": held["ticket_visible_lag_ms"],
        "survey_lag_ms": held["survey_lag_ms"],
        "p99_ms_by_minute": held["p99_ms_by_minute"],
        "queue_depth_max_during_hold": held["queue_depth_max"],
        "dead_letters_end": sum(dead.values()),
        "outbox_unsent_end": unsent,
        "drain_s": drain_s,
        "rss_ready_mb": rss_ready,
        "rss_drained_mb": rss_drained,
        "cpu_cores": held["cpu_cores"],
        "cpu_ms_per_journey": held["cpu_ms_per_journey"],
        "service_log_errors": log_errors,
        "duration_s": held["seconds"],
        "search": [{k: v for k, v in s.items() if k not in ("ops", "error_samples")} for s in steps],
        "holds_not_held": [
            {k: v for k, v in h.items() if k not in ("ops", "error_samples", "queue_samples")}
            for h in failed_holds
        ],
        "hold": {k: v for k, v in held.items() if k not in ("ops",)},
        "postgres_maintenance": {
            "vacuum_analyze_every_s": options.vacuum_every if maintenance.runs else None,
            "runs": maintenance.runs,
            "seconds": maintenance.seconds,
        },
        "load_avg_start": load_start,
        "load_avg_end": load_average(),
        "load_generator_core": core,
        "settings": {
            "step_seconds": options.step_seconds,
            "think_s": options.think,
            "poll_s": options.poll,
            "reads_per_journey": options.reads_per_journey,
            "customers": options.customers,
            "agents": options.agents,
            "db_pool_size": options.db_pool,
            "log_level": options.log_level,
            "low_csat_share": options.low_csat_share,
            "rate_limit": RateLimitSettings().model_dump(),
            "criteria": {
                "p99_ms": options.p99_ms,
                "per_operation": options.per_op_p99,
                "max_lag_s": options.max_lag_s,
            },
        },
        "notes": (
            "four services as processes, one uvicorn worker each, on scratch PostgreSQL databases and a "
            "private exchange; open-loop aiohttp load generator pinned to the last core; each agent its own "
            "credential under the default write rate limit; RSS from /proc"
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--duration", type=float, default=300, help="seconds to hold the best rate")
    parser.add_argument("--rate", type=float, default=0, help="journeys/s to hold; skips the search")
    parser.add_argument(
        "--hold-fallbacks", type=int, default=2, help="lower passing steps to hold if a hold fails"
    )
    parser.add_argument("--start-rate", type=float, default=3)
    parser.add_argument("--factor", type=float, default=1.25, help="rate multiplier between passing steps")
    parser.add_argument("--max-rate", type=float, default=500)
    parser.add_argument("--retries", type=int, default=1, help="tries more of a failing step")
    parser.add_argument("--step-seconds", type=float, default=30)
    parser.add_argument("--warmup", type=float, default=10)
    parser.add_argument("--p99-ms", type=float, default=200)
    parser.add_argument(
        "--per-op-p99", action="store_true", help="require p99 < --p99-ms of every operation, not overall"
    )
    parser.add_argument("--max-lag-s", type=float, default=2.0, help="contact→ticket p99 a step may reach")
    parser.add_argument("--reads-per-journey", type=float, default=1.0, help="metric reads per journey")
    parser.add_argument("--think", type=float, default=0.5, help="seconds between a journey's steps")
    parser.add_argument("--poll", type=float, default=0.2, help="seconds between ticket lookups")
    parser.add_argument("--wait-timeout", type=float, default=30, help="longest wait for a ticket or survey")
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--agents", type=int, default=20)
    parser.add_argument("--low-csat-share", type=float, default=0.05)
    parser.add_argument("--db-pool", type=int, default=16, help="each service's connection pool")
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--rss-every", type=float, default=30)
    parser.add_argument("--drain", type=float, default=60, help="longest wait for queues to empty at the end")
    parser.add_argument("--keep-logs", action="store_true")
    parser.add_argument(
        "--vacuum-every",
        type=float,
        default=60,
        help="seconds between VACUUM (ANALYZE) of the bench's databases if autovacuum is off (0: never)",
    )
    options = parser.parse_args()
    result = rounded(asyncio.run(run(options)))
    full = options.duration >= 300
    save_result("load" if full else "load-quick", result)


if __name__ == "__main__":
    main()
