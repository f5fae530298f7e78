"""Satisfaction figures: each with its n, insufficient below the minimum, segments."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.analytics.models import Survey
from services.analytics.satisfaction import figures

NOW = datetime(2026, 3, 2, tzinfo=UTC)


def answered(csat: int | None = None, nps: int | None = None, ces: int | None = None) -> Survey:
    return Survey(
        token_hash="x",
        origin_key="x",
        created_at=NOW,
        expires_at=NOW,
        answered_at=NOW,
        csat=csat,
        nps=nps,
        ces=ces,
    )


def test_csat_nps_ces_with_their_n() -> None:
    answers = [answered(5, 10, 6)] * 6 + [answered(4, 8, 5)] * 2 + [answered(2, 3, 2)] * 2
    out = figures(answers, delivered=20, min_n=10)
    assert out["response_rate"] == {"value": 0.5, "responses": 10, "delivered": 20}
    assert out["csat"]["percent"] == 80.0 and out["csat"]["n"] == 10
    assert out["csat"]["ci95"] == pytest.approx([49.02, 94.33], abs=0.01)
    assert out["nps"]["score"] == 40.0 and out["nps"]["n"] == 10  # 6 promoters, 2 passives, 2 detractors
    # (6·6 + 2·5 + 2·2) / 10 = 5.0
    assert out["ces"] == {"status": "ok", "mean": 5.0, "percent_easy": 80.0, "n": 10}


def test_small_segments_are_insufficient_not_numbers() -> None:
    out = figures([answered(5, 10, 7)] * 3, delivered=3, min_n=30)
    assert out["csat"] == {"status": "insufficient", "n": 3, "min_n": 30}
    assert out["nps"]["status"] == "insufficient" and out["ces"]["status"] == "insufficient"


def test_nothing_sent_has_no_response_rate() -> None:
    out = figures([], delivered=0, min_n=1)
    assert out["response_rate"]["value"] is None
    assert out["csat"] == {"status": "insufficient", "n": 0, "min_n": 1}
