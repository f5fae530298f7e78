"""briefs as an app: `create_app()`."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import shared.contracts  # noqa: F401  (registers the event catalogue)
from services.briefs.api import router
from services.briefs.models import metadata
from shared.app import create_service_app
from shared.runtime import ServiceDefinition

DEFINITION = ServiceDefinition(
    name="briefs",
    title="Kefu briefs",
    description=(
        "An advertising agency's account service: client dossiers, client / creative / media / research "
        "briefs with role sign-offs, proposal rounds and client decisions, traffic (milestones and "
        "deadlines), cost estimates with written client confirmation, meeting and weekly status reports."
    ),
    routers=[router],
    metadata=metadata,
    migrations_dir=Path(__file__).parent / "migrations",
    path_prefixes=("clients", "briefs", "proposals", "estimates", "meetings"),
)


# `create_app(settings=None, *, transport=None, clock=None)`
create_app = partial(create_service_app, DEFINITION)
