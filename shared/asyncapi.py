"""The event catalogue as an AsyncAPI 3 document, generated from the registry so it cannot drift."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from shared.bus.topics import topic_matches
from shared.events import EventRegistry

ENVELOPE_FIELDS = {
    "specversion": {"type": "string", "const": "1.0"},
    "id": {"type": "string", "description": "Unique per source; consumers de-duplicate on it."},
    "source": {"type": "string", "examples": ["/kefu/intake"]},
    "type": {"type": "string"},
    "time": {"type": "string", "format": "date-time"},
    "subject": {"type": "string", "description": "The aggregate's id."},
    "datacontenttype": {"type": "string", "const": "application/json"},
    "correlationid": {"type": "string", "description": "Carried from the HTTP request that caused it."},
}


def build(
    registry: EventRegistry,
    consumers: Mapping[str, Sequence[str]],
    *,
    exchange: str = "kefu.events",
    external_producers: Sequence[str] = (),
) -> dict[str, Any]:
    """`consumers` maps a service to the routing keys its queue is bound to."""
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for event_type in registry:
        name = event_type.name
        key = name.replace(".", "_")
        data_schema = event_type.data_model.model_json_schema(ref_template="#/components/schemas/{model}")
        for def_name, definition in data_schema.pop("$defs", {}).items():
            schemas[def_name] = definition
        schemas[event_type.data_model.__name__] = data_schema
        producer = name.split(".", 1)[0]
        produced_by = "other company systems" if producer in external_producers else f"the {producer} service"
        messages[key] = {
            "name": name,
            "title": name,
            "summary": event_type.summary,
            "contentType": "application/cloudevents+json",
            "payload": {
                "type": "object",
                "required": ["specversion", "id", "source", "type", "data"],
                "properties": {
                    **ENVELOPE_FIELDS,
                    "type": {"type": "string", "const": name},
                    "data": {"$ref": f"#/components/schemas/{event_type.data_model.__name__}"},
                },
            },
        }
        channels[key] = {
            "address": name,
            "description": (
                f"Routing key `{name}` on the `{exchange}` topic exchange; published by {produced_by}."
            ),
            "messages": {key: {"$ref": f"#/components/messages/{key}"}},
            "bindings": {
                "amqp": {
                    "is": "routingKey",
                    "exchange": {"name": exchange, "type": "topic", "durable": True, "autoDelete": False},
                }
            },
        }
        operations[f"publish_{key}"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{key}"},
            "summary": f"Published by {produced_by}.",
        }
        for service, keys in sorted(consumers.items()):
            if any(topic_matches(pattern, name) for pattern in keys):
                operations[f"{service}_receives_{key}"] = {
                    "action": "receive",
                    "channel": {"$ref": f"#/channels/{key}"},
                    "summary": f"Consumed by {service} from its quorum queue `kefu.{service}`.",
                }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Kefu events",
            "version": "1.0.0",
            "description": (
                "Every event Kefu publishes or consumes. CloudEvents 1.0 in structured mode on the "
                f"RabbitMQ topic exchange `{exchange}`; the routing key is the event type. Delivery is "
                "at-least-once; consumers de-duplicate on the event id. Failed messages are retried with "
                "backoff, then parked in `kefu.<service>.dead` with the reason in the `x-kefu-reason` header."
            ),
        },
        "servers": {"rabbitmq": {"host": "rabbitmq:5672", "protocol": "amqp", "protocolVersion": "0.9.1"}},
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
    }
