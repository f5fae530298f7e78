"""analytics as an app: `create_app()`."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import shared.contracts  # noqa: F401  (registers the event catalogue)
from services.analytics.api import router
from services.analytics.handlers import handlers
from services.analytics.models import metadata
from shared.app import create_service_app
from shared.runtime import ServiceDefinition

DEFINITION = ServiceDefinition(
    name="analytics",
    title="Kefu analytics",
    description=(
        "The read model of every event: ticket KPIs (response and resolution times, SLA achievement, reopen "
        "rate, backlog), satisfaction surveys with honest statistics, agency delivery metrics, and the live "
        "SLA-breach feed for operations."
    ),
    routers=[router],
    metadata=metadata,
    migrations_dir=Path(__file__).parent / "migrations",
    path_prefixes=("metrics", "surveys", "sla", "reports", "webhooks"),
    handlers=handlers,
)


# `create_app(settings=None, *, transport=None, clock=None)`
create_app = partial(create_service_app, DEFINITION)
