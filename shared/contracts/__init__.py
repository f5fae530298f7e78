"""The event catalogue: every event type Kefu publishes or consumes, with the schema of its `data`.

Importing this package registers all of them in `shared.events.registry`. These schemas are the public
contract between services (and with other company systems), so they live here and not in a service.
"""

from shared.contracts import analytics, briefs, external, intake, tickets

__all__ = ["analytics", "briefs", "external", "intake", "tickets"]
