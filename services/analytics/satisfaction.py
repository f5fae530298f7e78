"""Satisfaction figures from answered surveys: CSAT with a Wilson interval, NPS with its margin, CES.

Every figure carries its `n`; a segment with fewer answers than the minimum is reported as
`insufficient` instead of as a number, because a 100 % CSAT from three answers says nothing.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from services.analytics.models import Survey
from services.analytics.statistics import net_promoter_score, wilson_interval

SEGMENTS = {
    "kind": Survey.kind,
    "priority": Survey.priority,
    "channel": Survey.channel,
    "group": Survey.group,
    "agent": Survey.assignee,
    "client": Survey.client_id,
}


def _insufficient(n: int, min_n: int) -> dict[str, Any]:
    return {"status": "insufficient", "n": n, "min_n": min_n}


def figures(answers: list[Survey], delivered: int, min_n: int) -> dict[str, Any]:
    """The satisfaction figures of one segment."""
    csat = [s.csat for s in answers if s.csat is not None]
    nps = [s.nps for s in answers if s.nps is not None]
    ces = [s.ces for s in answers if s.ces is not None]
    out: dict[str, Any] = {
        "response_rate": {
            "value": round(len(answers) / delivered, 4) if delivered else None,
            "responses": len(answers),
            "delivered": delivered,
        }
    }
    if len(csat) < min_n:
        out["csat"] = _insufficient(len(csat), min_n)
    else:
        satisfied = sum(1 for score in csat if score >= 4)
        interval = wilson_interval(satisfied, len(csat))
        assert interval is not None
        out["csat"] = {
            "status": "ok",
            "percent": round(100 * satisfied / len(csat), 2),
            "ci95": [round(100 * interval.low, 2), round(100 * interval.high, 2)],
            "n": len(csat),
        }
    score = net_promoter_score(nps)
    if score is None or score.n < min_n:
        out["nps"] = _insufficient(len(nps), min_n)
    else:
        out["nps"] = {
            "status": "ok",
            "score": round(score.score, 2),
            "margin95": round(score.margin, 2),
            "promoters": score.promoters,
            "passives": score.passives,
            "detractors": score.detractors,
            "n": score.n,
        }
    if len(ces) < min_n:
        out["ces"] = _insufficient(len(ces), min_n)
    else:
        out["ces"] = {
            "status": "ok",
            "mean": round(sum(ces) / len(ces), 3),
            "percent_easy": round(100 * sum(1 for c in ces if c >= 5) / len(ces), 2),
            "n": len(ces),
        }
    return out


async def satisfaction(
    session: AsyncSession,
    *,
    since: datetime,
    until: datetime,
    min_n: int,
    segment_by: str | None,
    filters: dict[str, str],
) -> dict[str, Any]:
    """Figures for surveys sent in [since, until), overall and per segment. Withdrawn ratings are left out."""
    query = sa.select(Survey).where(
        Survey.created_at >= since, Survey.created_at < until, Survey.invalidated_at.is_(None)
    )
    for name, value in filters.items():
        query = query.where(SEGMENTS[name] == value)
    surveys = (await session.execute(query)).scalars().all()
    result: dict[str, Any] = {"overall": figures([s for s in surveys if s.answered_at], len(surveys), min_n)}
    if segment_by is not None:
        column = SEGMENTS[segment_by]
        groups: dict[str, list[Survey]] = defaultdict(list)
        for survey in surveys:
            key = getattr(survey, column.key)
            groups["none" if key is None else str(key)].append(survey)
        result["segments"] = [
            {"key": key, **figures([s for s in group if s.answered_at], len(group), min_n)}
            for key, group in sorted(groups.items())
        ]
    return result
