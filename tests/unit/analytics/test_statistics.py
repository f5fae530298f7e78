"""Wilson interval, NPS margin and sketch percentiles against hand-computed cases."""

from __future__ import annotations

import math
import statistics as stdlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.analytics.statistics import merged, net_promoter_score, quantiles, sketch_of, wilson_interval


def test_wilson_interval_for_8_of_10() -> None:
    # p = 0.8, z = 1.96: centre (0.8 + 0.19207) / 1.38415 = 0.71687, half 0.22646 → [0.4902, 0.9433]
    interval = wilson_interval(8, 10)
    assert interval is not None
    assert interval.low == pytest.approx(0.4902, abs=1e-4)
    assert interval.high == pytest.approx(0.9433, abs=1e-4)


def test_wilson_interval_at_the_edges_stays_inside_0_1() -> None:
    none = wilson_interval(0, 5)
    every = wilson_interval(5, 5)
    assert none is not None and every is not None
    assert none.low == 0.0 and none.high == pytest.approx(0.4345, abs=1e-4)
    assert every.high == 1.0 and every.low == pytest.approx(0.5655, abs=1e-4)


def test_wilson_interval_of_nothing_is_none() -> None:
    assert wilson_interval(0, 0) is None
    with pytest.raises(ValueError):
        wilson_interval(3, 2)


@given(n=st.integers(1, 10_000), data=st.data())
def test_wilson_interval_contains_the_observed_share(n: int, data: st.DataObject) -> None:
    k = data.draw(st.integers(0, n))
    interval = wilson_interval(k, n)
    assert interval is not None
    assert 0.0 <= interval.low <= k / n + 1e-12 <= interval.high + 2e-12 <= 1.0 + 2e-12


def test_nps_of_ten_answers() -> None:
    # 5 promoters, 2 passives, 3 detractors: NPS = 50 − 30 = 20;
    # Var = 0.5 + 0.3 − 0.2² = 0.76; margin = 100 · 1.96 · sqrt(0.076) = 54.03
    score = net_promoter_score([10, 10, 9, 9, 9, 8, 7, 6, 3, 0])
    assert score is not None
    assert (score.promoters, score.passives, score.detractors, score.n) == (5, 2, 3, 10)
    assert score.score == pytest.approx(20.0)
    assert score.margin == pytest.approx(54.03, abs=0.01)


def test_nps_when_everyone_agrees_has_no_margin() -> None:
    score = net_promoter_score([10] * 40)
    assert score is not None and score.score == 100 and score.margin == 0


def test_nps_of_nothing_and_out_of_range() -> None:
    assert net_promoter_score([]) is None
    with pytest.raises(ValueError):
        net_promoter_score([11])


@given(st.lists(st.integers(0, 10), min_size=1, max_size=500))
def test_nps_is_bounded(answers: list[int]) -> None:
    score = net_promoter_score(answers)
    assert score is not None
    assert -100 <= score.score <= 100
    assert 0 <= score.margin <= 100 * 1.96 / math.sqrt(score.n) + 1e-9


def test_percentiles_of_1_to_100() -> None:
    figures = quantiles(sketch_of(range(1, 101)))
    assert figures["p50"] == pytest.approx(50, rel=0.02)
    assert figures["p90"] == pytest.approx(90, rel=0.02)
    assert figures["p99"] == pytest.approx(99, rel=0.02)


def test_percentiles_of_nothing_are_none() -> None:
    assert quantiles(sketch_of([])) == {"p50": None, "p90": None, "p99": None}


@given(
    st.lists(st.floats(1, 1e7), min_size=1, max_size=300),
    st.lists(st.floats(1, 1e7), min_size=1, max_size=300),
)
def test_merged_bucket_sketches_give_the_percentiles_of_the_whole(a: list[float], b: list[float]) -> None:
    whole = sorted(a + b)
    median = merged([sketch_of(a), sketch_of(b)]).get_quantile_value(0.5)
    # DDSketch's rank is the lower median; within its 1 % relative accuracy of that value.
    lower_median = whole[(len(whole) - 1) // 2]
    assert median == pytest.approx(lower_median, rel=0.011)
    assert stdlib.median(whole) > 0


def test_grouped_bins_answer_what_the_library_answers() -> None:
    """The PostgreSQL report's percentiles (bins counted by the database) are DDSketch's own."""
    import random
    from collections import Counter

    from services.analytics.grouped import Bins, python_bin
    from services.analytics.statistics import sketch_of

    rng = random.Random(4)
    samples = [
        [0.0, 0.0, 5.0],
        [42.0],
        [rng.lognormvariate(8, 2) for _ in range(1000)],
        [rng.choice([0.0, 60.0, 61.0, 3600.0]) for _ in range(77)],
        *([rng.uniform(0, 10**6) for _ in range(rng.randint(1, 40))] for _ in range(50)),
    ]
    for values in samples:
        bins = Counter(python_bin(v) for v in values)
        half = len(values) // 2
        merged = Bins(dict(Counter(python_bin(v) for v in values[:half])))
        merged.merge(Bins(dict(Counter(python_bin(v) for v in values[half:]))))
        sketch = sketch_of(values)
        for grouped in (Bins.of(list(bins), list(bins.values())), merged):
            assert grouped.count == sketch.count
            for q in (0.0, 0.5, 0.9, 0.99, 1.0):
                assert grouped.get_quantile_value(q) == sketch.get_quantile_value(q), (values, q)
    assert Bins().get_quantile_value(0.5) is None
