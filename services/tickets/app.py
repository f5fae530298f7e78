"""tickets as an app: `create_app()`."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import shared.contracts  # noqa: F401  (registers the event catalogue)
from services.tickets.api import router
from services.tickets.handlers import handlers
from services.tickets.models import metadata
from shared.app import create_service_app
from shared.runtime import ServiceDefinition

DEFINITION = ServiceDefinition(
    name="tickets",
    title="Kefu tickets",
    description=(
        "Complaint, repair and inquiry tickets: assignment, replies and notes, escalation, after-sales "
        "service and follow-up visits, with the SLA engine timing first response and resolution. Opens a "
        "ticket for every complaint, repair or inquiry contact intake records; publishes `tickets.*` events."
    ),
    routers=[router],
    metadata=metadata,
    migrations_dir=Path(__file__).parent / "migrations",
    path_prefixes=("tickets", "sla-policies", "calendars"),
    handlers=handlers,
)


# `create_app(settings=None, *, transport=None, clock=None)`
create_app = partial(create_service_app, DEFINITION)
