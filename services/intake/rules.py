"""The classification rules, stored as data and seeded with defaults on first start."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from services.intake.classification import DEFAULT_RULES, Rule
from services.intake.models import ClassificationRule
from services.intake.schemas import RuleIn
from shared.runtime import Runtime

# Rules are read on every contact and change rarely: each process keeps them for a few seconds. A change
# made through this process is seen at once; one made through another replica within CACHE_SECONDS.
CACHE_SECONDS = 5.0
_cache: dict[str, tuple[float, list[Rule]]] = {}


def _cache_key(session: AsyncSession) -> str:
    return cache_key(session.get_bind().url)


def cache_key(url: object) -> str:
    """Rules are cached per database (tests run several in one process)."""
    return str(url)


def cached(key: str) -> list[Rule] | None:
    """The rules if this process read them within CACHE_SECONDS, without touching the database."""
    entry = _cache.get(key)
    if entry is not None and time.monotonic() - entry[0] < CACHE_SECONDS:
        return entry[1]
    return None


async def current(session: AsyncSession) -> list[Rule]:
    key = _cache_key(session)
    if (known := cached(key)) is not None:
        return known
    query = sa.select(ClassificationRule).order_by(ClassificationRule.position)  # type: ignore[arg-type]
    rules = [Rule(r.target, r.value, tuple(r.keywords)) for r in (await session.execute(query)).scalars()]
    _cache[key] = (time.monotonic(), rules)
    return rules


_SELECT_ON_DRIVER = "SELECT target, value, keywords FROM classification_rules ORDER BY position"


async def current_on_driver(connection: Any, key: str) -> list[Rule]:
    """`current` for a writer holding the driver's (asyncpg's) connection rather than a session."""
    if (known := cached(key)) is not None:
        return known
    # The pool's connections decode JSON columns (SQLAlchemy registers the codec on each one).
    rules = [
        Rule(r["target"], r["value"], tuple(r["keywords"])) for r in await connection.fetch(_SELECT_ON_DRIVER)
    ]
    _cache[key] = (time.monotonic(), rules)
    return rules


async def replace(session: AsyncSession, rules: Sequence[RuleIn]) -> list[Rule]:
    _cache.pop(_cache_key(session), None)
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
