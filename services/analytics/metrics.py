"""analytics' Prometheus series (bounded labels only: outcome, metric, priority, status)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# Named apart from the tickets service's own `kefu_sla_*` counters: in the embedded mode every service
# shares one registry, and the two count different things (fired vs. received into the feed).
SLA_FEED_EVENTS = Counter(
    "kefu_analytics_sla_events_total",
    "SLA outcomes received into the analytics feed",
    ["outcome", "metric", "priority"],
)
OPEN_TICKETS = Gauge("kefu_analytics_open_tickets", "Tickets not yet resolved, by status", ["status"])
FIRST_RESPONSE = Histogram(
    "kefu_analytics_first_response_seconds",
    "Calendar time from ticket creation to the first public reply",
    ["priority"],
    buckets=(60, 300, 900, 1800, 3600, 7200, 14400, 28800, 86400, 172800, 604800),
)
RESOLUTION = Histogram(
    "kefu_analytics_resolution_seconds",
    "Calendar time from ticket creation to resolution",
    ["priority"],
    buckets=(900, 3600, 7200, 14400, 28800, 86400, 172800, 345600, 604800, 1209600),
)
CONSUMER_LAG = Gauge(
    "kefu_analytics_consumer_lag_seconds", "Age of the latest event when analytics applied it"
)
WEBHOOK_DELIVERIES = Counter(
    "kefu_analytics_webhook_attempts_total", "Webhook POST attempts, by outcome", ["outcome"]
)
SURVEYS = Counter("kefu_analytics_surveys_total", "Survey lifecycle steps", ["step"])
