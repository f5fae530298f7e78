"""The classification rules, stored as data and seeded with defaults on first start."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from services.intake.classification import DEFAULT_RULES, Rule
from services.intake.models import ClassificationRule
from services.intake.schemas import RuleIn
from shared.runtime import Runtime


async def current(session: AsyncSession) -> list[Rule]:
    rows = (
        await session.execute(sa.select(ClassificationRule).order_by(ClassificationRule.position))
    ).scalars()
    return [Rule(r.target, r.value, tuple(r.keywords)) for r in rows]


async def replace(session: AsyncSession, rules: Sequence[RuleIn]) -> list[Rule]:
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
