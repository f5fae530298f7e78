"""Write rate limits per credential: a token bucket per caller, answering 429 with `Retry-After`.

Every write (POST, PUT, PATCH, DELETE) is charged once: to the verified credential that made it — the
token's subject or the API key's name, charged by `shared.auth` right after authentication, so a forged
token can neither spend nor dodge another caller's budget — or, for a write carrying no credentials at
all (the public survey answers, or a write about to be refused with 401), to the client address, by
`AnonymousWriteLimitMiddleware` before anything else runs. Reads are never limited.

The buckets live in the process: several replicas each apply the limit, so a caller spread over N
replicas by the load balancer may write up to N times the configured rate (docs/decisions.md).
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from starlette.types import ASGIApp, Receive, Scope, Send

from shared.errors import Problem
from shared.limits import send_problem

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class RateLimitSettings(BaseSettings):
    """`KEFU_RATE_LIMIT_WRITES_PER_SECOND` (0 turns limiting off) and `KEFU_RATE_LIMIT_BURST`."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    # A ceiling against runaway clients, above what one credential drives in the benchmarks; deployments
    # that know their callers set it lower.
    writes_per_second: float = Field(
        default=1000.0, ge=0, validation_alias=AliasChoices("KEFU_RATE_LIMIT_WRITES_PER_SECOND")
    )
    burst: int = Field(default=2000, ge=1, validation_alias=AliasChoices("KEFU_RATE_LIMIT_BURST"))
    # Buckets kept at most; the least recently used is forgotten first (it is then full again).
    max_callers: int = Field(default=100_000, ge=1, validation_alias=AliasChoices("KEFU_RATE_LIMIT_CALLERS"))


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset_seconds: int  # until the bucket is full again
    retry_after: int  # seconds until one write is allowed; 0 when allowed

    def headers(self) -> dict[str, str]:
        headers = {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset_seconds),
        }
        if not self.allowed:
            headers["Retry-After"] = str(self.retry_after)
        return headers


class WriteLimiter:
    """Token buckets: `burst` writes at once, refilled at `rate` per second, one bucket per caller key."""

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key → (tokens, at)

    @classmethod
    def from_settings(cls, settings: RateLimitSettings | None = None) -> WriteLimiter | None:
        settings = settings or RateLimitSettings()
        if settings.writes_per_second <= 0:
            return None
        return cls(settings.writes_per_second, settings.burst, max_keys=settings.max_callers)

    def take(self, key: str) -> Decision:
        now = self.clock()
        tokens, at = self._buckets.pop(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - at) * self.rate)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        self._buckets[key] = (tokens, now)
        if len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return Decision(
            allowed=allowed,
            limit=self.burst,
            remaining=int(tokens),
            reset_seconds=math.ceil((self.burst - tokens) / self.rate),
            retry_after=0 if allowed else max(1, math.ceil((1.0 - tokens) / self.rate)),
        )


def too_many_writes(decision: Decision) -> Problem:
    return Problem(
        429,
        f"Too many writes from this caller; retry in {decision.retry_after} s.",
        slug="rate-limited",
        headers=decision.headers(),
    )


def _has_credentials(scope: Scope) -> bool:
    for key, value in scope.get("headers", []):
        if key.lower() in (b"authorization", b"x-api-key") and value.strip():
            return True
    return False


def client_key(scope: Scope) -> str:
    client = scope.get("client")
    return f"address:{client[0]}" if client else "address:unknown"


class AnonymousWriteLimitMiddleware:
    """Charges writes that carry no credentials to the client address; the rest are charged on auth."""

    def __init__(self, app: ASGIApp, limiter: WriteLimiter | None) -> None:
        self.app = app
        self.limiter = limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            self.limiter is not None
            and scope["type"] == "http"
            and scope["method"] in WRITE_METHODS
            and not _has_credentials(scope)
        ):
            decision = self.limiter.take(client_key(scope))
            if not decision.allowed:
                problem = too_many_writes(decision)
                await send_problem(
                    send,
                    429,
                    {
                        "type": "https://kefu.dev/problems/rate-limited",
                        "title": "Too Many Requests",
                        "status": 429,
                        "detail": problem.detail,
                        "instance": scope["path"],
                    },
                    headers=problem.headers,
                )
                return
        await self.app(scope, receive, send)
