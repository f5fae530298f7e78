"""Vocabulary shared by several event schemas."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict


class Channel(StrEnum):
    PHONE = "phone"
    EMAIL = "email"
    CHAT = "chat"
    WEB = "web"
    SOCIAL = "social"
    WALK_IN = "walk_in"


class ContactKind(StrEnum):
    INQUIRY = "inquiry"
    COMPLAINT = "complaint"
    REPAIR = "repair"
    FEEDBACK = "feedback"
    SUGGESTION = "suggestion"


class Priority(StrEnum):
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    URGENT = "urgent"


class Tier(StrEnum):
    STANDARD = "standard"
    VIP = "vip"


class EventData(BaseModel):
    """Base for event payloads: unknown fields are tolerated so producers can add fields within a version."""

    model_config = ConfigDict(extra="ignore", frozen=True)
