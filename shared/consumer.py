"""Consuming events: decorated handlers get typed data and a session; the inbox makes them idempotent."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from shared import inbox, observability
from shared.bus.base import Delivery, Outcome
from shared.clock import Clock
from shared.db import Database
from shared.events import CloudEvent, EventRegistry, InvalidEvent, parse_message
from shared.observability import correlation_id
from shared.outbox import Outbox

log = logging.getLogger("kefu.consumer")

D = TypeVar("D", bound=BaseModel)


@dataclass(frozen=True)
class HandlerContext:
    """What a handler works with: the envelope, one open transaction, the outbox and the clock."""

    envelope: CloudEvent
    session: AsyncSession
    outbox: Outbox
    clock: Clock

    async def publish(self, type: str, data: BaseModel, *, subject: str | None = None) -> CloudEvent:
        return await self.outbox.add(self.session, type, data, subject=subject)


Handler = Callable[[HandlerContext, Any], Awaitable[None]]


class EventHandlers:
    """A service's handlers by event type; `@handlers.on("intake.contact.received.v1")`."""

    def __init__(self) -> None:
        self.by_type: dict[str, Handler] = {}
        self.extra_bindings: list[str] = []

    def on(self, event_type: str) -> Callable[[Callable[[HandlerContext, D], Awaitable[None]]], Handler]:
        def register(handler: Callable[[HandlerContext, D], Awaitable[None]]) -> Handler:
            if event_type in self.by_type:
                raise ValueError(f"two handlers for {event_type}")
            self.by_type[event_type] = handler
            return handler

        return register

    @property
    def routing_keys(self) -> list[str]:
        return sorted(set(self.by_type) | set(self.extra_bindings))


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
    ) -> None:
        self.service = service
        self.handlers = handlers
        self.registry = registry
        self.db = db
        self.outbox = outbox
        self.clock = clock

    async def __call__(self, delivery: Delivery) -> Outcome:
        event_type = delivery.routing_key or "unknown"
        try:
            envelope = parse_message(delivery.body, delivery.headers, delivery.content_type)
            event_type = envelope.type
            data = self.registry.validate_data(envelope)
            handler = self.handlers.by_type.get(envelope.type)
            if handler is None:
                raise InvalidEvent(f"{self.service} has no handler for {envelope.type!r}")
        except InvalidEvent as exc:
            observability.EVENTS_CONSUMED.labels(self.service, _bounded(event_type), "dead_lettered").inc()
            return Outcome.dead(str(exc))

        token = correlation_id.set(envelope.correlationid)
        try:
            async with self.db.transaction() as session:
                fresh = await inbox.claim(
                    session,
                    event_id=envelope.id,
                    type=envelope.type,
                    source=envelope.source,
                    at=self.clock.now(),
                )
                if fresh:
                    await handler(HandlerContext(envelope, session, self.outbox, self.clock), data)
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


def _bounded(event_type: str) -> str:
    # Garbage routing keys must not explode metric cardinality.
    return event_type if len(event_type) <= 100 and event_type.count(".") == 3 else "invalid"
