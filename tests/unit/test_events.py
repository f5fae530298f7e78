"""The CloudEvents envelope and the event registry: typed data in, a reason out for anything else."""

import json
import uuid
from datetime import UTC, datetime

import pytest
from pydantic import BaseModel

from shared.contracts.intake import ContactReceived
from shared.events import CloudEvent, EventRegistry, InvalidEvent, make_event, parse_message, registry

NOW = datetime(2026, 11, 23, 8, 30, tzinfo=UTC)


def contact_data() -> dict[str, object]:
    return {
        "contact_id": str(uuid.uuid4()),
        "customer": {"id": str(uuid.uuid4()), "tier": "vip", "display_name": "李娜"},
        "channel": "chat",
        "kind": "complaint",
        "priority": "high",
        "subject": "投诉快递员态度",
        "received_at": "2026-11-23T08:30:00Z",
    }


def structured(**fields: object) -> bytes:
    event = {
        "specversion": "1.0",
        "id": "e-1",
        "source": "/kefu/intake",
        "type": "intake.contact.received.v1",
        "time": "2026-11-23T08:30:00Z",
        "data": contact_data(),
    }
    event.update(fields)
    return json.dumps(event, ensure_ascii=False).encode()


def test_published_envelope_is_structured_cloudevent_with_utc_z_time() -> None:
    event = make_event(
        type="intake.contact.received.v1",
        source="/kefu/intake",
        data=ContactReceived.model_validate(contact_data()),
        subject="c1",
        time=NOW,
        correlation_id="corr-1",
    )
    body = json.loads(event.to_json())
    assert body["specversion"] == "1.0"
    assert body["time"] == "2026-11-23T08:30:00Z"
    assert body["datacontenttype"] == "application/json"
    assert body["correlationid"] == "corr-1"
    assert uuid.UUID(body["id"]).version == 7


def test_structured_message_parses_and_validates_to_the_typed_model() -> None:
    envelope = parse_message(structured(), {}, "application/cloudevents+json")
    data = registry.validate_data(envelope)
    assert isinstance(data, ContactReceived)
    assert data.customer.tier == "vip"


def test_binary_mode_reads_ce_headers() -> None:
    headers = {
        "ce-specversion": "1.0",
        "ce-id": "b-1",
        "ce-source": "/crm",
        "ce-type": "intake.contact.received.v1",
    }
    envelope = parse_message(json.dumps(contact_data()).encode(), headers, "application/json")
    assert envelope.id == "b-1"
    assert envelope.source == "/crm"
    assert isinstance(registry.validate_data(envelope), ContactReceived)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json at all", "not JSON"),
        (b"\xff\xfe\x00garbage", "not valid UTF-8"),
        (b"[1, 2, 3]", "expected a JSON object"),
        (structured(specversion="0.3"), "not a CloudEvent"),
        (structured(id=""), "not a CloudEvent"),
        (structured(time="2026-11-23T08:30:00"), "time zone"),
    ],
)
def test_unparseable_messages_are_rejected_with_a_reason(body: bytes, reason: str) -> None:
    with pytest.raises(InvalidEvent, match=reason):
        parse_message(body, {}, "application/cloudevents+json")


def test_unknown_type_is_rejected() -> None:
    envelope = parse_message(structured(type="intake.contact.vanished.v1"), {}, None)
    with pytest.raises(InvalidEvent, match="unknown event type"):
        registry.validate_data(envelope)


def test_schema_invalid_data_names_the_field() -> None:
    data = contact_data()
    data["priority"] = "whenever"
    envelope = parse_message(structured(data=data), {}, None)
    with pytest.raises(InvalidEvent, match="priority"):
        registry.validate_data(envelope)


def test_registry_refuses_badly_named_or_duplicate_types() -> None:
    local = EventRegistry()

    class Thing(BaseModel):
        n: int

    with pytest.raises(ValueError, match="v<N>"):
        local.register("thing-happened")(Thing)
    local.register("test.thing.happened.v1")(Thing)
    with pytest.raises(ValueError, match="twice"):
        local.register("test.thing.happened.v1")(Thing)


def test_envelope_requires_aware_time() -> None:
    with pytest.raises(ValueError):
        CloudEvent(id="x", source="/s", type="a.b.c.v1", time=datetime(2026, 1, 1))
