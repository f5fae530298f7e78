"""Default calendars and SLA policies, seeded once (idempotently, safe with replicas starting together)."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from services.tickets import policies
from services.tickets.models import Calendar, SlaPolicy
from services.tickets.scheduled import GAUGES
from shared.runtime import Runtime

OFFICE_HOURS = [["09:00", "12:00"], ["13:30", "18:00"]]


async def seed_defaults(runtime: Runtime) -> None:
    now = runtime.clock.now()
    try:
        async with runtime.db.transaction() as session:
            if (await session.execute(sa.select(sa.func.count()).select_from(SlaPolicy))).scalar_one() == 0:
                session.add(
                    Calendar(id=policies.CALENDAR_24X7, name="24×7", always_open=True, created_at=now)
                )
                session.add(
                    Calendar(
                        id=policies.CALENDAR_CHINA_OFFICE,
                        name="China office hours",
                        always_open=False,
                        timezone="Asia/Shanghai",
                        hours={d: OFFICE_HOURS for d in ("mon", "tue", "wed", "thu", "fri")},
                        china_holidays=True,
                        created_at=now,
                    )
                )
                await session.flush()
                for row in policies.default_policy_rows():
                    session.add(SlaPolicy(**row, created_at=now))
    except IntegrityError:
        pass  # another replica seeded first
    assert runtime.timers is not None
    async with runtime.db.transaction() as session:
        pending = await runtime.timers.pending(session, kind=GAUGES, subject="open_tickets")
        if pending is None:
            await runtime.timers.schedule(
                session, kind=GAUGES, subject="open_tickets", due_at=now + timedelta(seconds=1)
            )
