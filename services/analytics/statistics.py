"""Honest survey statistics: proportions with Wilson intervals, NPS with its margin, CES; all with `n`.

Formulas (z = 1.959964 for 95 %):
- Wilson score interval for a proportion p̂ = k/n:
  centre = (p̂ + z²/2n) / (1 + z²/n), half-width = z·sqrt(p̂(1−p̂)/n + z²/4n²) / (1 + z²/n).
- NPS = 100·(P − D) with P, D the promoter and detractor shares. Each answer scores +1, 0 or −1, so
  Var = P + D − (P − D)² and the 95 % margin is 100·z·sqrt(Var / n).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ddsketch import DDSketch

Z95 = 1.959963984540054

RELATIVE_ACCURACY = 0.01
MAPPING = DDSketch(RELATIVE_ACCURACY)._mapping
# The library's key is ceil(log2(x) · multiplier); in natural logarithms that is ceil(ln(x) · this).
LN_MULTIPLIER = MAPPING._multiplier / math.log(2)
ZERO = -(2**31)  # the bin of zero durations (the sketch's own zero count)


def bin_sql(column: str) -> str:
    """The DDSketch bin of a duration column as SQL text: the library's key, evaluated by the database.

    The facts keep it in generated columns, so the KPI report counts bins without computing a logarithm
    per row (a test checks that SQL and library agree on every bin).
    """
    return (
        f"CASE WHEN {column} IS NULL THEN NULL WHEN {column} <= 0 THEN {ZERO} "
        f"ELSE CAST(ceil(ln({column}) * {LN_MULTIPLIER!r}) AS INTEGER) END"
    )


@dataclass(frozen=True)
class Interval:
    low: float
    high: float


def rate(hits: int, n: int) -> dict[str, Any]:
    """A share with its `n`, to four places; None when there is nothing to divide by."""
    return {"value": round(hits / n, 4) if n else None, "n": n}


def wilson_interval(successes: int, n: int, z: float = Z95) -> Interval | None:
    """The Wilson score interval for `successes` out of `n`; None when there is nothing to estimate."""
    if n <= 0:
        return None
    if not 0 <= successes <= n:
        raise ValueError("successes must be between 0 and n")
    p = successes / n
    z2 = z * z
    denominator = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denominator
    return Interval(max(0.0, centre - half), min(1.0, centre + half))


@dataclass(frozen=True)
class NetPromoterScore:
    n: int
    promoters: int
    passives: int
    detractors: int
    score: float
    margin: float


def net_promoter_score(answers: Iterable[int], z: float = Z95) -> NetPromoterScore | None:
    """NPS (−100…100) from 0–10 answers, with the margin of error of the score; None for no answers."""
    promoters = passives = detractors = 0
    for answer in answers:
        if not 0 <= answer <= 10:
            raise ValueError("NPS answers are 0–10")
        if answer >= 9:
            promoters += 1
        elif answer >= 7:
            passives += 1
        else:
            detractors += 1
    return net_promoter_score_of(promoters, passives, detractors, z)


def net_promoter_score_of(
    promoters: int, passives: int, detractors: int, z: float = Z95
) -> NetPromoterScore | None:
    """`net_promoter_score` from the counts of promoters (9–10), passives (7–8) and detractors (0–6)."""
    n = promoters + passives + detractors
    if n == 0:
        return None
    p, d = promoters / n, detractors / n
    variance = max(0.0, p + d - (p - d) ** 2)
    return NetPromoterScore(
        n, promoters, passives, detractors, 100 * (p - d), 100 * z * math.sqrt(variance / n)
    )


def sketch_of(values: Iterable[float], relative_accuracy: float = 0.01) -> DDSketch:
    """A DDSketch (1 % relative accuracy) of durations; sketches of buckets merge into their total."""
    sketch = DDSketch(relative_accuracy)
    for value in values:
        sketch.add(max(0.0, float(value)))
    return sketch


def merged(sketches: Sequence[DDSketch], relative_accuracy: float = 0.01) -> DDSketch:
    total = DDSketch(relative_accuracy)
    for sketch in sketches:
        if sketch.count:
            total.merge(sketch)
    return total


def quantiles(sketch: DDSketch, points: Sequence[float] = (0.5, 0.9, 0.99)) -> dict[str, float | None]:
    """`{"p50": …, "p90": …, "p99": …}` from a sketch; None for an empty one."""
    out: dict[str, float | None] = {}
    for q in points:
        key = f"p{round(q * 100):d}"
        value = sketch.get_quantile_value(q) if sketch.count else None
        out[key] = None if value is None else round(float(value), 1)
    return out
