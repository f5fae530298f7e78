"""POST /v1/contacts on PostgreSQL against a minimal raw endpoint: throughput and latency.

Both servers run as separate processes with one uvicorn worker on this machine's PostgreSQL; intake also
publishes its events to RabbitMQ (a private exchange with a sink queue). The raw endpoint is FastAPI +
asyncpg doing the least the same request needs: one contact insert and one outbox insert in a transaction.
Phase 1 measures the highest rate each sustains (closed loop); phase 2 measures latency at a steady
200 requests/s (open loop, scheduled by absolute time so a slow response never delays the next request).
The load generator keeps to the machine's last core, so it cannot starve the servers of more than one,
and every phase records each server's CPU time per request: on a shared, busy machine that moves far
less than the request rates do, and the load averages say how busy it was.

    .venv/bin/python bench/contacts.py            # full run, about 1.5 minutes
    .venv/bin/python bench/contacts.py --quick
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import time
import uuid
from contextlib import AsyncExitStack, suppress
from pathlib import Path
from typing import Any

import aiohttp
import httpx
from pydantic import BaseModel

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    AMQP_URL,
    ROOT,
    delete_amqp_objects,
    load_average,
    percentiles,
    pin_to_last_core,
    process_cpu_seconds,
    progress,
    rounded,
    save_result,
    scratch_database,
    unique_suffix,
)
from shared.auth import issue_token
from shared.settings import ServiceSettings

SUBJECTS = [
    "洗衣机漏水",
    "冰箱不制冷",
    "投诉快递员态度差",
    "空调遥控器失灵",
    "请问保修期多久",
    "热水器打不着火",
]
BODIES = [
    "上个月在官方旗舰店买的滚筒洗衣机,最近每次洗衣服底部都会漏水,地板都泡了,麻烦尽快安排师傅上门看看。",
    "冰箱冷藏室温度一直降不下来,食物都放坏了,已经重启过两次也没用,请问是不是压缩机的问题?",
    "快递员送货时态度非常恶劣,还把包装箱摔坏了,我要求你们给个说法。",
    "请问这款空调的保修是整机一年还是压缩机十年?发票丢了还能保修吗?",
]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def phone(n: int) -> str:
    return f"139{n:08d}"


def contact_payload(rng: random.Random, customers: int) -> dict[str, Any]:
    n = rng.randrange(customers)
    # The same customer written the way people type it: the service must normalise before matching.
    written = rng.choice(
        [
            phone(n),
            f"+86 {phone(n)[:3]} {phone(n)[3:7]} {phone(n)[7:]}",
            f"{phone(n)[:3]}-{phone(n)[3:7]}-{phone(n)[7:]}",
        ]
    )
    return {
        "channel": rng.choice(["phone", "chat", "email", "web"]),
        "customer": {"phone": written, "name": "客户"},
        "subject": rng.choice(SUBJECTS),
        "body": rng.choice(BODIES),
    }


# ------------------------------------------------------------------------------------------ raw server


class RawCustomer(BaseModel):
    phone: str
    name: str | None = None


class RawContact(BaseModel):
    channel: str
    customer: RawCustomer
    subject: str
    body: str


RAW_SCHEMA = """
CREATE TABLE IF NOT EXISTS contacts (
    id uuid PRIMARY KEY, phone text NOT NULL, channel text NOT NULL, subject text NOT NULL,
    body text NOT NULL,
    received_at timestamptz NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (
    seq bigserial PRIMARY KEY, event_id text UNIQUE NOT NULL, type text NOT NULL, payload bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(), published_at timestamptz);
"""


def serve_raw(port: int, dsn: str) -> None:
    """The baseline: FastAPI + asyncpg, one contact insert and one outbox insert in a transaction."""
    from contextlib import asynccontextmanager

    import asyncpg
    import uvicorn
    from fastapi import FastAPI

    pool: Any = None

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> Any:
        nonlocal pool
        pool = await asyncpg.create_pool(dsn, min_size=5, max_size=10)
        async with pool.acquire() as connection:
            await connection.execute(RAW_SCHEMA)
        yield
        await pool.close()

    app = FastAPI(lifespan=lifespan)

    @app.post("/raw/contacts", status_code=201)
    async def record(contact: RawContact) -> dict[str, str]:
        contact_id = uuid.uuid4()
        event = json.dumps(
            {"id": str(contact_id), "type": "raw.contact.received.v1", "data": contact.model_dump()}
        )
        async with pool.acquire() as connection, connection.transaction():
            await connection.execute(
                "INSERT INTO contacts (id, phone, channel, subject, body, received_at)"
                " VALUES ($1, $2, $3, $4, $5, now())",
                contact_id,
                contact.customer.phone,
                contact.channel,
                contact.subject,
                contact.body,
            )
            await connection.execute(
                "INSERT INTO outbox (event_id, type, payload) VALUES ($1, $2, $3)",
                str(contact_id),
                "raw.contact.received.v1",
                event.encode(),
            )
        return {"id": str(contact_id)}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


# ------------------------------------------------------------------------------------------- load


async def wait_ready(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as http:
        while time.monotonic() < deadline:
            with suppress(httpx.TransportError):
                if (await http.get(url)).status_code < 500:
                    return
            await asyncio.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


async def post(http: aiohttp.ClientSession, url: str, body: dict[str, Any], headers: dict[str, str]) -> int:
    async with http.post(url, json=body, headers=headers) as response:
        await response.read()
        return response.status


async def closed_loop(
    http: aiohttp.ClientSession,
    url: str,
    headers: dict[str, str],
    *,
    workers: int,
    seconds: float,
    customers: int,
) -> dict[str, Any]:
    """As fast as `workers` concurrent clients can go: the sustained rate."""
    done = errors = 0
    latencies: list[float] = []
    end = time.monotonic() + seconds

    async def worker(seed: int) -> None:
        nonlocal done, errors
        rng = random.Random(seed)
        while time.monotonic() < end:
            started = time.perf_counter()
            status = await post(http, url, contact_payload(rng, customers), headers)
            latencies.append(time.perf_counter() - started)
            if status == 201:
                done += 1
            else:
                errors += 1

    started = time.monotonic()
    await asyncio.gather(*(worker(i) for i in range(workers)))
    elapsed = time.monotonic() - started
    return {
        "req_per_s": done / elapsed,
        "errors": errors,
        "requests": done,
        **{k + "_ms": v * 1000 for k, v in percentiles(latencies).items()},
    }


async def open_loop(
    http: aiohttp.ClientSession,
    url: str,
    headers: dict[str, str],
    *,
    rate: float,
    seconds: float,
    customers: int,
) -> dict[str, Any]:
    """A steady `rate` of requests, each sent on schedule whatever the previous ones are doing."""
    rng = random.Random(7)
    latencies: list[float] = []
    errors = 0

    async def one(payload: dict[str, Any]) -> None:
        nonlocal errors
        started = time.perf_counter()
        try:
            ok = await post(http, url, payload, headers) == 201
        except aiohttp.ClientError:
            ok = False
        latencies.append(time.perf_counter() - started)
        errors += not ok

    tasks = []
    start = time.monotonic()
    total = int(rate * seconds)
    for i in range(total):
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(contact_payload(rng, customers))))
    await asyncio.gather(*tasks)
    achieved = total / (time.monotonic() - start)
    return {
        "rate": rate,
        "achieved_rate": achieved,
        "errors": errors,
        "requests": total,
        **{k + "_ms": v * 1000 for k, v in percentiles(latencies).items()},
    }


async def measured(pid: int, phase: Any) -> dict[str, Any]:
    """Run one load phase and add the server's CPU time per request answered (201 or not)."""
    before = process_cpu_seconds(pid)
    result: dict[str, Any] = await phase
    answered = result["requests"] + (result["errors"] if "rate" not in result else 0)
    result["server_cpu_ms_per_req"] = 1000 * (process_cpu_seconds(pid) - before) / max(answered, 1)
    result["load_avg"] = load_average()
    return result


def start_process(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(args, cwd=ROOT, env={**os.environ, **env}, stdout=subprocess.DEVNULL)


async def declare_sink(exchange: str, sink: str) -> None:
    """A queue for everything on the bench's exchange, so intake's events are routable as in production."""
    import aio_pika

    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        events = await channel.declare_exchange(exchange, aio_pika.ExchangeType.TOPIC, durable=True)
        queue = await channel.declare_queue(sink, durable=True, arguments={"x-queue-type": "quorum"})
        await queue.bind(events, "#")


async def run(options: argparse.Namespace) -> dict[str, Any]:
    suffix = unique_suffix()
    exchange, prefix = f"kefu-bench-{suffix}.events", f"kefu-bench-{suffix}"
    sink = f"{prefix}.sink"
    secret = ServiceSettings.for_service("kefu").jwt_secret
    headers = {"Authorization": f"Bearer {issue_token(secret=secret, subject='bench', roles=['agent'])}"}
    processes: list[subprocess.Popen[bytes]] = []
    async with AsyncExitStack() as stack:
        intake_db = await stack.enter_async_context(scratch_database(f"kefu_bench_contacts_{suffix}"))
        raw_db = await stack.enter_async_context(scratch_database(f"kefu_bench_raw_{suffix}"))
        # intake consumes other systems' events, so it declares its own queues on the bench's exchange too.
        intake_queues = [
            f"{prefix}.intake",
            f"{prefix}.intake.dead",
            *(f"{prefix}.intake.retry.{n}" for n in (1, 2, 3)),
        ]
        stack.push_async_callback(
            delete_amqp_objects, AMQP_URL, queues=[sink, *intake_queues], exchanges=[exchange]
        )
        await declare_sink(exchange, sink)

        def stop_all() -> None:
            for process in processes:
                process.terminate()
            for process in processes:
                with suppress(subprocess.TimeoutExpired):
                    process.wait(10)

        stack.callback(stop_all)
        intake_port, raw_port = free_port(), free_port()
        processes.append(
            start_process(
                [sys.executable, "-m", "services.intake", "--port", str(intake_port)],
                {
                    "INTAKE_DATABASE_URL": intake_db,
                    "AMQP_URL": AMQP_URL,
                    "KEFU_EXCHANGE": exchange,
                    "KEFU_QUEUE_PREFIX": prefix,
                    "KEFU_LOG_LEVEL": "WARNING",
                },
            )
        )
        processes.append(
            start_process(
                [
                    sys.executable,
                    __file__,
                    "--serve-raw",
                    "--port",
                    str(raw_port),
                    "--dsn",
                    raw_db.replace("postgresql+asyncpg://", "postgresql://"),
                ],
                {},
            )
        )
        intake_url, raw_url = f"http://127.0.0.1:{intake_port}", f"http://127.0.0.1:{raw_port}"
        await wait_ready(f"{intake_url}/readyz")
        await wait_ready(f"{raw_url}/docs")
        progress(f"intake on :{intake_port}, raw endpoint on :{raw_port}")
        # Only now, so that the servers started above are not confined with it.
        load_core = pin_to_last_core()
        progress(f"load generator on core {load_core}, load average {load_average()}")
        load_before = load_average()
        pids = {"intake": processes[0].pid, "raw": processes[1].pid}

        # aiohttp, not httpx, drives the load: httpx spends ~4 ms of CPU per request here, so the client
        # and not the servers would set the pace on a 2-core machine.
        connector = aiohttp.TCPConnector(limit=max(options.workers * 2, int(options.rate)))
        async with aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=30)
        ) as http:
            progress(f"seeding {options.customers} customers")
            sem = asyncio.Semaphore(16)

            async def seed(n: int) -> None:
                async with sem:
                    body = {"name": f"客户{n}", "phones": [phone(n)]}
                    status = await post(http, f"{intake_url}/v1/customers", body, headers)
                    if status != 201:
                        raise RuntimeError(f"seeding a customer answered {status}")

            await asyncio.gather(*(seed(n) for n in range(options.customers)))
            # Warm both servers (connection pools, caches) before measuring.
            for url in (f"{intake_url}/v1/contacts", f"{raw_url}/raw/contacts"):
                await closed_loop(http, url, headers, workers=4, seconds=2, customers=options.customers)

            results: dict[str, Any] = {}
            for name, url in (("intake", f"{intake_url}/v1/contacts"), ("raw", f"{raw_url}/raw/contacts")):
                progress(f"{name}: closed loop, {options.workers} clients, {options.seconds}s")
                results[f"{name}_max"] = await measured(
                    pids[name],
                    closed_loop(
                        http,
                        url,
                        headers,
                        workers=options.workers,
                        seconds=options.seconds,
                        customers=options.customers,
                    ),
                )
                done = results[f"{name}_max"]
                progress(
                    f"{name}: {done['req_per_s']:.0f} req/s, "
                    f"{done['server_cpu_ms_per_req']:.2f} ms server CPU per request, load {done['load_avg']}"
                )
            for name, url in (("intake", f"{intake_url}/v1/contacts"), ("raw", f"{raw_url}/raw/contacts")):
                progress(f"{name}: open loop at {options.rate}/s for {options.seconds}s")
                results[f"{name}_steady"] = await measured(
                    pids[name],
                    open_loop(
                        http,
                        url,
                        headers,
                        rate=options.rate,
                        seconds=options.seconds,
                        customers=options.customers,
                    ),
                )
                steady = results[f"{name}_steady"]
                progress(f"{name}: p50 {steady['p50_ms']:.1f} ms, p99 {steady['p99_ms']:.1f} ms")

    return summary(results, options, load_before=load_before, load_core=load_core)


def summary(
    results: dict[str, Any], options: argparse.Namespace, *, load_before: list[float], load_core: int | None
) -> dict[str, Any]:
    intake_max, raw_max = results["intake_max"]["req_per_s"], results["raw_max"]["req_per_s"]
    intake_cpu = results["intake_max"]["server_cpu_ms_per_req"]
    raw_cpu = results["raw_max"]["server_cpu_ms_per_req"]
    return {
        "bench": "contacts",
        "req_per_s": intake_max,
        "raw_req_per_s": raw_max,
        "ratio": intake_max / raw_max if raw_max else None,
        "p50_ms": results["intake_steady"]["p50_ms"],
        "p99_ms": results["intake_steady"]["p99_ms"],
        "steady_rate": options.rate,
        "raw_p99_ms": results["raw_steady"]["p99_ms"],
        "steady_achieved_rate": results["intake_steady"]["achieved_rate"],
        # The same comparison in server CPU per request, which the machine's other work moves much less.
        "cpu_ms_per_req": intake_cpu,
        "raw_cpu_ms_per_req": raw_cpu,
        "cpu_ratio": raw_cpu / intake_cpu if intake_cpu else None,
        "load_avg_before": load_before,
        "load_avg_after": load_average(),
        "load_generator_core": load_core,
        "errors": sum(r["errors"] for r in results.values()),
        "customers": options.customers,
        "workers": options.workers,
        "seconds": options.seconds,
        "detail": results,
        "targets": {"ratio": 0.6, "p99_ms": 50},
        "notes": (
            "one uvicorn worker each; aiohttp load generator pinned to the last core; intake publishes "
            "events; server CPU from /proc, per request answered"
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter phases, fewer customers")
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--serve-raw", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--dsn", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.serve_raw:
        serve_raw(options.port, options.dsn)
        return
    if options.quick:
        options.seconds, options.customers = 5, 200
    save_result("contacts", rounded(asyncio.run(run(options))))


if __name__ == "__main__":
    main()
