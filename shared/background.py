"""A service's background loops (the outbox relay, the timer scheduler, webhook deliveries), stopped between
passes rather than in the middle of one."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

log = logging.getLogger("kefu.background")


class BackgroundLoop:
    """Runs `body` as a task; `stop()` asks it to finish the pass in hand, and cancels only a laggard.

    A pass cancelled midway leaves its transaction to be unwound by the driver's and the pool's cancellation
    paths. On aiosqlite that means queueing a rollback or a close behind a statement still running on the
    connection's thread, and a second cancellation can then leave the task waiting on a result that never
    comes: shutdown hangs. Between passes there is nothing to unwind.

    `body` runs `while loop.next_pass():` and sleeps on `wake`, which `stop()` sets so that a sleeping loop
    notices at once.
    """

    def __init__(self, name: str, wake: asyncio.Event, *, grace_seconds: float = 5.0) -> None:
        self.name = name
        self.wake = wake
        self.grace_seconds = grace_seconds
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    @property
    def stopping(self) -> bool:
        return self._stopping

    def next_pass(self) -> bool:
        """Clear `wake`, then say whether to run another pass. In that order: a wake-up (a commit, or a
        stop) that lands during the pass still cuts the sleep after it short."""
        self.wake.clear()
        return not self._stopping

    def start(self, body: Callable[[], Coroutine[Any, Any, None]]) -> None:
        self._stopping = False
        self._task = asyncio.create_task(body(), name=self.name)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping = True
        self.wake.set()
        done, _ = await asyncio.wait({task}, timeout=self.grace_seconds)
        if not done:
            log.warning("%s: a pass outlasted %ss; cancelling it", self.name, self.grace_seconds)
            task.cancel()
        await asyncio.gather(task, return_exceptions=True)
