"""Builders of the events analytics consumes, as the producers send them."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

from shared.bus.base import Delivery
from shared.clock import utc_iso


def envelope(
    type_: str, data: dict[str, Any], *, event_id: str | None = None, at: datetime | None = None
) -> bytes:
    body = {
        "specversion": "1.0",
        "id": event_id or str(uuid.uuid4()),
        "source": f"/kefu/{type_.split('.', maxsplit=1)[0]}",
        "type": type_,
        "time": utc_iso(at) if at else "2026-03-02T00:00:00Z",
        "datacontenttype": "application/json",
        "data": data,
    }
    return json.dumps(body, default=str).encode()


def delivery(type_: str, data: dict[str, Any], **kw: Any) -> Delivery:
    return Delivery(
        body=envelope(type_, data, **kw),
        routing_key=type_,
        headers={},
        content_type="application/cloudevents+json",
        message_id=None,
    )


def snapshot(
    ticket_id: uuid.UUID, version: int, status: str, created_at: datetime, **kw: Any
) -> dict[str, Any]:
    return {
        "id": str(ticket_id),
        "version": version,
        "kind": kw.pop("kind", "complaint"),
        "priority": kw.pop("priority", "normal"),
        "channel": kw.pop("channel", "phone"),
        "status": status,
        "created_at": utc_iso(created_at),
        **kw,
    }


def lifecycle(
    ticket_id: uuid.UUID,
    created_at: datetime,
    *,
    responded_at: datetime | None = None,
    resolved_at: datetime | None = None,
    replies: int = 1,
    **kw: Any,
) -> list[tuple[str, dict[str, Any]]]:
    """created → (responded) → (resolved) of one ticket, versions 1, 2, 3."""
    events: list[tuple[str, dict[str, Any]]] = [
        (
            "tickets.ticket.created.v1",
            {"ticket": snapshot(ticket_id, 1, "new", created_at, **kw), "policy_name": "complaints"},
        )
    ]
    if responded_at is not None:
        events.append(
            (
                "tickets.ticket.responded.v1",
                {
                    "ticket": snapshot(ticket_id, 2, "in_progress", created_at, **kw),
                    "responded_by": "alice",
                    "responded_at": utc_iso(responded_at),
                    "first": True,
                },
            )
        )
    if resolved_at is not None:
        events.append(
            (
                "tickets.ticket.resolved.v1",
                {
                    "ticket": snapshot(ticket_id, 3, "resolved", created_at, **kw),
                    "resolution_code": "fixed",
                    "resolved_by": "alice",
                    "resolved_at": utc_iso(resolved_at),
                    "first_response_at": utc_iso(responded_at) if responded_at else None,
                    "public_replies": replies,
                    "reopen_count": 0,
                },
            )
        )
    return events


def sla_outcome(
    type_: str,
    ticket_id: uuid.UUID,
    created_at: datetime,
    at: datetime,
    metric: str = "first_response",
    **kw: Any,
) -> tuple[str, dict[str, Any]]:
    field = {"tickets.sla.breached.v1": "breached_at", "tickets.sla.warning.v1": "warned_at"}.get(
        type_, "met_at"
    )
    data: dict[str, Any] = {
        "ticket": snapshot(ticket_id, 2, "open", created_at, **kw),
        "policy_name": "complaints",
        "metric": metric,
        "target_seconds": 86400,
        "due_at": utc_iso(at),
        field: utc_iso(at),
    }
    if field == "met_at":
        data["elapsed_seconds"] = 60
    return type_, data
