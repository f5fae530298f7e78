"""tickets as an app: `create_app()`."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import shared.contracts  # noqa: F401  (registers the event catalogue)
from services.tickets import handlers as event_handlers
from services.tickets.api import router
from services.tickets.api_sla import router as sla_router
from services.tickets.models import metadata, timers
from services.tickets.scheduled import timer_handlers
from services.tickets.seeds import seed_defaults
from shared.app import create_service_app
from shared.runtime import Runtime, ServiceDefinition
from shared.timers import TimerSetup


async def _start(runtime: Runtime) -> None:
    await seed_defaults(runtime)


DEFINITION = ServiceDefinition(
    name="tickets",
    title="Kefu tickets",
    description=(
        "Complaint, repair and inquiry tickets: assignment, replies and notes, escalation, after-sales "
        "service and follow-up visits, with the SLA engine timing first response and resolution. Opens a "
        "ticket for every complaint, repair or inquiry contact intake records; publishes `tickets.*` events."
    ),
    routers=[router, sla_router],
    metadata=metadata,
    migrations_dir=Path(__file__).parent / "migrations",
    path_prefixes=("tickets", "sla-policies", "calendars"),
    handlers=event_handlers.handlers,
    on_start=(_start,),
    timers=TimerSetup(table=timers, handlers=timer_handlers),
)


# `create_app(settings=None, *, transport=None, clock=None)`
create_app = partial(create_service_app, DEFINITION)
