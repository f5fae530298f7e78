"""The event bus: one transport interface, two implementations (AMQP and in-process)."""

from shared.bus.base import Delivery, Outcome, OutgoingMessage, PublishFailed, Transport
from shared.bus.topics import topic_matches

__all__ = ["Delivery", "Outcome", "OutgoingMessage", "PublishFailed", "Transport", "topic_matches"]
