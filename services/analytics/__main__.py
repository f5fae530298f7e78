"""`python -m services.analytics [--host H] [--port P]`: run analytics alone.

`python -m services.analytics rebuild [--resume]`: replay the event log into the projections.

`python -m services.analytics rollups`: build the rollups of `ANALYTICS_ROLLUP_ZONES` from the facts
(after adding a zone; the projector keeps them from then on).
"""

import asyncio
import sys

from services.cli import main


def _rebuild(resume: bool) -> None:
    import shared.contracts  # noqa: F401
    from services.analytics.app import DEFINITION
    from services.analytics.rebuild import rebuild
    from shared.clock import SystemClock
    from shared.db import Database
    from shared.events import registry
    from shared.migrations import upgrade
    from shared.observability import configure_logging
    from shared.settings import ServiceSettings

    settings = ServiceSettings.for_service("analytics")
    configure_logging(settings.log_level, settings.log_format)

    async def run() -> int:
        db = Database(settings.database_url)
        try:
            await upgrade(db, DEFINITION.migrations_dir, service="analytics")
            return await rebuild(db, registry, SystemClock(), resume=resume)
        finally:
            await db.dispose()

    print(f"analytics: rebuilt projections from {asyncio.run(run())} logged event(s)")


def _rollups() -> None:
    from services.analytics.app import DEFINITION
    from services.analytics.rollups import backfill, rollup_zones
    from shared.clock import SystemClock
    from shared.db import Database
    from shared.migrations import upgrade
    from shared.settings import ServiceSettings

    settings = ServiceSettings.for_service("analytics")

    async def run() -> list[str]:
        db = Database(settings.database_url)
        try:
            await upgrade(db, DEFINITION.migrations_dir, service="analytics")
            async with db.transaction() as session:
                await backfill(session, rollup_zones(), now=SystemClock().now())
            return rollup_zones()
        finally:
            await db.dispose()

    print(f"analytics: rollups built for {', '.join(asyncio.run(run()))}")


if len(sys.argv) > 1 and sys.argv[1] == "rebuild":
    _rebuild("--resume" in sys.argv[2:])
elif len(sys.argv) > 1 and sys.argv[1] == "rollups":
    _rollups()
else:
    main(["serve", "--service", "analytics", *sys.argv[1:]])
