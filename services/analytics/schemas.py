"""analytics' response bodies."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class Overview(BaseModel):
    """The dashboard headline."""

    tickets_created: int = Field(description="Tickets opened in the window.")
    since: datetime | None = None
    until: datetime | None = None
