"""tickets' own settings (`TICKETS_*` environment variables): follow-ups, auto-close, low satisfaction."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class TicketsConfig(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TICKETS_", extra="ignore")

    auto_close_days: float = Field(
        default=7, gt=0, description="Resolved tickets close after this many days."
    )
    follow_up_seconds: int = Field(default=3 * 86_400, ge=0, description="Follow-up delay without a policy.")
    low_csat: int = Field(default=2, ge=1, le=5, description="A CSAT at or below this reopens and escalates.")
    gauge_refresh_seconds: float = Field(default=60, gt=0)


@lru_cache
def config() -> TicketsConfig:
    return TicketsConfig()
