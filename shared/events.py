"""The CloudEvents 1.0 envelope and the registry of event types with their `data` schemas."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from shared.clock import utc_iso
from shared.ids import new_id

STRUCTURED_CONTENT_TYPE = "application/cloudevents+json"
TYPE_PATTERN = r"^[a-z][a-z_]*\.[a-z][a-z_]*\.[a-z][a-z_]*\.v[0-9]+$"


class CloudEvent(BaseModel):
    """A CloudEvents 1.0 envelope in structured mode, as every Kefu service publishes it."""

    model_config = ConfigDict(extra="allow")

    specversion: Literal["1.0"] = "1.0"
    id: str = Field(min_length=1, max_length=200)
    source: str = Field(min_length=1, max_length=500)
    type: str = Field(min_length=1, max_length=200)
    time: datetime | None = None
    subject: str | None = Field(default=None, max_length=500)
    datacontenttype: str | None = "application/json"
    data: Any = None
    correlationid: str | None = Field(default=None, max_length=200)

    @field_validator("time")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("time must carry a time zone")
        return value

    def to_json(self) -> bytes:
        body = self.model_dump(mode="json", exclude_none=True)
        if self.time is not None:
            body["time"] = utc_iso(self.time)
        return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


class InvalidEvent(Exception):
    """A message that can never be handled: it goes to the dead-letter queue with this reason."""


D = TypeVar("D", bound=BaseModel)


@dataclass(frozen=True)
class EventType:
    name: str
    data_model: type[BaseModel]
    summary: str


class EventRegistry:
    """Known event types and the schema of their `data`, so handlers get typed, validated data."""

    def __init__(self) -> None:
        self._types: dict[str, EventType] = {}

    def register(self, name: str, summary: str = "") -> Callable[[type[D]], type[D]]:
        if not re.match(TYPE_PATTERN, name):
            raise ValueError(f"event type {name!r} is not <service>.<entity>.<verb>.v<N>")

        def add(model: type[D]) -> type[D]:
            if name in self._types:
                raise ValueError(f"event type {name} registered twice")
            self._types[name] = EventType(name, model, summary or (model.__doc__ or "").strip())
            return model

        return add

    def __contains__(self, name: object) -> bool:
        return name in self._types

    def __iter__(self) -> Iterator[EventType]:
        return iter(sorted(self._types.values(), key=lambda t: t.name))

    def get(self, name: str) -> EventType:
        try:
            return self._types[name]
        except KeyError:
            raise InvalidEvent(f"unknown event type {name!r}") from None

    def validate_data(self, event: CloudEvent) -> BaseModel:
        """The event's `data` as its registered model, or `InvalidEvent` saying what is wrong."""
        event_type = self.get(event.type)
        try:
            return event_type.data_model.model_validate(event.data)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'data'}: {err['msg']}" for err in exc.errors()[:5]
            )
            raise InvalidEvent(f"schema-invalid data for {event.type}: {problems}") from None


registry = EventRegistry()


def make_event(
    *,
    type: str,
    source: str,
    data: BaseModel | Mapping[str, Any],
    subject: str | None = None,
    time: datetime,
    correlation_id: str | None = None,
) -> CloudEvent:
    payload = data.model_dump(mode="json") if isinstance(data, BaseModel) else dict(data)
    return CloudEvent(
        id=str(new_id()),
        source=source,
        type=type,
        time=time,
        subject=subject,
        data=payload,
        correlationid=correlation_id,
    )


def parse_message(body: bytes, headers: Mapping[str, Any], content_type: str | None) -> CloudEvent:
    """Read a CloudEvent from an AMQP message in structured or binary (`ce-*` headers) mode."""
    if (
        content_type
        and content_type.split(";")[0].strip() != STRUCTURED_CONTENT_TYPE
        and _has_ce_headers(headers)
    ):
        return _parse_binary(body, headers, content_type)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidEvent("body is not valid UTF-8") from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidEvent(f"body is not JSON: {exc.msg} at position {exc.pos}") from None
    if not isinstance(raw, dict):
        raise InvalidEvent("body is not a CloudEvent: expected a JSON object")
    return _validated_envelope(raw)


def _has_ce_headers(headers: Mapping[str, Any]) -> bool:
    return any(str(key).lower().startswith(("ce-", "ce_")) for key in headers)


def _parse_binary(body: bytes, headers: Mapping[str, Any], content_type: str) -> CloudEvent:
    attributes: dict[str, Any] = {}
    for key, value in headers.items():
        name = str(key).lower()
        if name.startswith(("ce-", "ce_")):
            attributes[name[3:]] = value.decode() if isinstance(value, bytes) else value
    try:
        data = json.loads(body.decode("utf-8")) if body else None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise InvalidEvent("binary-mode data is not UTF-8 JSON") from None
    attributes["data"] = data
    attributes.setdefault("datacontenttype", content_type)
    return _validated_envelope(attributes)


def _validated_envelope(raw: dict[str, Any]) -> CloudEvent:
    try:
        return CloudEvent.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()[:5]
        )
        raise InvalidEvent(f"not a CloudEvent: {problems}") from None
