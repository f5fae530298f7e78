"""tickets' Prometheus metrics: SLA outcomes and open tickets by status."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

SLA_BREACHES = Counter(
    "kefu_sla_breaches_total", "SLA clocks that passed their due time", ["metric", "priority"]
)
SLA_WARNINGS = Counter(
    "kefu_sla_warnings_total", "SLA clocks that reached their warning time", ["metric", "priority"]
)
OPEN_TICKETS = Gauge("kefu_open_tickets", "Tickets not yet closed, by status", ["status"])
