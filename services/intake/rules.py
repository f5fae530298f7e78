"""The classification rules, stored as data and seeded with defaults on first start."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from services.intake.classification import DEFAULT_RULES, Rule
from services.intake.models import ClassificationRule
from services.intake.schemas import RuleIn
from shared.recent import RecentReads
from shared.runtime import Runtime

# Rules are read on every contact and change rarely: each process keeps them for a few seconds. A change
# made through this process is seen at once; one made through another replica within CACHE_SECONDS.
CACHE_SECONDS = 5.0
_recent: RecentReads[list[Rule]] = RecentReads(CACHE_SECONDS)


async def current(session: AsyncSession) -> list[Rule]:
    database = session.get_bind().url
    if (known := _recent.get(database)) is not None:
        return known
    query = sa.select(ClassificationRule).order_by(ClassificationRule.position)  # type: ignore[arg-type]
    rules = [Rule(r.target, r.value, tuple(r.keywords)) for r in (await session.execute(query)).scalars()]
    return _recent.put(database, rules)


_SELECT_ON_DRIVER = "SELECT target, value, keywords FROM classification_rules ORDER BY position"


async def current_on_driver(connection: Any, database: object) -> list[Rule]:
    """`current` for a writer holding the driver's (asyncpg's) connection to `database` (its URL)."""
    if (known := _recent.get(database)) is not None:
        return known
    # The pool's connections decode JSON columns (SQLAlchemy registers the codec on each one).
    rules = [
        Rule(r["target"], r["value"], tuple(r["keywords"])) for r in await connection.fetch(_SELECT_ON_DRIVER)
    ]
    return _recent.put(database, rules)


async def replace(session: AsyncSession, rules: Sequence[RuleIn]) -> list[Rule]:
    _recent.forget(session.get_bind().url)
    await session.execute(sa.delete(ClassificationRule))
    for position, rule in enumerate(rules):
        session.add(
            ClassificationRule(
                target=rule.target, value=rule.value, keywords=rule.keywords, position=position
            )
        )
    await session.flush()
    return await current(session)


async def seed_defaults(runtime: Runtime) -> None:
    """On start: an empty rule table gets the default Chinese and English keyword rules."""
    async with runtime.db.transaction() as session:
        if (await session.execute(sa.select(sa.func.count()).select_from(ClassificationRule))).scalar_one():
            return
        for position, rule in enumerate(DEFAULT_RULES):
            session.add(
                ClassificationRule(
                    target=rule.target, value=str(rule.value), keywords=list(rule.keywords), position=position
                )
            )
