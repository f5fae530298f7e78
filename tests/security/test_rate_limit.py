"""Writes are rate-limited per credential: a token bucket each, 429 problem with `Retry-After` when empty."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
import sqlalchemy as sa

from services.catalogue import SERVICES
from services.intake.models import Contact
from shared.app import create_service_app
from shared.auth import hash_api_key, issue_token
from shared.ratelimit import RateLimitSettings, WriteLimiter
from shared.settings import ServiceSettings
from tests.conftest import SECRET, bearer, contact_body
from tests.integration.conftest import Broker, Cluster, service_settings
from tests.security.conftest import API_KEY, gateway

BURST = 3


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_allows_its_burst_then_refills_at_its_rate() -> None:
    clock = FakeClock()
    limiter = WriteLimiter(rate=2.0, burst=3, clock=clock)
    assert [limiter.take("alice").allowed for _ in range(4)] == [True, True, True, False]
    refused = limiter.take("alice")
    assert (refused.retry_after, refused.remaining, refused.limit) == (1, 0, 3)
    assert refused.headers()["Retry-After"] == "1"
    assert limiter.take("bob").allowed  # another caller's bucket is full
    clock.now += 0.5  # one write's worth at 2 per second
    assert limiter.take("alice").allowed
    assert not limiter.take("alice").allowed
    clock.now += 60  # refills up to the burst, never beyond
    assert [limiter.take("alice").allowed for _ in range(4)] == [True, True, True, False]


def test_forgotten_callers_are_bounded_and_start_full() -> None:
    clock = FakeClock()
    limiter = WriteLimiter(rate=0.001, burst=1, max_keys=2, clock=clock)
    assert limiter.take("a").allowed and limiter.take("b").allowed
    assert not limiter.take("a").allowed
    assert limiter.take("c").allowed  # evicts "b", the least recently seen
    assert limiter.take("b").allowed  # "b" was forgotten: a full bucket again


def test_zero_rate_turns_limiting_off() -> None:
    assert WriteLimiter.from_settings(RateLimitSettings(writes_per_second=0)) is None
    defaults = WriteLimiter.from_settings(RateLimitSettings())
    assert defaults is not None and defaults.burst >= 1000  # generous: a ceiling for runaway clients


@pytest.fixture
async def limited(
    databases: dict[str, str], broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[Cluster, httpx.AsyncClient]]:
    """intake and analytics on PostgreSQL with a burst of three writes and (practically) no refill."""
    monkeypatch.setenv("KEFU_RATE_LIMIT_WRITES_PER_SECOND", "0.01")
    monkeypatch.setenv("KEFU_RATE_LIMIT_BURST", str(BURST))
    partner_key = {"name": "crm", "sha256": hash_api_key(API_KEY), "roles": ["partner"]}
    apps = {}
    for name in ("intake", "analytics"):
        settings = service_settings(name, databases, broker, api_keys=[partner_key])
        apps[name] = create_service_app(SERVICES[name].definition, settings)
    async with (
        apps["intake"].router.lifespan_context(apps["intake"]),
        apps["analytics"].router.lifespan_context(apps["analytics"]),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway(apps)), base_url="http://kefu") as client,
    ):
        yield Cluster(apps), client


async def contacts(cluster: Cluster) -> int:
    async with cluster.runtime("intake").db.transaction() as session:
        return int((await session.execute(sa.select(sa.func.count()).select_from(Contact))).scalar_one())


async def test_writes_past_the_burst_are_429_with_retry_after_and_nothing_written(
    limited: tuple[Cluster, httpx.AsyncClient],
) -> None:
    cluster, api = limited
    alice = bearer("agent", sub="alice")
    for remaining in range(BURST - 1, -1, -1):
        accepted = await api.post("/v1/contacts", json=contact_body(), headers=alice)
        assert accepted.status_code == 201, accepted.text
        assert accepted.headers["RateLimit-Limit"] == str(BURST)
        assert accepted.headers["RateLimit-Remaining"] == str(remaining)
    refused = await api.post("/v1/contacts", json=contact_body(), headers=alice)
    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["type"].endswith("/rate-limited")
    assert int(refused.headers["Retry-After"]) >= 1
    assert refused.headers["RateLimit-Remaining"] == "0"
    assert await contacts(cluster) == BURST
    # Reads are not limited; the limit follows the subject, whichever of its tokens is presented.
    assert (await api.get("/v1/contacts", headers=alice)).status_code == 200
    another_token = {"Authorization": f"Bearer {_token('alice', 'supervisor')}"}
    assert (await api.post("/v1/contacts", json=contact_body(), headers=another_token)).status_code == 429
    # Other callers keep their own budgets: another person, another system's key.
    bob = bearer("agent", sub="bob")
    assert (await api.post("/v1/contacts", json=contact_body(), headers=bob)).status_code == 201
    crm = {"X-API-Key": API_KEY}
    assert (await api.post("/v1/contacts", json=contact_body(), headers=crm)).status_code == 201
    assert await contacts(cluster) == BURST + 2


async def test_forged_tokens_neither_spend_nor_escape_another_callers_budget(
    limited: tuple[Cluster, httpx.AsyncClient],
) -> None:
    _, api = limited
    wrong_secret = "not-the-secret-but-long-enough!!"
    forged = {"Authorization": f"Bearer {_token('carol', 'agent', secret=wrong_secret)}"}
    for _ in range(BURST + 2):
        assert (await api.post("/v1/contacts", json=contact_body(), headers=forged)).status_code == 401
    carol = bearer("agent", sub="carol")
    statuses = [
        (await api.post("/v1/contacts", json=contact_body(), headers=carol)).status_code for _ in range(4)
    ]
    assert statuses == [201] * BURST + [429]


async def test_writes_without_credentials_are_limited_by_client_address(
    limited: tuple[Cluster, httpx.AsyncClient],
) -> None:
    _, api = limited
    unknown_survey = "/v1/surveys/" + "x" * 43 + "/responses"
    statuses = [(await api.post(unknown_survey, json={"csat": 5})).status_code for _ in range(BURST + 1)]
    assert statuses == [404] * BURST + [429]
    refused = await api.post(unknown_survey, json={"csat": 5})
    assert refused.headers["content-type"] == "application/problem+json"
    assert int(refused.headers["Retry-After"]) >= 1
    # A public read is never limited.
    assert (await api.get("/v1/surveys/" + "x" * 43)).status_code == 404


async def test_every_write_declares_429_with_retry_after() -> None:
    for name, entry in SERVICES.items():
        document = create_service_app(entry.definition, ServiceSettings.for_service(name)).openapi()
        for path, operations in document["paths"].items():
            for method, operation in operations.items():
                if method in ("post", "put", "patch", "delete"):
                    declared = operation["responses"].get("429")
                    assert declared is not None, (name, method, path)
                    assert "Retry-After" in declared["headers"]


def _token(subject: str, role: str, *, secret: str = SECRET) -> str:
    return issue_token(secret=secret, subject=subject, roles=[role])
