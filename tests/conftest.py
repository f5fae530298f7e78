"""Fixtures every suite uses: dev tokens, the embedded platform on SQLite, polling helpers."""

from __future__ import annotations

import asyncio
import inspect
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

import shared.contracts  # noqa: F401
from services.platform import Platform, create_platform
from shared.auth import issue_token
from shared.settings import ServiceSettings

T = TypeVar("T")

SHUTDOWN_SECONDS = 30
SECRET = ServiceSettings.for_service("kefu").jwt_secret


def bearer(*roles: str, sub: str = "alice") -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(secret=SECRET, subject=sub, roles=roles)}"}


AGENT = bearer("agent")
ADMIN = bearer("admin", sub="root")


async def eventually(
    probe: Callable[[], Awaitable[T | None] | T | None], *, timeout: float = 10.0, every: float = 0.02
) -> T:
    """Poll `probe` until it returns something truthy; fail with the last value after `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last: Any = None
    while loop.time() < deadline:
        last = probe()
        if inspect.isawaitable(last):
            last = await last
        if last:
            return last
        await asyncio.sleep(every)
    raise AssertionError(f"condition not met within {timeout}s; last value {last!r}")


@pytest.fixture
async def platform(tmp_path: Path) -> AsyncIterator[Platform]:
    """The embedded platform: four apps, SQLite files in a temp dir, the in-process bus, fast retries."""
    app = create_platform(data_dir=tmp_path, retry_delays_ms=[10, 20, 40], outbox_poll_seconds=0.05)
    lifespan = app.lifespan()
    await lifespan.__aenter__()
    try:
        yield app
    finally:
        # A shutdown that never ends is a bug worth a clear failure, not a CI run that times out.
        try:
            async with asyncio.timeout(SHUTDOWN_SECONDS):
                await lifespan.__aexit__(None, None, None)
        except TimeoutError:
            for task in asyncio.all_tasks():
                task.print_stack(file=sys.stderr)
            raise AssertionError(f"the platform did not shut down within {SHUTDOWN_SECONDS}s") from None
        await _end_connection_closers()


async def _end_connection_closers(rounds: int = 10) -> None:
    """End what is left of the SQLite connections' closing once the platform has stopped.

    A background loop cancelled in the middle of a statement has its connection invalidated, and
    SQLAlchemy closes an invalidated aiosqlite connection in a shielded task of its own. When aiosqlite's
    worker thread has already been told to stop, that close can wait on a future the thread will never
    resolve; the event loop's teardown cancels each task once and then waits for it, forever (seen as a
    300 s teardown in the full suite). Cancelling again until they are gone ends them.
    """
    current = asyncio.current_task()
    for _ in range(rounds):
        closers = [
            task
            for task in asyncio.all_tasks()
            if task is not current and not task.done() and "_terminate_graceful_close" in repr(task)
        ]
        if not closers:
            return
        for task in closers:
            task.cancel()
        await asyncio.wait(closers, timeout=0.2)


@pytest.fixture
async def client(platform: Platform) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=platform), base_url="http://kefu") as http:
        yield http


def contact_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "channel": "phone",
        "customer": {"name": "张伟", "phone": "138-0013-8000"},
        "subject": "洗衣机漏水",
        "body": "上个月买的滚筒洗衣机一直漏水,请尽快派人上门维修。",
        "kind": "repair",
    }
    body.update(overrides)
    return body
