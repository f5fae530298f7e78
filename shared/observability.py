"""Structured JSON logs carrying the correlation id, and the Prometheus metrics every service exports."""

from __future__ import annotations

import logging
import sys
import time
from contextvars import ContextVar
from typing import Any

from prometheus_client import Counter, Gauge, Histogram
from pythonjsonlogger.json import JsonFormatter
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.ids import new_id

correlation_id: ContextVar[str | None] = ContextVar("correlation_id", default=None)
CORRELATION_HEADER = "x-correlation-id"

HTTP_REQUESTS = Counter(
    "kefu_http_requests_total", "HTTP requests handled", ["service", "method", "route", "status"]
)
HTTP_LATENCY = Histogram(
    "kefu_http_request_duration_seconds",
    "HTTP request latency",
    ["service", "method", "route"],
    buckets=(0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5, 5.0),
)
EVENTS_PUBLISHED = Counter(
    "kefu_events_published_total", "Events confirmed by the broker", ["service", "type"]
)
EVENTS_CONSUMED = Counter(
    "kefu_events_consumed_total",
    "Events taken from a service's queue, by outcome",
    ["service", "type", "outcome"],
)
OUTBOX_PENDING = Gauge("kefu_outbox_pending", "Outbox rows not yet confirmed", ["service"])
OUTBOX_OLDEST_AGE = Gauge(
    "kefu_outbox_oldest_pending_age_seconds", "Age of the oldest unconfirmed outbox row", ["service"]
)


class _CorrelationFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.correlation_id = correlation_id.get()
        return True


def configure_logging(level: str = "INFO", fmt: str = "json") -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.addFilter(_CorrelationFilter())
    if fmt == "json":
        handler.setFormatter(
            JsonFormatter(
                "{asctime}{levelname}{name}{message}{correlation_id}",
                style="{",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            )
        )
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(correlation_id)s] %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


class RequestContextMiddleware:
    """Sets the correlation id for the request (from `X-Correlation-ID` or new), echoes it, and times it."""

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = _header(scope, CORRELATION_HEADER.encode())
        cid = incoming if incoming and len(incoming) <= 200 else str(new_id())
        token = correlation_id.set(cid)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (CORRELATION_HEADER.encode(), cid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            route = _route_template(scope)
            HTTP_REQUESTS.labels(self.service, scope["method"], route, str(status)).inc()
            HTTP_LATENCY.labels(self.service, scope["method"], route).observe(time.perf_counter() - started)
            correlation_id.reset(token)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return str(value.decode("latin-1"))
    return None


def _route_template(scope: Scope) -> str:
    # The matched route's template keeps label cardinality bounded; unmatched paths share one label.
    route: Any = scope.get("route")
    return getattr(route, "path", None) or "unmatched"
