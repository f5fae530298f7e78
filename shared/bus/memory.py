"""In-process transport: the AMQP semantics (topic routing, retries, dead letters) inside one process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from shared.background import BackgroundLoop
from shared.bus.base import (
    DeadLetter,
    Delivery,
    DeliveryHandler,
    Outcome,
    OutcomeKind,
    OutgoingMessage,
    PublishFailed,
)
from shared.bus.parking import ParkedDeliveries
from shared.bus.topics import topic_matches

log = logging.getLogger("kefu.bus.memory")


@dataclass
class _Subscription:
    service: str
    routing_keys: tuple[str, ...]
    handler: DeliveryHandler
    queue: asyncio.Queue[Delivery] = field(default_factory=asyncio.Queue)
    workers: list[asyncio.Task[None]] = field(default_factory=list)


class InProcessTransport:
    """One instance is shared by every service in the process, like one broker.

    A delivery to be retried, or dead, is parked in `parking` (a SQLite file in the embedded mode) and put
    back on its queue when due, or when replayed, by the pump: one loop that sleeps until the earliest due
    delivery, and at most `poll_seconds`, so that a replay made by another process is picked up as well.
    """

    def __init__(
        self,
        *,
        retry_delays_ms: Sequence[int] = (1_000, 10_000, 60_000),
        concurrency: int = 4,
        parking: ParkedDeliveries | None = None,
        poll_seconds: float = 1.0,
    ) -> None:
        self.retry_delays = [ms / 1000 for ms in retry_delays_ms]
        self.concurrency = concurrency
        self.parking = parking or ParkedDeliveries()
        self.poll_seconds = poll_seconds
        self._subscriptions: dict[str, _Subscription] = {}
        self._wake = asyncio.Event()
        self._pump = BackgroundLoop("kefu-bus-parking", self._wake)
        self._connected = False

    async def connect(self) -> None:
        if self._connected:
            return
        await self.parking.open()
        self._connected = True
        self._pump.start(self._deliver_parked)

    async def close(self, grace_seconds: float = 5.0) -> None:
        if not self._connected:
            return
        # Publishing fails from here on, so the outboxes keep what they have not handed over yet.
        self._connected = False
        await self._pump.stop()
        # What is queued or in hand is handled before the workers stop: an in-process queue ends with its
        # process, and a handler cancelled midway would leave its transaction to be unwound by cancellation.
        # What fails meanwhile is parked, to be retried after the next start.
        drained = asyncio.gather(*(s.queue.join() for s in self._subscriptions.values()))
        try:
            await asyncio.wait_for(drained, grace_seconds)
        except TimeoutError:
            left = sum(s.queue.qsize() for s in self._subscriptions.values())
            log.warning("in-process bus closed with %d deliveries unhandled after %ss", left, grace_seconds)
        workers = [w for s in self._subscriptions.values() for w in s.workers]
        for worker in workers:
            worker.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        self._subscriptions.clear()
        await self.parking.close()

    @property
    def is_connected(self) -> bool:
        return self._connected

    async def publish(self, messages: Sequence[OutgoingMessage]) -> None:
        if not self._connected:
            raise PublishFailed({m.id for m in messages}, "transport is closed")
        unroutable: set[str] = set()
        for message in messages:
            targets = [
                s
                for s in self._subscriptions.values()
                if any(topic_matches(p, message.routing_key) for p in s.routing_keys)
            ]
            if not targets:
                unroutable.add(message.id)
                continue
            delivery = Delivery(
                body=message.body,
                routing_key=message.routing_key,
                headers=dict(message.headers),
                content_type=message.content_type,
                message_id=message.id,
            )
            for subscription in targets:
                subscription.queue.put_nowait(delivery)
        if unroutable:
            # Like AMQP's `mandatory`: an event no queue is bound to is not confirmed, so the outbox keeps it.
            raise PublishFailed(unroutable, "unroutable: no queue is bound to this event type")

    async def consume(self, service: str, routing_keys: Sequence[str], handler: DeliveryHandler) -> None:
        if service in self._subscriptions:
            raise RuntimeError(f"{service} already consumes")
        subscription = _Subscription(service, tuple(routing_keys), handler)
        self._subscriptions[service] = subscription
        self._wake.set()  # what was parked for it before a restart is due now
        for n in range(self.concurrency):
            task = asyncio.create_task(self._work(subscription), name=f"kefu-{service}-consumer-{n}")
            subscription.workers.append(task)

    async def _work(self, subscription: _Subscription) -> None:
        while True:
            delivery = await subscription.queue.get()
            try:
                try:
                    outcome = await subscription.handler(delivery)
                except Exception as exc:  # a pipeline bug must not kill the worker
                    log.exception("consumer pipeline failed")
                    outcome = Outcome.retry(f"{type(exc).__name__}: {exc}")
                await self._settle(subscription.service, delivery, outcome)
            except Exception:
                log.exception("could not park %s for %s", delivery.message_id, subscription.service)
            finally:
                subscription.queue.task_done()

    async def _settle(self, service: str, delivery: Delivery, outcome: Outcome) -> None:
        outcome_kind, reason = outcome.kind, outcome.reason
        if outcome_kind not in (OutcomeKind.RETRY, OutcomeKind.DEAD):
            return
        now = time.time()
        if outcome_kind is OutcomeKind.RETRY and delivery.attempt <= len(self.retry_delays):
            due_at = now + self.retry_delays[delivery.attempt - 1]
            again = replace(
                delivery,
                attempt=delivery.attempt + 1,
                headers={**delivery.headers, "x-kefu-last-error": reason},
            )
            await self.parking.park(service, again, reason=reason, now=now, due_at=due_at)
            self._wake.set()  # the pump's sleep may end after this one is due
            return
        if outcome_kind is OutcomeKind.RETRY:
            reason = f"gave up after {delivery.attempt} attempts: {reason}"
        await self.parking.park(service, delivery, reason=reason, now=now, due_at=None)

    async def _deliver_parked(self) -> None:
        while self._pump.next_pass():
            try:
                taken, next_due = await self.parking.take_due(list(self._subscriptions), time.time())
                for due in taken:
                    self._subscriptions[due.service].queue.put_nowait(due.delivery)
            except Exception:
                log.exception("in-process bus: parked deliveries could not be read")
                next_due = None
            sleep = self.poll_seconds if next_due is None else next_due - time.time()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.0, min(sleep, self.poll_seconds)))

    async def dead_letters(self, service: str, *, remove: bool = False) -> list[DeadLetter]:
        return await self.parking.dead(service, remove=remove)

    async def replay_dead_letters(self, service: str, limit: int | None = None) -> int:
        count = await self.parking.revive(service, now=time.time(), limit=limit)
        self._wake.set()
        return count
