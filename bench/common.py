"""Helpers any Kefu benchmark can reuse: scratch databases, percentiles, CPU accounting, results files.

Nothing here knows about one benchmark in particular. Every helper cleans up after itself, also on
failure, and loops are bounded by count and by time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import secrets
import signal
import statistics
import sys
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar, cast

T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "bench" / "results"

PG_ADMIN_DSN = os.environ.get("KEFU_BENCH_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
AMQP_URL = os.environ.get(
    "KEFU_BENCH_AMQP_URL", os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
)

_started = time.monotonic()


# --------------------------------------------------------------------------------------------- output


def progress(message: str) -> None:
    """One progress line on stdout, stamped with seconds since start (the JSON result is the last line)."""
    print(f"[{time.monotonic() - _started:7.2f}s] {message}", flush=True)


def unique_suffix(nbytes: int = 4) -> str:
    return secrets.token_hex(nbytes)


def rounded(value: T, digits: int = 2) -> T:
    """Round floats (also inside dicts and lists) so the JSON line stays readable."""
    return cast(T, _rounded(value, digits))


def _rounded(value: Any, digits: int) -> Any:
    if isinstance(value, float):
        return round(value, digits)
    if isinstance(value, Mapping):
        return {k: _rounded(v, digits) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_rounded(v, digits) for v in value]
    return value


def save_result(name: str, result: Mapping[str, Any], *, results_dir: Path = RESULTS_DIR) -> Path:
    """Write `<name>.json` and a timestamped copy under bench/results/; print the JSON as the last line."""
    results_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps(result, separators=(", ", ": "))
    latest = results_dir / f"{name}.json"
    latest.write_text(text + "\n")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (results_dir / f"{name}-{stamp}.json").write_text(text + "\n")
    progress(f"saved {latest.relative_to(ROOT)} (and {name}-{stamp}.json)")
    print(text, flush=True)
    return latest


# ------------------------------------------------------------------------------------------ statistics


def percentiles(values: Iterable[float], points: Iterable[int] = (50, 90, 99)) -> dict[str, float]:
    """`{"p50": …, "p99": …, "max": …}` with the standard library's inclusive quantiles (n=100)."""
    data = sorted(values)
    if not data:
        return {f"p{p}": float("nan") for p in points} | {"max": float("nan"), "mean": float("nan")}
    # One sample has no spread: every percentile is that sample.
    cuts = [data[0]] * 99 if len(data) == 1 else statistics.quantiles(data, n=100, method="inclusive")
    out = {f"p{p}": cuts[p - 1] for p in points}
    out["max"] = data[-1]
    out["mean"] = statistics.fmean(data)
    return out


@dataclass
class Sections:
    """Time spent in named sections (sum, count); cheap enough to leave on while measuring."""

    totals: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, name: str, seconds: float, count: int = 1) -> None:
        self.totals[name] = self.totals.get(name, 0.0) + seconds
        self.counts[name] = self.counts.get(name, 0) + count

    def summary(self) -> dict[str, dict[str, float]]:
        return {
            name: {
                "total_s": total,
                "calls": self.counts[name],
                "mean_ms": 1000 * total / max(self.counts[name], 1),
            }
            for name, total in self.totals.items()
        }


class Budget:
    """A whole run's time limit, shared out between phases so that the run ends on time even when slow."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.started = time.monotonic()
        self.end = self.started + seconds

    def remaining(self) -> float:
        return self.end - time.monotonic()

    def share(self, cap: float, *, parts_left: int = 1, reserve: float = 0.0, floor: float = 2.0) -> float:
        """Seconds for the next phase: its fair part of what is left after `reserve`, at most `cap`."""
        return max(floor, min(cap, (self.remaining() - reserve) / max(parts_left, 1)))


# ---------------------------------------------------------------------------------------------- CPU


_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _process_groups() -> dict[str, float]:
    """CPU seconds so far, grouped: this process, PostgreSQL, RabbitMQ (Erlang VM), everything else."""
    me = os.getpid()
    groups = {"bench_process": 0.0, "postgres": 0.0, "rabbitmq": 0.0, "other": 0.0}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return groups
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                raw = handle.read().decode(errors="replace")
        except OSError:
            continue  # the process ended meanwhile
        close = raw.rfind(")")
        comm = raw[raw.find("(") + 1 : close]
        fields = raw[close + 2 :].split()
        seconds = (int(fields[11]) + int(fields[12])) / _CLK_TCK  # utime + stime
        if int(entry) == me:
            groups["bench_process"] += seconds
        elif comm.startswith("postgres") or comm.startswith("postmaster"):
            groups["postgres"] += seconds
        elif comm.startswith(("beam", "erl_child", "epmd", "inet_gethost")) or "rabbit" in comm:
            groups["rabbitmq"] += seconds
        else:
            groups["other"] += seconds
    return groups


def process_cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) one process has used so far; 0.0 if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            raw = handle.read().decode(errors="replace")
    except OSError:
        return 0.0
    fields = raw[raw.rfind(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def pin_to_last_core() -> int | None:
    """Keep this process (a load generator) on the machine's last core, leaving the others to the servers.

    Returns the core, or None where affinity cannot be set (one core, or no `sched_setaffinity`).
    """
    if not hasattr(os, "sched_setaffinity"):
        return None
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        return None
    os.sched_setaffinity(0, {cores[-1]})
    return cores[-1]


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages, rounded, to show how busy the machine was."""
    return [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else []


class CpuMeter:
    """CPU cores used per process group between `start()` and `stop()`.

    Approximate: processes that end in between are missed.
    """

    def __init__(self) -> None:
        self._wall = 0.0
        self._before: dict[str, float] = {}
        self.cores: dict[str, float] = {}

    def start(self) -> CpuMeter:
        self._wall = time.monotonic()
        self._before = _process_groups()
        return self

    def stop(self) -> dict[str, float]:
        wall = max(time.monotonic() - self._wall, 1e-9)
        after = _process_groups()
        self.cores = {k: max(after[k] - self._before.get(k, 0.0), 0.0) / wall for k in after}
        self.cores["machine_cores"] = float(os.cpu_count() or 1)
        return self.cores


# ------------------------------------------------------------------------------------------- asyncio


def install_loop(name: str) -> str:
    """Use uvloop (what uvicorn[standard] runs the services on) when asked for and available."""
    if name == "uvloop":
        try:
            import uvloop
        except ImportError:
            return "asyncio"
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        return "uvloop"
    return "asyncio"


def cancel_on_sigterm() -> None:
    """Make SIGTERM cancel the main task so `finally:` blocks clean up (SIGINT already does)."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    if task is None:
        return
    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGTERM, task.cancel)


async def stop_task(task: asyncio.Task[Any] | None) -> None:
    """Cancel a sampling or maintenance task and wait until it has ended."""
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def wait_until(predicate: Any, *, timeout: float, interval: float = 0.05) -> bool:
    """Poll `predicate()` until true or `timeout` seconds pass; returns whether it became true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(interval)
    return bool(predicate())


# -------------------------------------------------------------------------------------- PostgreSQL

_SAFE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


@contextlib.asynccontextmanager
async def scratch_database(name: str, *, admin_dsn: str = PG_ADMIN_DSN) -> AsyncIterator[str]:
    """Create a throw-away PostgreSQL database, yield its SQLAlchemy asyncpg URL, drop it afterwards.

    The database is dropped with FORCE (terminating stray connections) also when the body fails.
    """
    import asyncpg

    if not _SAFE_NAME.match(name):
        raise ValueError(f"unsafe database name {name!r}")
    admin = await asyncpg.connect(admin_dsn, timeout=10)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    base = admin_dsn.rsplit("/", 1)[0]
    try:
        yield base.replace("postgresql://", "postgresql+asyncpg://", 1) + f"/{name}"
    finally:
        try:
            admin = await asyncio.wait_for(asyncpg.connect(admin_dsn, timeout=10), 15)
            try:
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            finally:
                await admin.close()
            progress(f"dropped database {name}")
        except Exception as exc:  # report, but do not hide the body's own exception
            print(f"could not drop database {name}: {exc!r}", file=sys.stderr, flush=True)


async def server_settings(dsn: str, names: Iterable[str]) -> dict[str, str]:
    """A few `SHOW` values, to record the server configuration a result was measured with."""
    import asyncpg

    connection = await asyncpg.connect(dsn, timeout=10)
    try:
        return {name: str(await connection.fetchval(f"SHOW {name}")) for name in names}
    finally:
        await connection.close()


# ----------------------------------------------------------------------------------------- RabbitMQ


async def delete_amqp_objects(url: str, *, queues: Iterable[str] = (), exchanges: Iterable[str] = ()) -> None:
    """Delete queues and exchanges by name on a fresh connection (idempotent; errors are reported)."""
    import aio_pika

    try:
        connection = await aio_pika.connect(url, timeout=10)
    except Exception as exc:
        print(f"could not connect to delete AMQP objects: {exc!r}", file=sys.stderr, flush=True)
        return
    try:
        for queue in queues:
            try:
                async with connection.channel() as channel:
                    await channel.queue_delete(queue)
            except Exception as exc:
                print(f"could not delete queue {queue}: {exc!r}", file=sys.stderr, flush=True)
        for exchange in exchanges:
            try:
                async with connection.channel() as channel:
                    await channel.exchange_delete(exchange)
            except Exception as exc:
                print(f"could not delete exchange {exchange}: {exc!r}", file=sys.stderr, flush=True)
    finally:
        await connection.close()


async def broker_version(url: str) -> str:
    import aio_pika

    connection = await aio_pika.connect(url, timeout=10)
    try:
        props = connection.transport.connection.server_properties  # type: ignore[union-attr]
        version = props.get("version", b"?")
        return version.decode() if isinstance(version, bytes) else str(version)
    except Exception:
        return "unknown"
    finally:
        await connection.close()
