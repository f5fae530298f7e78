"""A running service: its settings, database, bus transport, outbox relay, event consumer and clock."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import APIRouter
from sqlalchemy import MetaData

from shared import observability
from shared.auth import ApiKey, Authenticator
from shared.bus.amqp import AmqpTransport
from shared.bus.base import Transport
from shared.bus.memory import InProcessTransport
from shared.bus.parking import BUS_FILE, ParkedDeliveries
from shared.clock import Clock, SystemClock
from shared.consumer import EventConsumer, EventHandlers
from shared.db import Database
from shared.events import EventRegistry, registry
from shared.migrations import upgrade
from shared.outbox import Outbox, OutboxRelay
from shared.settings import ServiceSettings
from shared.timers import Timers, TimerScheduler, TimerSetup

log = logging.getLogger("kefu.runtime")
STOP_STEP_SECONDS = 10


@dataclass
class ServiceDefinition:
    """Everything that makes one service what it is; `shared` turns it into an app."""

    name: str
    title: str
    description: str
    routers: Sequence[APIRouter]
    metadata: MetaData
    migrations_dir: Path
    path_prefixes: tuple[str, ...]
    handlers: EventHandlers | None = None
    on_start: Sequence[Callable[[Runtime], Awaitable[None]]] = field(default_factory=tuple)
    # Run first on shutdown, while the database and broker are still there (background workers stop here).
    on_stop: Sequence[Callable[[Runtime], Awaitable[None]]] = field(default_factory=tuple)
    timers: TimerSetup | None = None
    version: str = "0.1.0"


def transport_for(settings: ServiceSettings) -> Transport:
    if settings.amqp_url:
        return AmqpTransport(
            settings.amqp_url,
            exchange=settings.exchange,
            queue_prefix=settings.queue_prefix,
            prefetch=settings.prefetch,
            concurrency=settings.consumer_concurrency,
            retry_delays_ms=settings.retry_delays_ms,
            connection_name=f"kefu-{settings.service}",
        )
    return in_process_transport(settings)


def in_process_transport(settings: ServiceSettings) -> InProcessTransport:
    """The embedded mode's bus, parking retries and dead letters in `bus.db` in the data folder."""
    return InProcessTransport(
        retry_delays_ms=settings.retry_delays_ms,
        concurrency=settings.consumer_concurrency,
        parking=ParkedDeliveries(settings.data_dir / BUS_FILE),
    )


class Runtime:
    def __init__(
        self,
        definition: ServiceDefinition,
        settings: ServiceSettings,
        *,
        transport: Transport | None = None,
        clock: Clock | None = None,
        events: EventRegistry = registry,
    ) -> None:
        self.definition = definition
        self.settings = settings
        self.name = definition.name
        self.clock = clock or SystemClock()
        self.db = Database(
            settings.database_url,
            pool_size=settings.db_pool_size,
            pool_timeout=settings.db_pool_timeout_seconds,
        )
        self.owns_transport = transport is None
        self.transport = transport or transport_for(settings)
        self.events = events
        self.outbox = Outbox(source=f"/kefu/{definition.name}", registry=events, clock=self.clock)
        self.relay = OutboxRelay(
            service=definition.name,
            db=self.db,
            transport=self.transport,
            outbox=self.outbox,
            clock=self.clock,
            batch_size=settings.outbox_batch_size,
            poll_seconds=settings.outbox_poll_seconds,
        )
        self.authenticator = Authenticator(
            jwt_secret=settings.jwt_secret,
            jwks_url=settings.jwks_url,
            audience=settings.jwt_audience,
            api_keys=[ApiKey(k.name, k.sha256, tuple(k.roles)) for k in settings.api_keys],
        )
        self.timers: Timers | None = None
        self.scheduler: TimerScheduler | None = None
        if definition.timers is not None:
            self.timers = Timers(definition.timers.table, clock=self.clock)
            self.scheduler = TimerScheduler(
                service=definition.name,
                db=self.db,
                timers=self.timers,
                handlers=definition.timers.handlers,
                outbox=self.outbox,
                clock=self.clock,
                batch_size=definition.timers.batch_size,
            )
        # Service-specific running parts (a webhook dispatcher, …) that its hooks start and stop.
        self.extensions: dict[str, Any] = {}
        self.consumer: EventConsumer | None = None
        if definition.handlers is not None and definition.handlers.by_type:
            self.consumer = EventConsumer(
                service=definition.name,
                handlers=definition.handlers,
                registry=events,
                db=self.db,
                outbox=self.outbox,
                clock=self.clock,
                timers=self.timers,
                max_event_bytes=settings.max_event_bytes,
            )

    async def start(self) -> None:
        if self.settings.migrate_on_start:
            await upgrade(self.db, self.definition.migrations_dir, service=self.name)
        for hook in self.definition.on_start:
            await hook(self)
        if self.owns_transport:
            await self.transport.connect()
        if self.consumer is not None and self.definition.handlers is not None:
            await self.transport.consume(self.name, self.definition.handlers.routing_keys, self.consumer)
        self.relay.start()
        if self.scheduler is not None:
            self.scheduler.start()
        log.info("%s started", self.name)

    async def stop(self) -> None:
        steps: list[tuple[str, Callable[[], Awaitable[None]]]] = [
            (f"stop hook {hook.__name__}", functools.partial(hook, self)) for hook in self.definition.on_stop
        ]
        if self.scheduler is not None:
            steps.append(("timer scheduler", self.scheduler.stop))
        steps.append(("outbox relay", self.relay.stop))
        if self.owns_transport:
            steps.append(("broker connection", self.transport.close))
        if self.consumer is not None:
            # After the transport: nothing new arrives, and batches in hand still have their database.
            steps.append(("event consumer", self.consumer.stop))
        steps.append(("database pool", self.db.dispose))
        for what, stop in steps:
            # Shutting down must end: a step that hangs is logged and left behind, not waited for forever.
            try:
                async with asyncio.timeout(STOP_STEP_SECONDS):
                    await stop()
            except TimeoutError:
                log.error("%s: the %s did not stop within %ss", self.name, what, STOP_STEP_SECONDS)
        log.info("%s stopped", self.name)

    async def refresh_gauges(self) -> None:
        pending, age = await self.relay.pending()
        observability.OUTBOX_PENDING.labels(self.name).set(pending)
        observability.OUTBOX_OLDEST_AGE.labels(self.name).set(age)
