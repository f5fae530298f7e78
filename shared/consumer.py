"""Consuming events: decorated handlers get typed data and a session; the inbox makes them idempotent.

Types registered with `on_batch` are gathered: each delivery still gets its own outcome, but a batch of them
is claimed in the inbox and handled in one transaction, which is what makes high event rates affordable.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from shared import inbox, observability
from shared.bus.base import Delivery, Outcome
from shared.bus.topics import topic_matches
from shared.clock import Clock
from shared.db import Database
from shared.events import CloudEvent, EventRegistry, InvalidEvent, parse_message
from shared.observability import correlation_id
from shared.outbox import Outbox
from shared.timers import Timers

log = logging.getLogger("kefu.consumer")

D = TypeVar("D", bound=BaseModel)


@dataclass(frozen=True)
class HandlerContext:
    """What a handler works with: the envelope, one open transaction, the outbox, the clock and timers."""

    envelope: CloudEvent
    session: AsyncSession
    outbox: Outbox
    clock: Clock
    timers: Timers | None = None  # the service's timers, when it declares any

    async def publish(self, type: str, data: BaseModel, *, subject: str | None = None) -> CloudEvent:
        return await self.outbox.add(self.session, type, data, subject=subject)


Handler = Callable[[HandlerContext, Any], Awaitable[None]]


@dataclass(frozen=True)
class Received:
    """One fresh event of a batch: its envelope and its validated data."""

    envelope: CloudEvent
    data: Any


@dataclass(frozen=True)
class BatchContext:
    """What a batch handler works with: one open transaction for the whole batch, the outbox and the clock."""

    session: AsyncSession
    outbox: Outbox
    clock: Clock

    async def publish(
        self, type: str, data: BaseModel, *, subject: str | None = None, cause: Received | None = None
    ) -> CloudEvent:
        """Publish in the batch's transaction; `cause` carries that event's correlation id onwards."""
        token = correlation_id.set(cause.envelope.correlationid) if cause is not None else None
        try:
            return await self.outbox.add(self.session, type, data, subject=subject)
        finally:
            if token is not None:
                correlation_id.reset(token)

    async def publish_many(
        self, events: Sequence[tuple[str, BaseModel, str | None]], *, cause: Received | None = None
    ) -> list[CloudEvent]:
        """`publish` for many `(type, data, subject)` in one insert, all carrying `cause`'s correlation id."""
        token = correlation_id.set(cause.envelope.correlationid) if cause is not None else None
        try:
            return await self.outbox.add_many(self.session, events)
        finally:
            if token is not None:
                correlation_id.reset(token)


BatchHandler = Callable[[BatchContext, list[Received]], Awaitable[None]]
# Records a batch of distinct events in the handler's transaction; returns the ids not recorded before.
Claim = Callable[[AsyncSession, list[Received], datetime], Awaitable[set[str]]]


async def inbox_claim(session: AsyncSession, events: list[Received], at: datetime) -> set[str]:
    """The default claim: the events' ids in the inbox."""
    return await inbox.claim_many(
        session, [(e.envelope.id, e.envelope.type, e.envelope.source) for e in events], at=at
    )


@dataclass(frozen=True)
class BatchRoute:
    """Event types (or topic patterns) handled in batches of up to `max_size`, gathered for `max_wait_ms`.

    `claim` records which events were handled: the inbox unless the service keeps its own record of every
    event (analytics' event log), which then serves as the inbox and spares a second write per event.
    """

    keys: tuple[str, ...]
    handler: BatchHandler
    max_size: int
    max_wait_ms: float
    claim: Claim = inbox_claim

    async def one(self, ctx: HandlerContext, data: Any) -> None:
        """The same handler on a batch of one, for events that must be handled alone."""
        await self.handler(BatchContext(ctx.session, ctx.outbox, ctx.clock), [Received(ctx.envelope, data)])


class EventHandlers:
    """A service's handlers by event type; `@handlers.on("intake.contact.received.v1")`."""

    def __init__(self) -> None:
        self.by_type: dict[str, Handler] = {}
        self.batches: dict[str, BatchRoute] = {}

    def on(self, event_type: str) -> Callable[[Callable[[HandlerContext, D], Awaitable[None]]], Handler]:
        def register(handler: Callable[[HandlerContext, D], Awaitable[None]]) -> Handler:
            if event_type in self.by_type:
                raise ValueError(f"two handlers for {event_type}")
            self.by_type[event_type] = handler
            return handler

        return register

    def on_batch(
        self,
        keys: Sequence[str],
        *,
        max_size: int = 500,
        max_wait_ms: float = 20,
        claim: Claim = inbox_claim,
    ) -> Callable[[BatchHandler], BatchHandler]:
        """`@handlers.on_batch(["tickets.#"])`: `async def h(ctx: BatchContext, events: list[Received])`.

        `keys` are event types or topic patterns; a type with its own `on` handler is not batched. The
        handler sees only events `claim` found new, in the transaction that recorded them.
        """
        if max_size < 1 or max_wait_ms < 0:
            raise ValueError("a batch holds at least one event and waits a non-negative time")

        def register(handler: BatchHandler) -> BatchHandler:
            route = BatchRoute(tuple(keys), handler, max_size, max_wait_ms, claim)
            for key in keys:
                if key in self.by_type:
                    raise ValueError(f"two handlers for {key}")
                # Listed like any handler, so the queue is bound to it and the consumer starts.
                self.by_type[key] = route.one
                self.batches[key] = route
            return handler

        return register

    def batch_route(self, event_type: str) -> BatchRoute | None:
        """The batch route for a type: its own, else the first pattern that matches and no `on` handler."""
        route = self.batches.get(event_type)
        if route is not None or event_type in self.by_type:
            return route
        return next(
            (r for key, r in self.batches.items() if _is_pattern(key) and topic_matches(key, event_type)),
            None,
        )

    @property
    def routing_keys(self) -> list[str]:
        return sorted(self.by_type)


def _is_pattern(key: str) -> bool:
    return "*" in key or "#" in key


@dataclass(slots=True, eq=False)
class _Parked:
    """A delivery waiting for its batch, and whom to tell its outcome (once) when the batch is done."""

    delivery: Delivery
    envelope: CloudEvent
    data: Any
    report: Callable[[Outcome], None]
    settled: bool = False

    def settle(self, outcome: Outcome) -> None:
        if not self.settled:
            self.settled = True
            self.report(outcome)


class EventConsumer:
    """Turns a delivery into an outcome: dead for what can never work, retry for what might, else handled."""

    def __init__(
        self,
        *,
        service: str,
        handlers: EventHandlers,
        registry: EventRegistry,
        db: Database,
        outbox: Outbox,
        clock: Clock,
        timers: Timers | None = None,
        max_event_bytes: int = 1_048_576,
    ) -> None:
        self.service = service
        self.max_event_bytes = max_event_bytes
        self.handlers = handlers
        self.registry = registry
        self.db = db
        self.outbox = outbox
        self.clock = clock
        self.timers = timers
        self._waiting: dict[BatchRoute, list[_Parked]] = {}
        self._timers: dict[BatchRoute, asyncio.TimerHandle] = {}
        self._running: set[asyncio.Task[None]] = set()

    async def stop(self) -> None:
        """After the transport stops delivering: batches being handled finish, parked ones are retried."""
        for route in list(self._timers):
            self._timers.pop(route).cancel()
        for parked in (p for batch in self._waiting.values() for p in batch):
            parked.settle(Outcome.retry("consumer stopped before the batch was handled"))
        self._waiting.clear()
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)

    def submit(self, delivery: Delivery, report: Callable[[Outcome], None]) -> bool:
        """Take a delivery of a batched type without a task of its own; `report` gets its outcome later.

        A transport calls this from its delivery callback: at thousands of events a second, a task and
        a future per delivery cost more than handling the batch. False means "not taken" (no batch route,
        or not a valid event): the transport then awaits `self(delivery)`, which handles or judges it.
        """
        if not self.handlers.batches:
            return False
        try:
            envelope, data = self._read(delivery)
        except InvalidEvent:
            return False
        route = self.handlers.batch_route(envelope.type)
        if route is None:
            return False
        self._enqueue(route, _Parked(delivery, envelope, data, report))
        return True

    async def __call__(self, delivery: Delivery) -> Outcome:
        event_type = delivery.routing_key or "unknown"
        try:
            envelope, data = self._read(delivery)
            event_type = envelope.type
            route = self.handlers.batch_route(envelope.type)
            handler = route.one if route is not None else self.handlers.by_type.get(envelope.type)
            if handler is None:
                raise InvalidEvent(f"{self.service} has no handler for {envelope.type!r}")
        except InvalidEvent as exc:
            observability.EVENTS_CONSUMED.labels(self.service, _bounded(event_type), "dead_lettered").inc()
            return Outcome.dead(str(exc))
        if route is not None:
            return await self._park(route, delivery, envelope, data)
        return await self._handle_one(delivery, envelope, data, handler)

    def _read(self, delivery: Delivery) -> tuple[CloudEvent, Any]:
        """The delivery's envelope and validated data; InvalidEvent says why not (too big read unparsed)."""
        if len(delivery.body) > self.max_event_bytes:
            raise InvalidEvent(
                f"body of {len(delivery.body)} bytes exceeds the {self.max_event_bytes}-byte limit"
            )
        envelope = parse_message(delivery.body, delivery.headers, delivery.content_type)
        return envelope, self.registry.validate_data(envelope)

    async def _handle_one(
        self,
        delivery: Delivery,
        envelope: CloudEvent,
        data: Any,
        handler: Handler,
        claim: Claim = inbox_claim,
    ) -> Outcome:
        """One event in its own transaction: handled, duplicate, retried or dead.

        A batched type's event handled alone (its batch failed) is claimed as its batch would have been.
        """
        event_type = envelope.type
        token = correlation_id.set(envelope.correlationid)
        try:
            async with self.db.transaction() as session:
                claimed = await claim(session, [Received(envelope, data)], self.clock.now())
                fresh = envelope.id in claimed
                if fresh:
                    await handler(
                        HandlerContext(envelope, session, self.outbox, self.clock, self.timers), data
                    )
        except InvalidEvent as exc:
            # The handler judged the event impossible to apply (e.g. it contradicts what we know).
            observability.EVENTS_CONSUMED.labels(self.service, event_type, "dead_lettered").inc()
            return Outcome.dead(str(exc))
        except Exception as exc:
            log.warning(
                "handler for %s failed (attempt %d): %s", envelope.type, delivery.attempt, exc, exc_info=True
            )
            observability.EVENTS_CONSUMED.labels(self.service, event_type, "retried").inc()
            return Outcome.retry(f"{type(exc).__name__}: {exc}")
        finally:
            correlation_id.reset(token)
        outcome = "handled" if fresh else "duplicate"
        observability.EVENTS_CONSUMED.labels(self.service, event_type, outcome).inc()
        return Outcome.handled() if fresh else Outcome.duplicate()

    async def _park(self, route: BatchRoute, delivery: Delivery, envelope: CloudEvent, data: Any) -> Outcome:
        outcome: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()

        def report(result: Outcome) -> None:
            if not outcome.done():
                outcome.set_result(result)

        self._enqueue(route, _Parked(delivery, envelope, data, report))
        # Shielded: a transport that stops waiting must not cancel the batch its neighbours share.
        return await asyncio.shield(outcome)

    def _enqueue(self, route: BatchRoute, parked: _Parked) -> None:
        waiting = self._waiting.setdefault(route, [])
        waiting.append(parked)
        if len(waiting) >= route.max_size:
            self._flush(route)
        elif route not in self._timers:
            loop = asyncio.get_running_loop()
            self._timers[route] = loop.call_later(route.max_wait_ms / 1000, self._flush, route)

    def _flush(self, route: BatchRoute) -> None:
        timer = self._timers.pop(route, None)
        if timer is not None:
            timer.cancel()
        batch = self._waiting.pop(route, [])
        if batch:
            task = asyncio.create_task(self._handle_batch(route, batch), name=f"kefu-{self.service}-batch")
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _handle_batch(self, route: BatchRoute, batch: list[_Parked]) -> None:
        try:
            await self._handle_together(route, batch)
        except Exception as exc:
            # One poison event must not fail its neighbours: each is handled (and retried) on its own.
            log.warning("batch of %d events failed, handling them one by one: %s", len(batch), exc)
            for parked in batch:
                if not parked.settled:
                    parked.settle(
                        await self._handle_one(
                            parked.delivery, parked.envelope, parked.data, route.one, route.claim
                        )
                    )
        finally:
            for parked in batch:  # only if cancelled on shutdown: the broker will deliver them again
                parked.settle(Outcome.retry("consumer stopped before the batch was handled"))

    async def _handle_together(self, route: BatchRoute, batch: list[_Parked]) -> None:
        """Claim the whole batch in the inbox and handle its fresh events in one transaction."""
        first: dict[str, _Parked] = {}
        for parked in batch:
            first.setdefault(parked.envelope.id, parked)
        async with self.db.transaction() as session:
            received = [Received(p.envelope, p.data) for p in first.values()]
            fresh_ids = await route.claim(session, received, self.clock.now())
            fresh = [r for r in received if r.envelope.id in fresh_ids]
            if fresh:
                await route.handler(BatchContext(session, self.outbox, self.clock), fresh)
        counts: Counter[tuple[str, str]] = Counter()
        for parked in batch:
            handled = parked.envelope.id in fresh_ids and first[parked.envelope.id] is parked
            counts[parked.envelope.type, "handled" if handled else "duplicate"] += 1
            parked.settle(_HANDLED if handled else _DUPLICATE)
        for (event_type, outcome), n in counts.items():  # one series update per type, not per event
            observability.EVENTS_CONSUMED.labels(self.service, event_type, outcome).inc(n)


_HANDLED, _DUPLICATE = Outcome.handled(), Outcome.duplicate()


def _bounded(event_type: str) -> str:
    # Garbage routing keys must not explode metric cardinality.
    return event_type if len(event_type) <= 100 and event_type.count(".") == 3 else "invalid"
