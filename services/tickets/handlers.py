"""Events tickets consumes."""

from __future__ import annotations

from services.tickets import service
from shared.consumer import EventHandlers, HandlerContext
from shared.contracts.intake import ContactReceived

handlers = EventHandlers()


@handlers.on("intake.contact.received.v1")
async def open_ticket_for_contact(ctx: HandlerContext, contact: ContactReceived) -> None:
    await service.open_from_contact(ctx.session, contact, outbox=ctx.outbox, clock=ctx.clock)
