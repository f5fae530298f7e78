"""Satisfaction figures from answered surveys: CSAT with a Wilson interval, NPS with its margin, CES.

Every figure carries its `n`; a segment with fewer answers than the minimum is reported as
`insufficient` instead of as a number, because a 100 % CSAT from three answers says nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from services.analytics.models import Survey
from services.analytics.statistics import net_promoter_score_of, wilson_interval

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


@dataclass(frozen=True)
class Tally:
    """What the figures of one segment are computed from: counts, so the database can do the counting."""

    delivered: int
    responses: int = 0
    csat_n: int = 0
    satisfied: int = 0  # CSAT 4 or 5
    promoters: int = 0
    passives: int = 0
    detractors: int = 0
    ces_n: int = 0
    ces_sum: int = 0
    ces_easy: int = 0  # CES 5 or more

    @classmethod
    def of(cls, answers: list[Survey], delivered: int) -> Tally:
        csat = [s.csat for s in answers if s.csat is not None]
        nps = [s.nps for s in answers if s.nps is not None]
        ces = [s.ces for s in answers if s.ces is not None]
        return cls(
            delivered=delivered,
            responses=len(answers),
            csat_n=len(csat),
            satisfied=sum(1 for c in csat if c >= 4),
            promoters=sum(1 for n in nps if n >= 9),
            passives=sum(1 for n in nps if 7 <= n <= 8),
            detractors=sum(1 for n in nps if n <= 6),
            ces_n=len(ces),
            ces_sum=sum(ces),
            ces_easy=sum(1 for c in ces if c >= 5),
        )


def _tally_columns() -> list[Any]:
    """`Tally`'s fields as aggregates over surveys (answers are the surveys with `answered_at`)."""
    answered = col(Survey.answered_at).is_not(None)

    def counted(condition: Any) -> Any:
        return sa.func.count().filter(answered & condition)

    return [
        sa.func.count().label("delivered"),
        sa.func.count().filter(answered).label("responses"),
        counted(col(Survey.csat).is_not(None)).label("csat_n"),
        counted(col(Survey.csat) >= 4).label("satisfied"),
        counted(col(Survey.nps) >= 9).label("promoters"),
        counted(col(Survey.nps).between(7, 8)).label("passives"),
        counted(col(Survey.nps) <= 6).label("detractors"),
        counted(col(Survey.ces).is_not(None)).label("ces_n"),
        sa.func.coalesce(sa.func.sum(col(Survey.ces)).filter(answered), 0).label("ces_sum"),
        counted(col(Survey.ces) >= 5).label("ces_easy"),
    ]


def figures(answers: list[Survey], delivered: int, min_n: int) -> dict[str, Any]:
    """The satisfaction figures of one segment, from its answered surveys."""
    return figures_of(Tally.of(answers, delivered), min_n)


def figures_of(tally: Tally, min_n: int) -> dict[str, Any]:
    """The satisfaction figures of one segment."""
    out: dict[str, Any] = {
        "response_rate": {
            "value": round(tally.responses / tally.delivered, 4) if tally.delivered else None,
            "responses": tally.responses,
            "delivered": tally.delivered,
        }
    }
    if tally.csat_n < min_n:
        out["csat"] = _insufficient(tally.csat_n, min_n)
    else:
        interval = wilson_interval(tally.satisfied, tally.csat_n)
        assert interval is not None
        out["csat"] = {
            "status": "ok",
            "percent": round(100 * tally.satisfied / tally.csat_n, 2),
            "ci95": [round(100 * interval.low, 2), round(100 * interval.high, 2)],
            "n": tally.csat_n,
        }
    score = net_promoter_score_of(tally.promoters, tally.passives, tally.detractors)
    nps_n = tally.promoters + tally.passives + tally.detractors
    if score is None or score.n < min_n:
        out["nps"] = _insufficient(nps_n, min_n)
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
    if tally.ces_n < min_n:
        out["ces"] = _insufficient(tally.ces_n, min_n)
    else:
        out["ces"] = {
            "status": "ok",
            "mean": round(tally.ces_sum / tally.ces_n, 3),
            "percent_easy": round(100 * tally.ces_easy / tally.ces_n, 2),
            "n": tally.ces_n,
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
    """Figures for surveys sent in [since, until), overall and per segment. Withdrawn ratings are left out.

    The database counts (one aggregate row overall, one per segment): a report costs the same however
    many surveys the window holds, instead of loading each of them.
    """
    conditions: list[Any] = [
        Survey.created_at >= since,
        Survey.created_at < until,
        col(Survey.invalidated_at).is_(None),
        *(SEGMENTS[name] == value for name, value in filters.items()),
    ]
    overall = (await session.execute(sa.select(*_tally_columns()).where(*conditions))).one()
    result: dict[str, Any] = {"overall": figures_of(Tally(**overall._mapping), min_n)}
    if segment_by is not None:
        column: Any = SEGMENTS[segment_by]
        rows = await session.execute(
            sa.select(column.label("segment"), *_tally_columns()).where(*conditions).group_by(column)
        )
        segments = {
            "none" if row.segment is None else str(row.segment): Tally(
                **{k: v for k, v in row._mapping.items() if k != "segment"}
            )
            for row in rows
        }
        result["segments"] = [
            {"key": key, **figures_of(tally, min_n)} for key, tally in sorted(segments.items())
        ]
    return result
