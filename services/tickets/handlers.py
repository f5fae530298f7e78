"""Events tickets consumes: contacts open tickets; a low satisfaction score reopens and escalates."""

from __future__ import annotations

from services.tickets import sla
from services.tickets.lifecycle import Action
from services.tickets.models import Ticket
from services.tickets.service import Desk
from services.tickets.settings import config
from shared.consumer import EventHandlers, HandlerContext
from shared.contracts.analytics import SurveyCompleted
from shared.contracts.intake import ContactReceived
from shared.contracts.tickets import TicketStatus
from shared.events import InvalidEvent

handlers = EventHandlers()


def _desk(ctx: HandlerContext) -> Desk:
    # Handlers schedule SLA timers through the service's own `Timers`, which the runtime hands over.
    assert ctx.timers is not None, "tickets declares timers"
    return Desk(ctx.session, ctx.outbox, ctx.clock, ctx.timers, config())


@handlers.on("intake.contact.received.v1")
async def open_ticket_for_contact(ctx: HandlerContext, contact: ContactReceived) -> None:
    await _desk(ctx).open_from_contact(contact)


@handlers.on("analytics.survey.completed.v1")
async def act_on_low_satisfaction(ctx: HandlerContext, survey: SurveyCompleted) -> None:
    """DOMAIN rule 9: if the customer is not satisfied, act again — reopen and escalate."""
    if survey.ticket_id is None or survey.csat is None or survey.csat > config().low_csat:
        return
    ticket = await ctx.session.get(Ticket, survey.ticket_id, with_for_update=True)
    if ticket is None:
        raise InvalidEvent(f"survey {survey.survey_id} names ticket {survey.ticket_id}, which does not exist")
    desk = _desk(ctx)
    reason = f"customer satisfaction {survey.csat}/5 in survey {survey.survey_id}"
    if survey.comment:
        reason += f": {survey.comment}"
    if ticket.status in (TicketStatus.RESOLVED, TicketStatus.CLOSED):
        await desk.act(ticket, Action.REOPEN, "survey", reason=reason[:2000])
    await sla.escalate(
        ctx.session, ticket, reason=reason, by="survey", outbox=ctx.outbox, now=ctx.clock.now()
    )
