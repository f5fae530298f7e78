"""analytics' request and response bodies."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, UrlConstraints


class Overview(BaseModel):
    """The dashboard headline."""

    tickets_created: int = Field(description="Tickets opened in the window.")
    tickets_resolved: int = Field(0, description="Tickets resolved in the window (and still resolved).")
    backlog: int = Field(0, description="Tickets open at the end of the window.")
    sla_breaches: int = Field(0, description="SLA clocks breached in the window.")
    sla_warnings: int = Field(0, description="SLA warnings in the window.")
    since: datetime | None = None
    until: datetime | None = None


class Report(BaseModel):
    """A metrics report: the window, how it is bucketed and filtered, and the figures."""

    model_config = ConfigDict(extra="allow")

    since: datetime
    until: datetime
    filters: dict[str, str] = Field(default_factory=dict)


class SurveyQuestion(BaseModel):
    id: Literal["csat", "nps", "ces", "comment"]
    text: str
    text_zh: str
    scale: tuple[int, int] | None = None


class SurveyForm(BaseModel):
    """What a customer sees when they open the survey link."""

    survey_id: uuid.UUID
    about: Literal["ticket", "presentation"]
    expires_at: datetime
    answered: bool
    questions: list[SurveyQuestion]


class SurveyAnswer(BaseModel):
    model_config = ConfigDict(extra="forbid")

    csat: int | None = Field(None, ge=1, le=5, description="1 very dissatisfied … 5 very satisfied.")
    nps: int | None = Field(None, ge=0, le=10, description="How likely to recommend us, 0–10.")
    ces: int | None = Field(None, ge=1, le=7, description="How easy it was to get help, 1–7.")
    comment: str | None = Field(None, max_length=5000)


class SurveyReceipt(BaseModel):
    survey_id: uuid.UUID
    completed_at: datetime


class FeedEntry(BaseModel):
    """A warning or a breach on the operations feed."""

    id: int = Field(description="Feed position; the SSE event id (`Last-Event-ID`) and webhook item.")
    type: Literal["sla.breach", "sla.warning"]
    ticket_id: uuid.UUID
    metric: str
    cycle: int
    policy_id: uuid.UUID | None
    policy_name: str | None
    target_seconds: int
    due_at: datetime
    occurred_at: datetime = Field(description="When the breach (or warning) happened.")
    late: bool
    kind: str
    priority: str
    channel: str
    assignee: str | None
    group: str | None


WebhookEvent = Literal["sla.breach", "sla.warning"]


class WebhookCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: Annotated[AnyHttpUrl, UrlConstraints(max_length=2048)]
    events: list[WebhookEvent] = Field(default=["sla.breach", "sla.warning"], min_length=1, max_length=2)
    secret: str | None = Field(
        None, min_length=16, max_length=200, description="HMAC key; generated when omitted (shown once)."
    )


class WebhookOut(BaseModel):
    id: uuid.UUID
    url: str
    events: list[str]
    active: bool
    created_by: str
    created_at: datetime


class WebhookCreated(WebhookOut):
    secret: str = Field(description="The signing secret; only returned at creation.")


class DeliveryOut(BaseModel):
    id: uuid.UUID
    webhook_id: uuid.UUID
    feed_id: int
    event_type: str
    status: Literal["pending", "delivered", "failed", "cancelled"]
    attempts: int
    next_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None
    payload: dict[str, Any]
