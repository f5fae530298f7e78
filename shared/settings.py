"""Settings from the environment: platform-wide `KEFU_*`, broker `AMQP_URL`, per-service `<SERVICE>_*`."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ApiKeySetting(BaseModel):
    name: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    roles: list[str]


class ServiceSettings(BaseSettings):
    """What one service needs to run. Build with `ServiceSettings.for_service("intake")`."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    service: str = "kefu"
    data_dir: Path = Field(default=Path("data"), validation_alias=AliasChoices("KEFU_DATA_DIR"))
    database_url: str = ""
    migrate_on_start: bool = True
    # Connections to the database, all kept open: above the consumer's concurrency, so the relay, the
    # timer scheduler and HTTP requests find one free; beyond it callers wait for one (backpressure).
    db_pool_size: int = Field(default=20, ge=1, le=200)
    # How long a caller waits for a free connection. An HTTP request that waits longer is answered 503
    # with `Retry-After`: its client has most likely given up by then, and a prompt "busy" is more use to
    # it than an answer it no longer reads.
    db_pool_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    amqp_url: str | None = Field(default=None, validation_alias=AliasChoices("AMQP_URL"))
    exchange: str = Field(default="kefu.events", validation_alias=AliasChoices("KEFU_EXCHANGE"))
    queue_prefix: str = Field(default="kefu", validation_alias=AliasChoices("KEFU_QUEUE_PREFIX"))
    prefetch: int = Field(default=64, ge=1, le=1000, validation_alias=AliasChoices("KEFU_PREFETCH"))
    consumer_concurrency: int = Field(
        default=16, ge=1, le=256, validation_alias=AliasChoices("KEFU_CONSUMER_CONCURRENCY")
    )
    # Backoff before each redelivery of an event whose handler failed; after the last one it is dead.
    retry_delays_ms: list[int] = Field(
        default=[1_000, 10_000, 60_000], validation_alias=AliasChoices("KEFU_RETRY_DELAYS_MS")
    )
    outbox_batch_size: int = Field(
        default=200, ge=1, le=5000, validation_alias=AliasChoices("KEFU_OUTBOX_BATCH")
    )
    outbox_poll_seconds: float = Field(
        default=1.0, gt=0, validation_alias=AliasChoices("KEFU_OUTBOX_POLL_SECONDS")
    )
    jwt_secret: str = Field(
        default="kefu-dev-secret-not-for-production-use", validation_alias=AliasChoices("KEFU_JWT_SECRET")
    )
    jwks_url: str | None = Field(default=None, validation_alias=AliasChoices("KEFU_JWKS_URL"))
    jwt_audience: str | None = Field(default=None, validation_alias=AliasChoices("KEFU_JWT_AUDIENCE"))
    # JSON list of {"name", "sha256", "roles"}: API keys for other systems, stored only as hashes.
    api_keys: list[ApiKeySetting] = Field(default=[], validation_alias=AliasChoices("KEFU_API_KEYS"))
    max_body_bytes: int = Field(default=1_048_576, validation_alias=AliasChoices("KEFU_MAX_BODY_BYTES"))
    # An event body larger than this is dead-lettered unread: no producer of ours sends one, and parsing
    # a huge hostile body would stall the consumer.
    max_event_bytes: int = Field(
        default=1_048_576, ge=1024, validation_alias=AliasChoices("KEFU_MAX_EVENT_BYTES")
    )
    log_level: str = Field(default="INFO", validation_alias=AliasChoices("KEFU_LOG_LEVEL"))
    log_format: str = Field(default="json", validation_alias=AliasChoices("KEFU_LOG_FORMAT"))

    @classmethod
    def for_service(cls, service: str, **overrides: object) -> ServiceSettings:
        """Read `<SERVICE>_DATABASE_URL` and friends for one service, with explicit overrides on top."""
        prefixed = type(
            f"{service.title()}Settings",
            (cls,),
            {
                "model_config": SettingsConfigDict(
                    env_prefix=f"{service.upper()}_", extra="ignore", populate_by_name=True
                )
            },
        )
        settings: ServiceSettings = prefixed(service=service, **overrides)
        if not settings.database_url:
            settings.database_url = f"sqlite+aiosqlite:///{settings.data_dir / service}.db"
        return settings
