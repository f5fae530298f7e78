"""The four services, their default ports, and how to build each."""

from __future__ import annotations

from dataclasses import dataclass

from services.analytics.app import DEFINITION as ANALYTICS
from services.briefs.app import DEFINITION as BRIEFS
from services.intake.app import DEFINITION as INTAKE
from services.tickets.app import DEFINITION as TICKETS
from shared.runtime import ServiceDefinition


@dataclass(frozen=True)
class Entry:
    definition: ServiceDefinition
    port: int


SERVICES: dict[str, Entry] = {
    "intake": Entry(INTAKE, 8001),
    "tickets": Entry(TICKETS, 8002),
    "briefs": Entry(BRIEFS, 8003),
    "analytics": Entry(ANALYTICS, 8004),
}
PLATFORM_PORT = 8000
