"""Events the analytics service publishes."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import Field

from shared.contracts.common import Channel, EventData
from shared.events import registry


@registry.register(
    "analytics.survey.requested.v1", "A satisfaction survey is ready for a delivery system to send."
)
class SurveyRequested(EventData):
    survey_id: uuid.UUID
    token: str = Field(description="The survey's only credential; goes into the link sent to the customer.")
    channel: Channel | None = None
    ticket_id: uuid.UUID | None = None
    customer_id: uuid.UUID | None = None
    client_id: uuid.UUID | None = None
    expires_at: datetime


@registry.register("analytics.survey.completed.v1", "A customer answered a satisfaction survey.")
class SurveyCompleted(EventData):
    survey_id: uuid.UUID
    ticket_id: uuid.UUID | None = None
    customer_id: uuid.UUID | None = None
    client_id: uuid.UUID | None = None
    csat: int | None = Field(default=None, ge=1, le=5)
    nps: int | None = Field(default=None, ge=0, le=10)
    ces: int | None = Field(default=None, ge=1, le=7)
    comment: str | None = Field(default=None, max_length=5000)
    completed_at: datetime
