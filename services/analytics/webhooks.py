"""Webhook deliveries: HMAC-SHA256-signed POSTs of feed items, retried with backoff until a 2xx.

Signature header: `X-Kefu-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`; the
receiver recomputes it over the raw body and rejects old timestamps, which defeats replays.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import httpx
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from services.analytics import metrics
from services.analytics.models import TicketFact, Webhook, WebhookDelivery
from services.analytics.settings import analytics_settings
from shared.background import BackgroundLoop
from shared.clock import Clock, sleep_until_set
from shared.db import Database, dialect_name

log = logging.getLogger("kefu.analytics.webhooks")

SIGNATURE_HEADER = "X-Kefu-Signature"


def signature(secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify(secret: str, header: str, body: bytes) -> bool:
    """What a receiver does (and what the tests use)."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        expected = signature(secret, int(parts["t"]), body)
    except (KeyError, ValueError):
        return False
    return hmac.compare_digest(expected, header)


def next_delay(attempts: int, delays: Sequence[float]) -> float | None:
    """Seconds before the next attempt after `attempts` failures; None when the budget is spent."""
    return delays[attempts - 1] if 0 < attempts <= len(delays) else None


class WebhookDispatcher:
    """Posts due deliveries; replicas share the work by claiming rows with SKIP LOCKED."""

    def __init__(
        self, db: Database, clock: Clock, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.db = db
        self.clock = clock
        self.settings = analytics_settings()
        self.http = httpx.AsyncClient(timeout=self.settings.webhook_timeout_seconds, transport=transport)
        self._loop = BackgroundLoop("analytics-webhooks", asyncio.Event())
        self._gauges_at = 0.0

    def start(self) -> None:
        self._loop.start(self._run)

    async def stop(self) -> None:
        """Finish the deliveries in hand, then stop."""
        await self._loop.stop()
        await self.http.aclose()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while self._loop.next_pass():
            try:
                sent = await self.deliver_due()
                if loop.time() - self._gauges_at > 5:
                    self._gauges_at = loop.time()
                    await self.refresh_gauges()
            except asyncio.CancelledError:
                raise
            except Exception:  # a database hiccup must not end deliveries for good
                log.warning("webhook dispatch failed", exc_info=True)
                sent = 0
            if not sent:
                await sleep_until_set(self._loop.wake, self.settings.webhook_poll_seconds)

    async def deliver_due(self, batch: int = 20) -> int:
        """Attempt every due delivery once; returns how many were attempted.

        Rows are claimed (attempt counted, a lease set) in one short transaction and the outcome written
        in another, so no database lock is held while a slow receiver answers.
        """
        now = self.clock.now()
        async with self.db.transaction() as session:
            due = await self._claim(session, batch)
            hooks = {h.id: h for h in (await session.execute(sa.select(Webhook))).scalars()}
            work = []
            for delivery in due:
                hook = hooks.get(delivery.webhook_id)
                if hook is None or not hook.active:
                    delivery.status = "cancelled"
                    continue
                delivery.attempts += 1
                delivery.next_attempt_at = now + timedelta(seconds=self.settings.webhook_timeout_seconds + 30)
                work.append(
                    (
                        hook.url,
                        hook.secret,
                        delivery.id,
                        delivery.attempts,
                        delivery.event_type,
                        delivery.payload,
                    )
                )
        results = await asyncio.gather(*(self._post(*item) for item in work))
        async with self.db.transaction() as session:
            for (_, _, delivery_id, attempts, _, _), (status_code, error) in zip(work, results, strict=True):
                delivery = await session.get(WebhookDelivery, delivery_id)
                if delivery is not None:
                    self._record(delivery, attempts, status_code, error)
        return len(due)

    async def _claim(self, session: AsyncSession, batch: int) -> list[WebhookDelivery]:
        query = (
            sa.select(WebhookDelivery)
            .where(WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at <= self.clock.now())
            .order_by(WebhookDelivery.next_attempt_at)
            .limit(batch)
        )
        if dialect_name(session) == "postgresql":
            query = query.with_for_update(skip_locked=True)
        return list((await session.execute(query)).scalars().all())

    async def _post(
        self, url: str, secret: str, delivery_id: Any, attempt: int, event_type: str, payload: Any
    ) -> tuple[int | None, str | None]:
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "kefu-analytics-webhooks/1",
            "X-Kefu-Event": event_type,
            "X-Kefu-Delivery": str(delivery_id),
            "X-Kefu-Attempt": str(attempt),
            SIGNATURE_HEADER: signature(secret, int(self.clock.now().timestamp()), body),
        }
        try:
            response = await self.http.post(url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return None, f"{type(exc).__name__}: {exc}"[:2000]
        ok = 200 <= response.status_code < 300
        return response.status_code, None if ok else f"HTTP {response.status_code}"

    def _record(
        self, delivery: WebhookDelivery, attempts: int, status_code: int | None, error: str | None
    ) -> None:
        now = self.clock.now()
        delivery.last_status_code, delivery.last_error = status_code, error
        if error is None:
            delivery.status, delivery.delivered_at, delivery.next_attempt_at = "delivered", now, None
            metrics.WEBHOOK_DELIVERIES.labels("delivered").inc()
            return
        delay = next_delay(attempts, self.settings.webhook_retry_delays_seconds)
        if delay is None:
            delivery.status, delivery.next_attempt_at = "failed", None
            metrics.WEBHOOK_DELIVERIES.labels("failed").inc()
        else:
            delivery.next_attempt_at = now + timedelta(seconds=delay)
            metrics.WEBHOOK_DELIVERIES.labels("retry").inc()

    async def refresh_gauges(self) -> None:
        """Open tickets by status, from the facts (shared by all replicas, so every replica agrees)."""
        async with self.db.transaction() as session:
            rows = (
                await session.execute(
                    sa.select(TicketFact.status, sa.func.count())
                    .where(TicketFact.status.not_in(("resolved", "closed")))
                    .group_by(TicketFact.status)
                )
            ).all()
        counts: dict[str, Any] = dict(rows)
        for status in ("new", "open", "in_progress", "waiting_customer", "reopened"):
            metrics.OPEN_TICKETS.labels(status).set(counts.get(status, 0))
