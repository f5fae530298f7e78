"""analytics' own settings (`ANALYTICS_*`): reporting calendar, survey expiry, minimum sample size."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class AnalyticsSettings(BaseSettings):
    """Read once from the environment; the platform-wide settings stay in `shared.settings`."""

    model_config = SettingsConfigDict(env_prefix="ANALYTICS_", extra="ignore")

    # Segments with fewer answers than this are reported as insufficient, not as a number.
    min_segment_n: int = Field(default=30, ge=1)
    survey_ttl_days: int = Field(default=28, ge=1)
    # The reporting calendar for "business time" figures: working days of the Chinese statutory
    # calendar (with make-up days) and these opening intervals, in this time zone.
    business_time_zone: str = "Asia/Shanghai"
    # Zones whose daily and weekly rollups the projector keeps (PostgreSQL): a headline report in one of
    # them, filtered on nothing but kind and channel, reads those instead of the facts. After adding a
    # zone, build its rollups with `python -m services.analytics rollups` (until then reports scan facts).
    rollup_zones: list[str] = ["Asia/Shanghai"]
    business_hours: list[tuple[str, str]] = [("09:00", "12:00"), ("13:00", "18:00")]
    webhook_timeout_seconds: float = Field(default=5.0, gt=0)
    webhook_retry_delays_seconds: list[float] = [1.0, 5.0, 30.0, 120.0, 600.0]
    webhook_poll_seconds: float = Field(default=0.5, gt=0)
    feed_poll_seconds: float = Field(default=0.5, gt=0)
    # Events are projected in batches: up to this many in one transaction, gathered for at most this long.
    # Every batch costs about ten round trips whatever its size, so a backlog drains fastest in full
    # batches; a tenth of a second is no delay for reports, which are read minutes apart.
    batch_max_size: int = Field(default=500, ge=1, le=5000)
    batch_max_wait_ms: float = Field(default=100, ge=0)
    # A batch fills only if the broker hands over that many messages at once: analytics' own defaults
    # for the in-flight limits, used unless KEFU_PREFETCH / KEFU_CONSUMER_CONCURRENCY are set explicitly.
    consumer_prefetch: int = Field(default=1000, ge=1, le=65535)
    consumer_concurrency: int = Field(default=1000, ge=1)


@lru_cache(maxsize=1)
def analytics_settings() -> AnalyticsSettings:
    return AnalyticsSettings()
