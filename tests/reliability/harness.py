"""The distributed platform as separate OS processes, a steady load of contacts, and the end-state audit.

Every fault test follows the same shape: start the four services (each its own process, database and broker
connection), run a load of contacts through them, inflict the fault, then `settle()` until the platform is
quiet and check that nothing was lost and nothing happened twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import signal
import socket
import sys
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
import asyncpg
import httpx

from services.catalogue import SERVICES
from shared.auth import issue_token
from shared.bus.amqp import AmqpTransport
from shared.settings import ServiceSettings
from tests.integration.conftest import Broker
from tests.integration.proxy import CuttableProxy

log = logging.getLogger("kefu.reliability")

ROOT = Path(__file__).resolve().parents[2]
SECRET = ServiceSettings.for_service("kefu").jwt_secret
ADMIN = {"Authorization": f"Bearer {issue_token(secret=SECRET, subject='reliability', roles=['admin'])}"}


# The services that consume events, and so own queues (briefs only publishes).
CONSUMERS = [name for name, entry in SERVICES.items() if (h := entry.definition.handlers) and h.by_type]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def asyncpg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


@dataclass
class ServiceProcess:
    """One service in its own process: `python -m services.<name>`, or a wrapper that injects a fault."""

    name: str
    env: dict[str, str]
    log_path: Path
    module: str = ""
    port: int = field(default_factory=free_port)
    process: asyncio.subprocess.Process | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, *, module: str | None = None, ready: bool = True) -> None:
        """Run `python -m services.<name>`, or `python -m <module> <name>` for a fault-injecting wrapper."""
        target = module or self.module
        args = [target, self.name] if target else [f"services.{self.name}"]
        with self.log_path.open("ab") as output:
            output.write(f"\n--- start {self.starts + 1}: python -m {' '.join(args)}\n".encode())
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                *args,
                "--port",
                str(self.port),
                env=self.env,
                cwd=ROOT,
                stdout=output,
                stderr=asyncio.subprocess.STDOUT,
            )
        self.starts += 1
        if ready:
            await self.wait_ready()
        log.info("%s started (pid %s, port %s)", self.name, self.process.pid, self.port)

    async def wait_ready(self, timeout: float = 60) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        last = "no answer"
        async with httpx.AsyncClient(timeout=5) as http:
            while loop.time() < deadline:
                if self.process is not None and self.process.returncode is not None:
                    raise AssertionError(f"{self.name} exited with {self.process.returncode}; {self.tail()}")
                try:
                    response = await http.get(f"{self.url}/readyz")
                    if response.status_code == 200:
                        return
                    last = f"{response.status_code} {response.text}"
                except httpx.TransportError as exc:
                    last = repr(exc)
                await asyncio.sleep(0.2)
        raise AssertionError(f"{self.name} not ready after {timeout}s (last: {last}); {self.tail()}")

    async def kill(self) -> None:
        """SIGKILL: no shutdown hooks, no flushing — what a crash or an OOM kill looks like."""
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGKILL)
            await self.process.wait()
            log.info("%s killed", self.name)

    async def exited(self, timeout: float) -> int:
        assert self.process is not None
        return await asyncio.wait_for(self.process.wait(), timeout)

    async def stop(self) -> None:
        if self.process is None or self.process.returncode is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.process.wait(), 30)
        except TimeoutError:
            await self.kill()

    def tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "log tail:\n" + "\n".join(text.splitlines()[-lines:])


@dataclass
class Distributed:
    """The four services as processes on one private exchange and four scratch PostgreSQL databases."""

    databases: dict[str, str]
    broker: Broker
    transport: AmqpTransport
    services: dict[str, ServiceProcess]
    loads: list[ContactLoad] = field(default_factory=list)

    def __getitem__(self, name: str) -> ServiceProcess:
        return self.services[name]

    def load(self, rate: float) -> ContactLoad:
        """Start a steady load of contacts on intake; the fixture abandons it if the test fails."""
        load = ContactLoad(self.services["intake"].url, rate)
        load.start()
        self.loads.append(load)
        return load

    def replica(self, name: str, log_dir: Path) -> ServiceProcess:
        """Another process of the same service: same database, same queue, its own port."""
        original = self.services[name]
        return ServiceProcess(name, dict(original.env), log_dir / f"{name}-replica.log", original.module)

    async def query(self, service: str, sql: str, *args: Any) -> list[asyncpg.Record]:
        connection = await asyncpg.connect(asyncpg_dsn(self.databases[service]))
        try:
            return await connection.fetch(sql, *args)
        finally:
            await connection.close()

    async def scalar(self, service: str, sql: str, *args: Any) -> Any:
        rows = await self.query(service, sql, *args)
        return rows[0][0]


def service_env(
    name: str, databases: dict[str, str], amqp_url: str, exchange: str, prefix: str, **extra: str
) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("KEFU_", "INTAKE_", "TICKETS_", "BRIEFS_", "ANALYTICS_"))
    }
    env.update(
        {
            f"{name.upper()}_DATABASE_URL": databases[name],
            "AMQP_URL": amqp_url,
            "KEFU_EXCHANGE": exchange,
            "KEFU_QUEUE_PREFIX": prefix,
            "KEFU_OUTBOX_POLL_SECONDS": "0.5",
            # Long enough to ride out a broker or database restart; an event only dies after ~40 s of failing.
            "KEFU_RETRY_DELAYS_MS": "[500,2000,8000,30000]",
            "KEFU_LOG_LEVEL": "INFO",
            # Four services, replicas and restarts share one PostgreSQL whose connection slots are few;
            # handlers in flight stay below the pool (12) so requests and readiness probes find a connection.
            f"{name.upper()}_DB_POOL_SIZE": "12",
            "KEFU_CONSUMER_CONCURRENCY": "8",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra)
    return env


# --- load -------------------------------------------------------------------------------------------

SUBJECTS = [
    ("complaint", "投诉:客服电话一直打不通", "我已经打了三天电话都没人接,非常不满意,要求给个说法。"),
    ("repair", "空调不制冷", "家里的空调开机后不制冷,外机有异响,请安排师傅上门维修。"),
    ("inquiry", "咨询保修期", "请问我去年买的冰箱还在保修期内吗?需要带什么凭证?"),
]


MAX_IN_FLIGHT = 32


@dataclass
class ContactLoad:
    """Contacts posted at a steady rate; each one retried with its Idempotency-Key until intake accepts it.

    Retrying with the same key is what a careful client does when a request dies with the server: if the
    first attempt committed, the retry returns that contact instead of recording a second one.
    """

    base_url: str
    rate: float
    customers: int = 40
    accepted: dict[str, str] = field(default_factory=dict)  # idempotency key -> contact id
    failures: Counter[str] = field(default_factory=Counter)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _pending: set[asyncio.Task[None]] = field(default_factory=set)
    _runner: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._runner = asyncio.create_task(self._run())

    def cancel(self) -> None:
        """Abandon the load (a failed test): no retries outlive it."""
        self._stop.set()
        for task in [*self._pending, *([self._runner] if self._runner else [])]:
            task.cancel()

    async def stop(self, timeout: float = 120) -> None:
        """Stop sending new contacts and wait until every one already begun has been accepted."""
        self._stop.set()
        if self._runner is not None:
            done, _ = await asyncio.wait({self._runner}, timeout=timeout)
            assert done, f"{len(self._pending)} contacts were never accepted; failures {dict(self.failures)}"
            self._runner.result()

    async def _run(self) -> None:
        # Contacts in flight are bounded: while a service is down or slow the load waits for a slot instead
        # of piling up requests whose bookkeeping would end up costing the test process more than the
        # services under test (a saturated machine then slows the load rather than the other way round).
        limits = httpx.Limits(max_connections=MAX_IN_FLIGHT, max_keepalive_connections=MAX_IN_FLIGHT)
        slots = asyncio.Semaphore(MAX_IN_FLIGHT)
        async with httpx.AsyncClient(
            base_url=self.base_url, headers=ADMIN, timeout=10, limits=limits
        ) as http:
            loop = asyncio.get_running_loop()
            started = loop.time()
            sent = 0
            while not self._stop.is_set():
                sent += 1
                await slots.acquire()
                task = asyncio.create_task(self._one(http, sent))
                self._pending.add(task)
                task.add_done_callback(self._pending.discard)
                task.add_done_callback(lambda _: slots.release())
                delay = started + sent / self.rate - loop.time()
                if delay > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stop.wait(), delay)
            if self._pending:
                await asyncio.wait(set(self._pending))

    async def _one(self, http: httpx.AsyncClient, n: int) -> None:
        kind, subject, body = SUBJECTS[n % len(SUBJECTS)]
        phone = f"1390000{n % self.customers:04d}"
        payload = {
            "channel": "phone",
            "customer": {"name": f"客户{n % self.customers}", "phone": phone},
            "subject": subject,
            "body": body,
            "kind": kind,
        }
        key = uuid.uuid4().hex
        backoff = 0.1
        while True:
            try:
                response = await http.post("/v1/contacts", json=payload, headers={"Idempotency-Key": key})
            except httpx.TransportError as exc:
                self.failures[type(exc).__name__] += 1
            else:
                if response.status_code == 201:
                    self.accepted[key] = response.json()["id"]
                    return
                # 409 (a concurrent first contact took the phone), 503 (a dependency down): retry as a
                # client would. Anything else is a bug the audit will report.
                self.failures[f"HTTP {response.status_code}"] += 1
                if response.status_code not in (409, 429, 503, 500, 502, 504):
                    raise AssertionError(f"contact rejected: {response.status_code} {response.text}")
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 2.0)

    @property
    def contact_ids(self) -> set[str]:
        return set(self.accepted.values())


# --- audit ------------------------------------------------------------------------------------------


@dataclass
class Audit:
    contacts_accepted: int
    contacts_recorded: int
    contacts_missing: int
    tickets: int
    contacts_without_ticket: int
    duplicate_tickets: int
    analytics_tickets: int
    analytics_duplicates: int
    outbox_unsent: dict[str, int]
    queue_depths: dict[str, int]
    dead_letters: dict[str, list[str]]
    dead_expected: int = 0

    @property
    def clean(self) -> bool:
        return (
            self.contacts_missing == 0
            and self.contacts_recorded == self.contacts_accepted
            and self.contacts_without_ticket == 0
            and self.duplicate_tickets == 0
            and self.tickets == self.contacts_accepted
            and self.analytics_tickets == self.tickets
            and self.analytics_duplicates == 0
            and not any(self.outbox_unsent.values())
            and not any(self.queue_depths.values())
            and sum(len(v) for v in self.dead_letters.values()) == self.dead_expected
        )

    def summary(self) -> dict[str, Any]:
        return {
            "contacts": self.contacts_accepted,
            "tickets": self.tickets,
            "analytics_tickets": self.analytics_tickets,
            "lost": self.contacts_missing + self.contacts_without_ticket,
            "duplicates": self.duplicate_tickets + self.analytics_duplicates,
            "unsent_in_outboxes": sum(self.outbox_unsent.values()),
            "queued": sum(self.queue_depths.values()),
            "dead_letters": sum(len(v) for v in self.dead_letters.values()),
        }


async def audit(platform: Distributed, load: ContactLoad, dead_expected: int = 0) -> Audit:
    accepted = load.contact_ids
    recorded = {str(r[0]) for r in await platform.query("intake", "SELECT id FROM contacts")}
    per_contact = await platform.query(
        "tickets", "SELECT contact_id, count(*) AS n FROM tickets WHERE contact_id IS NOT NULL GROUP BY 1"
    )
    ticketed = {str(r["contact_id"]): r["n"] for r in per_contact}
    facts = await platform.query(
        "analytics", "SELECT count(*) AS n, count(DISTINCT ticket_id) AS d FROM ticket_facts"
    )
    unsent = {
        name: await platform.scalar(name, "SELECT count(*) FROM outbox WHERE published_at IS NULL")
        for name in SERVICES
    }
    depths: dict[str, int] = {}
    dead: dict[str, list[str]] = {}
    for name in CONSUMERS:
        waiting = await platform.transport.queue_depths(name)
        # Dead letters are counted on their own, with their reasons.
        depths.update({queue: n for queue, n in waiting.items() if not queue.endswith(".dead")})
        dead[name] = [f"{d.routing_key}: {d.reason}" for d in await platform.transport.dead_letters(name)]
    return Audit(
        contacts_accepted=len(accepted),
        contacts_recorded=len(recorded),
        contacts_missing=len(accepted - recorded),
        tickets=sum(ticketed.values()),
        contacts_without_ticket=len(accepted - ticketed.keys()),
        duplicate_tickets=sum(n - 1 for n in ticketed.values() if n > 1),
        analytics_tickets=facts[0]["n"],
        analytics_duplicates=facts[0]["n"] - facts[0]["d"],
        outbox_unsent=unsent,
        queue_depths=depths,
        dead_letters=dead,
        dead_expected=dead_expected,
    )


async def settle(
    platform: Distributed, load: ContactLoad, timeout: float = 120, dead_expected: int = 0
) -> Audit:
    """Poll the audit until the platform is quiet and consistent, or fail with the last audit.

    `dead_expected`: dead letters the test put there on purpose (poison); any other one is a failure.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = await audit(platform, load, dead_expected)
        if result.clean:
            return result
        if loop.time() > deadline:
            raise AssertionError(f"not consistent after {timeout}s: {result}")
        log.info("settling: %s", result.summary())
        await asyncio.sleep(1)


@dataclass(frozen=True)
class DuringPartition:
    """What got through while a link was partitioned."""

    contacts_accepted: int
    tickets_opened: int
    client_failures: int


async def partitioned_run(
    platform: Distributed, proxy: CuttableProxy, *, rate: float, seconds: float
) -> tuple[DuringPartition, ContactLoad, Audit]:
    """Load at `rate`; 3 s in, partition `proxy` for `seconds` and heal it; finish the load and settle.

    What got through meanwhile is counted with tickets read straight from PostgreSQL, not through any
    proxy."""
    load = platform.load(rate)
    await asyncio.sleep(3)
    tickets_before = await platform.scalar("tickets", "SELECT count(*) FROM tickets")
    accepted_before = len(load.accepted)
    failures_before = sum(load.failures.values())
    proxy.partition()
    try:
        await asyncio.sleep(seconds)
        during = DuringPartition(
            contacts_accepted=len(load.accepted) - accepted_before,
            tickets_opened=await platform.scalar("tickets", "SELECT count(*) FROM tickets") - tickets_before,
            client_failures=sum(load.failures.values()) - failures_before,
        )
    finally:
        proxy.heal()
    await asyncio.sleep(5)
    await load.stop()
    return during, load, await settle(platform, load, timeout=180)


async def record_report(name: str, report: dict[str, Any]) -> None:
    """Each fault writes what it did and found to data/reliability/ (summarised in docs/reliability.md)."""
    out = ROOT / "data" / "reliability"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(report, indent=2, ensure_ascii=False, default=str) + "\n")
    print(json.dumps({"fault": name, **report}, ensure_ascii=False, default=str))


def shuffled(items: list[Any], seed: int = 7) -> list[Any]:
    copy = list(items)
    random.Random(seed).shuffle(copy)
    return copy


@dataclass
class Recorder:
    """A queue bound to every routing key of the exchange: what was published, copies included."""

    platform: Distributed
    connection: aio_pika.abc.AbstractConnection | None = None
    queue: aio_pika.abc.AbstractQueue | None = None
    received: list[aio_pika.abc.AbstractIncomingMessage] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.platform.transport.queue_prefix}.recorder"

    async def __aenter__(self) -> Recorder:
        self.connection = await aio_pika.connect(self.platform.transport.url)
        channel = await self.connection.channel()
        exchange = await channel.declare_exchange(
            self.platform.transport.exchange_name, aio_pika.ExchangeType.TOPIC, durable=True
        )
        self.queue = await channel.declare_queue(self.name, durable=True)
        await self.queue.bind(exchange, "#")
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.connection is not None
        channel = await self.connection.channel()
        await channel.queue_delete(self.name)
        await self.connection.close()

    async def collect(self) -> list[aio_pika.abc.AbstractIncomingMessage]:
        """Everything recorded so far, this drain included."""
        self.received.extend(await self.drain())
        return self.received

    async def drain(self) -> list[aio_pika.abc.AbstractIncomingMessage]:
        assert self.queue is not None
        messages = []
        while (message := await self.queue.get(no_ack=True, fail=False)) is not None:
            messages.append(message)
        return messages
