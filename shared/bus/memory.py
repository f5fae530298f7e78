"""In-process transport: the AMQP semantics (topic routing, retries, dead letters) inside one process."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from shared.bus.base import (
    DeadLetter,
    Delivery,
    DeliveryHandler,
    Outcome,
    OutcomeKind,
    OutgoingMessage,
    PublishFailed,
)
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
    """One instance is shared by every service in the process, like one broker."""

    def __init__(
        self, *, retry_delays_ms: Sequence[int] = (1_000, 10_000, 60_000), concurrency: int = 4
    ) -> None:
        self.retry_delays = [ms / 1000 for ms in retry_delays_ms]
        self.concurrency = concurrency
        self._subscriptions: dict[str, _Subscription] = {}
        self._dead: dict[str, list[DeadLetter]] = {}
        self._timers: set[asyncio.TimerHandle] = set()
        self._connected = False

    async def connect(self) -> None:
        self._connected = True

    async def close(self, grace_seconds: float = 5.0) -> None:
        # Publishing fails from here on, so the outboxes keep what they have not handed over yet.
        self._connected = False
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        # What is queued or in hand is handled before the workers stop: an in-process queue ends with its
        # process, and a handler cancelled midway would leave its transaction to be unwound by cancellation.
        # Deliveries waiting out a retry delay are not waited for.
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
        self._dead.setdefault(service, [])
        for n in range(self.concurrency):
            task = asyncio.create_task(self._work(subscription), name=f"kefu-{service}-consumer-{n}")
            subscription.workers.append(task)

    async def _work(self, subscription: _Subscription) -> None:
        while True:
            delivery = await subscription.queue.get()
            try:
                self._settle(subscription, delivery, await subscription.handler(delivery))
            except Exception as exc:  # a pipeline bug must not kill the worker
                log.exception("consumer pipeline failed")
                self._settle(subscription, delivery, Outcome.retry(f"{type(exc).__name__}: {exc}"))
            finally:
                subscription.queue.task_done()

    def _settle(self, subscription: _Subscription, delivery: Delivery, outcome: Outcome) -> None:
        outcome_kind, reason = outcome.kind, outcome.reason
        if outcome_kind is OutcomeKind.RETRY and delivery.attempt <= len(self.retry_delays):
            self._retry_later(subscription, delivery, reason)
        elif outcome_kind in (OutcomeKind.RETRY, OutcomeKind.DEAD):
            if outcome_kind is OutcomeKind.RETRY:
                reason = f"gave up after {delivery.attempt} attempts: {reason}"
            self._dead[subscription.service].append(
                DeadLetter(delivery.message_id, delivery.routing_key, reason, delivery.attempt, delivery.body)
            )

    def _retry_later(self, subscription: _Subscription, delivery: Delivery, reason: str) -> None:
        if not self._connected:  # closing: a retry delay is not waited for
            log.warning("in-process bus closing: %s not retried (%s)", delivery.message_id, reason)
            return
        delay = self.retry_delays[delivery.attempt - 1]
        again = replace(
            delivery, attempt=delivery.attempt + 1, headers={**delivery.headers, "x-kefu-last-error": reason}
        )
        loop = asyncio.get_running_loop()

        def requeue() -> None:
            self._timers.discard(timer)
            subscription.queue.put_nowait(again)

        timer = loop.call_later(delay, requeue)
        self._timers.add(timer)

    async def dead_letters(self, service: str, *, remove: bool = False) -> list[DeadLetter]:
        letters = list(self._dead.get(service, []))
        if remove:
            self._dead[service] = []
        return letters

    async def replay_dead_letters(self, service: str, limit: int | None = None) -> int:
        letters = self._dead.get(service, [])
        subscription = self._subscriptions.get(service)
        if subscription is None:
            return 0
        count = len(letters) if limit is None else min(limit, len(letters))
        for letter in letters[:count]:
            subscription.queue.put_nowait(
                Delivery(
                    letter.body, letter.routing_key, {}, "application/cloudevents+json", letter.message_id
                )
            )
        self._dead[service] = letters[count:]
        return count
