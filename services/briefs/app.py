"""briefs as an app: `create_app()`."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import shared.contracts  # noqa: F401  (registers the event catalogue)
from services.briefs import api, api_briefs, api_work, brief_service
from services.briefs.models import metadata, timers
from services.briefs.scheduled import timer_handlers
from shared.app import create_service_app
from shared.runtime import Runtime, ServiceDefinition
from shared.timers import TimerSetup


async def seed_signoff_rules(runtime: Runtime) -> None:
    """The default required sign-offs per brief type, where the agency has not set its own."""
    async with runtime.db.transaction() as session:
        await brief_service.seed_signoff_rules(session, clock=runtime.clock)


DEFINITION = ServiceDefinition(
    name="briefs",
    title="Kefu briefs",
    description=(
        "An advertising agency's account service: client dossiers, client / creative / media / research "
        "briefs with role sign-offs, proposal rounds and client decisions, traffic (milestones and "
        "deadlines), cost estimates with written client confirmation, meeting and weekly status reports."
    ),
    # Milestone routes under /v1/briefs/milestones come before /v1/briefs/{id} inside api_briefs.
    routers=[api.router, api_briefs.router, api_work.proposals, api_work.estimates, api_work.meetings],
    metadata=metadata,
    migrations_dir=Path(__file__).parent / "migrations",
    path_prefixes=("clients", "briefs", "proposals", "estimates", "meetings"),
    on_start=(seed_signoff_rules,),
    timers=TimerSetup(table=timers, handlers=timer_handlers),
)


# `create_app(settings=None, *, transport=None, clock=None)`
create_app = partial(create_service_app, DEFINITION)
