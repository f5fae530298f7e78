"""Events analytics consumes: every event in the catalogue goes to the event log, some also to projections."""

from __future__ import annotations

from typing import Any

import shared.contracts  # noqa: F401  (the whole catalogue must be registered before the loop below)
from services.analytics import projections
from shared.consumer import EventHandlers, HandlerContext
from shared.contracts.tickets import TicketCreated
from shared.events import registry

handlers = EventHandlers()


@handlers.on("tickets.ticket.created.v1")
async def on_ticket_created(ctx: HandlerContext, created: TicketCreated) -> None:
    await projections.log_event(ctx.session, ctx.envelope)
    await projections.count_ticket(ctx.session, created)


async def log_only(ctx: HandlerContext, _: Any) -> None:
    await projections.log_event(ctx.session, ctx.envelope)


# Analytics is the read model of everything: events without a projection yet are still logged, so a
# projection added later is built by replaying the log.
for event_type in registry:
    if event_type.name not in handlers.by_type and not event_type.name.startswith("analytics."):
        handlers.on(event_type.name)(log_only)
