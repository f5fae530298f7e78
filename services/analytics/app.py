"""analytics as an app: `create_app()`."""

from __future__ import annotations

import gc
from functools import partial
from pathlib import Path

import shared.contracts  # noqa: F401  (registers the event catalogue)
from services.analytics.handlers import handlers
from services.analytics.models import metadata
from services.analytics.routes import metrics, sla, surveys, webhooks
from services.analytics.settings import analytics_settings
from services.analytics.webhooks import WebhookDispatcher
from shared.app import create_service_app
from shared.bus.amqp import AmqpTransport
from shared.runtime import Runtime, ServiceDefinition


async def start_webhook_dispatcher(runtime: Runtime) -> None:
    """Deliver webhooks in the background for as long as the service runs."""
    dispatcher = WebhookDispatcher(runtime.db, runtime.clock)
    dispatcher.start()
    runtime.extensions["webhook_dispatcher"] = dispatcher


async def stop_webhook_dispatcher(runtime: Runtime) -> None:
    """Stop deliveries before the database goes away."""
    dispatcher = runtime.extensions.pop("webhook_dispatcher", None)
    if dispatcher is not None:
        await dispatcher.stop()


async def size_consumer_for_batches(runtime: Runtime) -> None:
    """Let the broker hand over enough messages at once for the projector's batches to fill.

    Each parked delivery holds one of the transport's in-flight slots until its batch commits, so the
    platform-wide defaults (sized for one transaction per event) would cap a batch at a few dozen events.
    """
    transport = runtime.transport
    if not isinstance(transport, AmqpTransport) or not runtime.owns_transport:
        return
    settings, chosen = analytics_settings(), runtime.settings.model_fields_set
    if "prefetch" not in chosen:
        transport.prefetch = settings.consumer_prefetch
    if "consumer_concurrency" not in chosen:
        transport.concurrency = settings.consumer_concurrency


async def collect_young_objects_less_often(runtime: Runtime) -> None:
    """Let the collector's youngest generation grow to 20,000 objects before a collection, not 700.

    The consumer allocates many short-lived objects per event (deliveries, envelopes, rows), nearly all
    freed by reference counting; at the default threshold a collection ran every few events. Measured on
    the ingest benchmark (with the start-up heap frozen, as served processes do), collections took ~6 %
    of the CPU time before and under 0.5 % after. Process-wide: in the embedded mode the other services
    share the setting, which only makes their collections rarer.
    """
    gc.set_threshold(20_000, 10, 10)


DEFINITION = ServiceDefinition(
    name="analytics",
    title="Kefu analytics",
    description=(
        "The read model of every event: ticket KPIs (response and resolution times, SLA achievement, reopen "
        "rate, backlog), satisfaction surveys with honest statistics, agency delivery metrics, and the live "
        "SLA-breach feed for operations."
    ),
    routers=[metrics.router, surveys.router, sla.router, webhooks.router],
    metadata=metadata,
    migrations_dir=Path(__file__).parent / "migrations",
    path_prefixes=("metrics", "surveys", "sla", "reports", "webhooks"),
    handlers=handlers,
    on_start=[size_consumer_for_batches, start_webhook_dispatcher, collect_young_objects_less_often],
    on_stop=[stop_webhook_dispatcher],
)


# `create_app(settings=None, *, transport=None, clock=None)`
create_app = partial(create_service_app, DEFINITION)
