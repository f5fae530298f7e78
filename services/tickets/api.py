"""tickets' HTTP routes for tickets: open, read, list, history, and one route per action."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Annotated, Any, Literal

import sqlalchemy as sa
from fastapi import APIRouter, Header, Query, Response
from pydantic import BaseModel

from services.tickets import schemas as s
from services.tickets.lifecycle import Action, allowed_actions
from services.tickets.models import Ticket, TicketHistory
from services.tickets.service import Desk, get_ticket
from services.tickets.settings import config
from shared.app import ClockDep, OutboxDep, ReadSessionDep, SessionDep, TimersDep
from shared.auth import CurrentPrincipal, require
from shared.concurrency import check_if_match, etag
from shared.contracts.common import ContactKind, Priority
from shared.contracts.tickets import TicketStatus
from shared.errors import problem_responses
from shared.idempotency import IdempotencyDep
from shared.pagination import Cursor, Limit, Page, decode_cursor, encode_cursor, keyset_page

router = APIRouter(prefix="/v1", tags=["tickets"], responses=problem_responses(401, 403))


def ticket_out(ticket: Ticket) -> s.TicketOut:
    out = s.TicketOut.model_validate(ticket)
    out.allowed_actions = allowed_actions(TicketStatus(ticket.status))
    return out


@router.post(
    "/tickets",
    status_code=201,
    response_model=s.TicketOut,
    dependencies=[require("tickets:write")],
    responses=problem_responses(400, 409, 422),
)
async def open_ticket(
    body: s.TicketCreate,
    session: SessionDep,
    outbox: OutboxDep,
    clock: ClockDep,
    timers: TimersDep,
    idempotency: IdempotencyDep,
    principal: CurrentPrincipal,
    response: Response,
) -> Any:
    """Open a ticket directly (tickets also open by themselves from intake's contacts)."""
    if (replay := await idempotency.replay(session)) is not None:
        return replay
    desk = Desk(session, outbox, clock, timers, config())
    ticket = await desk.open(Ticket(**body.model_dump(mode="json")), actor=principal.subject)
    out = ticket_out(ticket)
    await idempotency.remember(
        session, status=201, body=out.model_dump(mode="json"), headers={"ETag": etag(ticket.version)}
    )
    response.headers["ETag"] = etag(ticket.version)
    return out


@router.get(
    "/tickets/{ticket_id}",
    response_model=s.TicketOut,
    dependencies=[require("tickets:read")],
    responses=problem_responses(404),
)
async def read_ticket(ticket_id: uuid.UUID, session: ReadSessionDep, response: Response) -> s.TicketOut:
    """One ticket, with the actions allowed in its status."""
    ticket = await get_ticket(session, ticket_id)
    response.headers["ETag"] = etag(ticket.version)
    return ticket_out(ticket)


@router.get(
    "/tickets/{ticket_id}/history",
    response_model=Page[s.HistoryOut],
    dependencies=[require("tickets:read")],
    responses=problem_responses(404),
)
async def ticket_history(
    ticket_id: uuid.UUID, session: ReadSessionDep, limit: Limit = 50, cursor: Cursor = None
) -> Page[s.HistoryOut]:
    """Every change to the ticket, oldest first: actions, replies, notes, escalations."""
    await get_ticket(session, ticket_id)
    query = sa.select(TicketHistory).where(TicketHistory.ticket_id == ticket_id)
    rows, next_cursor = await keyset_page(
        session, query, key=TicketHistory.id, limit=limit, cursor=cursor, descending=False
    )
    return Page(items=[s.HistoryOut.model_validate(r) for r in rows], next_cursor=next_cursor)


@router.get(
    "/tickets",
    response_model=Page[s.TicketOut],
    dependencies=[require("tickets:read")],
    responses=problem_responses(400),
)
async def list_tickets(
    session: ReadSessionDep,
    limit: Limit = 50,
    cursor: Cursor = None,
    contact_id: Annotated[
        uuid.UUID | None, Query(description="The contact the ticket was opened from.")
    ] = None,
    customer_id: Annotated[uuid.UUID | None, Query()] = None,
    status: Annotated[TicketStatus | None, Query()] = None,
    kind: Annotated[ContactKind | None, Query()] = None,
    priority: Annotated[Priority | None, Query()] = None,
    assignee: Annotated[str | None, Query(max_length=200)] = None,
    group: Annotated[str | None, Query(max_length=100)] = None,
    sla: Annotated[Literal["at_risk", "breached"] | None, Query(description="SLA state.")] = None,
    follow_up_due: Annotated[bool | None, Query(description="Follow-up visits due now.")] = None,
    sort: Annotated[
        Literal["-created", "due"], Query(description="Newest first, or next SLA due first.")
    ] = "-created",
    clock: ClockDep = None,  # type: ignore[assignment]
) -> Page[s.TicketOut]:
    """Tickets, filtered; newest first or by the next SLA due time."""
    query = sa.select(Ticket)
    for column, value in (
        (Ticket.contact_id, contact_id),
        (Ticket.customer_id, customer_id),
        (Ticket.status, status),
        (Ticket.kind, kind),
        (Ticket.priority, priority),
        (Ticket.assignee, assignee),
        (Ticket.group, group),
    ):
        if value is not None:
            query = query.where(column == value)
    if contact_id is not None:
        query = sa.select(Ticket).where(Ticket.contact_id == contact_id)
    if sla == "breached":
        query = query.where(Ticket.sla_breached.is_(True))
    elif sla == "at_risk":
        query = query.where(Ticket.sla_at_risk.is_(True), Ticket.sla_breached.is_(False))
    if follow_up_due:
        query = query.where(Ticket.follow_up_done_at.is_(None), Ticket.follow_up_due_at <= clock.now())
    if sort == "due":
        return await _by_due(session, query, limit, cursor)
    tickets, next_cursor = await keyset_page(session, query, key=Ticket.id, limit=limit, cursor=cursor)
    return Page(items=[ticket_out(t) for t in tickets], next_cursor=next_cursor)


async def _by_due(session: Any, query: sa.Select[Any], limit: int, cursor: str | None) -> Page[s.TicketOut]:
    """Keyset by (next_due_at, id): tickets with a running clock first, soonest due first."""
    query = query.where(Ticket.next_due_at.is_not(None))
    if cursor is not None:
        values = decode_cursor(cursor)
        try:
            from datetime import datetime

            due, last = datetime.fromisoformat(values[0]), uuid.UUID(values[1])
        except (IndexError, TypeError, ValueError):
            from shared.errors import Problem

            raise Problem(400, "The cursor is not one this API issued.", slug="invalid-cursor") from None
        query = query.where(
            sa.tuple_(Ticket.next_due_at, Ticket.id) > sa.tuple_(sa.literal(due), sa.literal(last))
        )
    rows = list(
        (await session.execute(query.order_by(Ticket.next_due_at, Ticket.id).limit(limit + 1))).scalars()
    )
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = encode_cursor([rows[-1].next_due_at.isoformat(), str(rows[-1].id)])
    return Page(items=[ticket_out(t) for t in rows], next_cursor=next_cursor)


def _action_route(action: Action, body_model: type[BaseModel] | None, summary: str, permission: str) -> None:
    path = f"/tickets/{{ticket_id}}/{action.value.replace('_', '-')}"

    async def run(
        ticket_id: uuid.UUID,
        session: SessionDep,
        outbox: OutboxDep,
        clock: ClockDep,
        timers: TimersDep,
        principal: CurrentPrincipal,
        response: Response,
        payload: dict[str, Any],
        if_match: str | None,
    ) -> s.TicketOut:
        ticket = await get_ticket(session, ticket_id, for_update=True)
        check_if_match(if_match, ticket.version)
        desk = Desk(session, outbox, clock, timers, config())
        await desk.act(ticket, action, principal.subject, **payload)
        response.headers["ETag"] = etag(ticket.version)
        return ticket_out(ticket)

    endpoint: Callable[..., Any]
    if body_model is None:

        async def endpoint_without_body(
            ticket_id: uuid.UUID,
            session: SessionDep,
            outbox: OutboxDep,
            clock: ClockDep,
            timers: TimersDep,
            principal: CurrentPrincipal,
            response: Response,
            if_match: Annotated[str | None, Header(alias="If-Match")] = None,
        ) -> s.TicketOut:
            return await run(ticket_id, session, outbox, clock, timers, principal, response, {}, if_match)

        endpoint = endpoint_without_body
    else:

        async def endpoint_with_body(
            ticket_id: uuid.UUID,
            body: body_model,  # type: ignore[valid-type]
            session: SessionDep,
            outbox: OutboxDep,
            clock: ClockDep,
            timers: TimersDep,
            principal: CurrentPrincipal,
            response: Response,
            if_match: Annotated[str | None, Header(alias="If-Match")] = None,
        ) -> s.TicketOut:
            payload = body.model_dump(exclude_unset=action == Action.UPDATE)
            if action == Action.QUOTE:
                payload = body.model_dump(mode="json")
            return await run(
                ticket_id, session, outbox, clock, timers, principal, response, payload, if_match
            )

        # Postponed annotations would leave "body_model" a string FastAPI cannot resolve.
        endpoint_with_body.__annotations__["body"] = body_model
        endpoint = endpoint_with_body
    endpoint.__doc__ = summary
    endpoint.__name__ = f"ticket_{action.value}"
    router.add_api_route(
        path,
        endpoint,
        methods=["POST"],
        response_model=s.TicketOut,
        dependencies=[require(permission)],
        responses=problem_responses(404, 409, 412, 422),
        summary=summary.rstrip("."),
    )


for _action, _body, _summary, _permission in (
    (Action.ASSIGN, s.AssignBody, "Assign the ticket to an agent and/or a group.", "tickets:write"),
    (
        Action.REPLY,
        s.MessageBody,
        "Reply publicly to the customer (stops the response clocks).",
        "tickets:write",
    ),
    (Action.NOTE, s.MessageBody, "Add an internal note.", "tickets:write"),
    (Action.UPDATE, s.UpdateBody, "Change priority, category or tags (SLA targets follow).", "tickets:write"),
    (
        Action.START_WORK,
        None,
        "Start work (repairs out of warranty need an accepted quote).",
        "tickets:write",
    ),
    (
        Action.WAIT_ON_CUSTOMER,
        s.WaitBody,
        "Wait on the customer (pauses the clocks that pause).",
        "tickets:write",
    ),
    (
        Action.CUSTOMER_REPLIED,
        s.OptionalMessageBody,
        "Record the customer's reply (resumes clocks).",
        "tickets:write",
    ),
    (Action.ESCALATE, s.ReasonBody, "Escalate by hand, with a reason.", "tickets:write"),
    (Action.QUOTE, s.QuoteBody, "Propose a fee for out-of-warranty service.", "tickets:write"),
    (Action.ACCEPT_QUOTE, None, "Record that the customer accepted the quote.", "tickets:write"),
    (
        Action.DECLINE_QUOTE,
        None,
        "Record that the customer declined the quote (resolves as declined).",
        "tickets:write",
    ),
    (
        Action.DISPATCH,
        s.DispatchBody,
        "Set the service mode: remote, on-site with an appointment, or repair center.",
        "tickets:write",
    ),
    (
        Action.RESOLVE,
        s.ResolveBody,
        "Resolve with a resolution code and summary (and a repair outcome).",
        "tickets:write",
    ),
    (Action.CLOSE, None, "Close a resolved ticket.", "tickets:write"),
    (
        Action.REOPEN,
        s.ReasonBody,
        "Reopen a resolved or closed ticket (a new resolution cycle).",
        "tickets:write",
    ),
    (
        Action.FOLLOW_UP,
        s.FollowUpBody,
        "Record the follow-up visit (回访) with the customer.",
        "tickets:write",
    ),
):
    _action_route(_action, _body, _summary, _permission)
