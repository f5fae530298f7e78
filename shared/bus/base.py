"""What every transport offers: confirmed publishing, and consuming with retry and dead letters."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol


@dataclass(frozen=True)
class OutgoingMessage:
    """A serialised CloudEvent ready to publish; `routing_key` is the event type."""

    id: str
    routing_key: str
    body: bytes
    timestamp: datetime
    correlation_id: str | None = None
    content_type: str = "application/cloudevents+json"
    headers: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Delivery:
    """A message handed to a consumer; `attempt` counts from 1 and grows with each retry."""

    body: bytes
    routing_key: str
    headers: Mapping[str, Any]
    content_type: str | None
    message_id: str | None
    attempt: int = 1


class OutcomeKind(StrEnum):
    HANDLED = "handled"
    DUPLICATE = "duplicate"
    RETRY = "retry"
    DEAD = "dead"


@dataclass(frozen=True)
class Outcome:
    kind: OutcomeKind
    reason: str = ""

    @classmethod
    def handled(cls) -> Outcome:
        return cls(OutcomeKind.HANDLED)

    @classmethod
    def duplicate(cls) -> Outcome:
        return cls(OutcomeKind.DUPLICATE)

    @classmethod
    def retry(cls, reason: str) -> Outcome:
        return cls(OutcomeKind.RETRY, reason)

    @classmethod
    def dead(cls, reason: str) -> Outcome:
        return cls(OutcomeKind.DEAD, reason)


@dataclass(frozen=True)
class DeadLetter:
    """A message parked in a service's dead-letter queue, with why."""

    message_id: str | None
    routing_key: str
    reason: str
    attempts: int
    body: bytes


class PublishFailed(Exception):
    """Some messages were not confirmed by the broker; `failed_ids` must be published again."""

    def __init__(self, failed_ids: set[str], reason: str) -> None:
        super().__init__(reason)
        self.failed_ids = failed_ids
        self.reason = reason


DeliveryHandler = Callable[[Delivery], Awaitable[Outcome]]


class Transport(Protocol):
    async def connect(self) -> None: ...

    async def close(self) -> None: ...

    @property
    def is_connected(self) -> bool: ...

    async def publish(self, messages: Sequence[OutgoingMessage]) -> None:
        """Return once every message is confirmed; raise `PublishFailed` naming those that are not."""

    async def consume(self, service: str, routing_keys: Sequence[str], handler: DeliveryHandler) -> None:
        """Deliver matching messages to `handler`, retrying and dead-lettering as its outcome says."""

    async def dead_letters(self, service: str, *, remove: bool = False) -> list[DeadLetter]: ...

    async def replay_dead_letters(self, service: str, limit: int | None = None) -> int:
        """Put dead letters back on the service's queue, with a fresh retry budget."""
