"""tickets' domain logic: opening tickets and every action on them, each recorded and published."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from services.tickets import sla
from services.tickets.lifecycle import Action, IllegalAction, next_status
from services.tickets.models import Ticket, TicketHistory
from services.tickets.settings import TicketsConfig
from services.tickets.snapshots import snapshot
from shared.clock import Clock
from shared.contracts.common import ContactKind
from shared.contracts.intake import ContactReceived
from shared.contracts.tickets import (
    TicketAssigned,
    TicketClosed,
    TicketCreated,
    TicketReopened,
    TicketResolved,
    TicketResponded,
    TicketStatus,
    TicketStatusChanged,
)
from shared.errors import Problem, conflict, not_found
from shared.outbox import Outbox
from shared.timers import Timers

# Feedback and suggestions are recorded by intake and counted, but need no ticket.
TICKET_KINDS = frozenset({ContactKind.COMPLAINT, ContactKind.REPAIR, ContactKind.INQUIRY})
FOLLOW_UP, AUTO_CLOSE = "ticket.follow_up", "ticket.auto_close"


@dataclass
class Desk:
    """What every ticket action needs: the transaction, the outbox, the clock and the timers."""

    session: AsyncSession
    outbox: Outbox
    clock: Clock
    timers: Timers
    config: TicketsConfig

    # --- opening ------------------------------------------------------------------------------------

    async def open(self, ticket: Ticket, *, actor: str) -> Ticket:
        now = self.clock.now()
        ticket.created_at = ticket.updated_at = now
        # Not flushed yet: the ticket is inserted with its policy and next due time already set, with its
        # clocks, in one flush, rather than inserted and then updated twice.
        self.session.add(ticket)
        policy, targets = await sla.start_ticket_clocks(self.session, ticket, timers=self.timers, now=now)
        self._record(ticket, actor, "open", None, ticket.status, {"policy": ticket.policy_name}, now)
        await self.outbox.add(
            self.session,
            "tickets.ticket.created.v1",
            TicketCreated(
                ticket=snapshot(ticket),
                policy_id=policy.id if policy else None,
                policy_name=policy.name if policy else None,
                sla_targets=targets,
            ),
            subject=str(ticket.id),
        )
        return ticket

    async def open_from_contact(self, contact: ContactReceived) -> Ticket | None:
        """A ticket for a complaint, repair or inquiry contact — exactly one, however often it arrives."""
        if contact.kind not in TICKET_KINDS:
            return None
        existing = (
            await self.session.execute(sa.select(Ticket).where(Ticket.contact_id == contact.contact_id))
        ).scalar_one_or_none()
        if existing is not None:
            return existing
        # Intake knows the product the contact is about, and whether its warranty covered the contact day.
        in_warranty = contact.product.in_warranty if contact.product is not None else None
        ticket = Ticket(
            contact_id=contact.contact_id,
            contact_ids=[str(contact.contact_id)],
            customer_id=contact.customer.id,
            customer_name=contact.customer.display_name,
            customer_tier=contact.customer.tier,
            kind=contact.kind,
            priority=contact.priority,
            channel=contact.channel,
            subject=contact.subject,
            in_warranty=in_warranty,
            product_model=contact.product.model if contact.product is not None else None,
            product_serial=contact.product.serial if contact.product is not None else None,
        )
        return await self.open(ticket, actor="intake")

    # --- actions ------------------------------------------------------------------------------------

    async def act(self, ticket: Ticket, action: Action, actor: str, **body: Any) -> Ticket:
        """Apply one action: check it is allowed now, change the ticket, keep SLA clocks in step."""
        try:
            from_status = TicketStatus(ticket.status)
            to_status = next_status(from_status, action)
        except IllegalAction as exc:
            raise conflict(str(exc), allowed=exc.allowed) from None
        now = self.clock.now()
        details = await getattr(self, f"_{action.value}")(ticket, actor, now, **body)
        ticket.status = to_status.value
        ticket.version += 1
        ticket.updated_at = now
        self._record(ticket, actor, action.value, from_status.value, to_status.value, details or {}, now)
        if to_status != from_status:
            await sla.follow_status(self.session, ticket, timers=self.timers, now=now)
            await self._announce_status(ticket, from_status, to_status, actor, now)
        if action in (Action.RESOLVE, Action.DECLINE_QUOTE):
            await self._after_resolve(ticket, actor, now, from_status)
        await self.flush_events()
        return ticket

    async def _assign(
        self, ticket: Ticket, actor: str, now: datetime, *, assignee: str | None, group: str | None
    ) -> dict[str, Any]:
        if assignee is None and group is None:
            raise Problem(422, "Assign to an agent, a group, or both.", slug="validation")
        before = {"assignee": ticket.assignee, "group": ticket.group}
        ticket.assignee, ticket.group = assignee, group if group is not None else ticket.group
        await self._publish_later(
            "tickets.ticket.assigned.v1",
            lambda: TicketAssigned(ticket=snapshot(ticket), assigned_by=actor, assigned_at=now),
            ticket,
        )
        return {"before": before, "after": {"assignee": ticket.assignee, "group": ticket.group}}

    async def _reply(self, ticket: Ticket, actor: str, now: datetime, *, body: str) -> dict[str, Any]:
        first = ticket.first_response_at is None
        if first:
            ticket.first_response_at = now
        ticket.public_replies += 1
        await sla.stop_clocks(
            self.session,
            ticket,
            {"first_response", "next_response"},
            timers=self.timers,
            outbox=self.outbox,
            now=now,
        )
        await self._publish_later(
            "tickets.ticket.responded.v1",
            lambda: TicketResponded(
                ticket=snapshot(ticket), responded_by=actor, responded_at=now, first=first
            ),
            ticket,
        )
        return {"body": body, "public": True, "first": first}

    async def _note(self, ticket: Ticket, actor: str, now: datetime, *, body: str) -> dict[str, Any]:
        return {"body": body, "public": False}

    async def _update(self, ticket: Ticket, actor: str, now: datetime, **changes: Any) -> dict[str, Any]:
        before = {k: getattr(ticket, k) for k in changes}
        for key, value in changes.items():
            setattr(ticket, key, value)
        if "priority" in changes or "category" in changes:
            await sla.retarget(self.session, ticket, timers=self.timers)
        return {"before": before, "after": changes}

    async def _start_work(self, ticket: Ticket, actor: str, now: datetime) -> dict[str, Any]:
        self._check_quote_gate(ticket)
        return {}

    async def _wait_on_customer(
        self, ticket: Ticket, actor: str, now: datetime, *, reason: str = ""
    ) -> dict[str, Any]:
        return {"reason": reason}

    async def _customer_replied(
        self, ticket: Ticket, actor: str, now: datetime, *, body: str = ""
    ) -> dict[str, Any]:
        policy = await sla.policy_of(self.session, ticket)
        open_metrics = {c.metric for c in await sla.clocks_of(self.session, ticket.id, open_only=True)}
        if ticket.first_response_at is not None and "next_response" not in open_metrics:
            cycle = ticket.public_replies + 1
            await sla.start_clock(
                self.session, ticket, policy, "next_response", timers=self.timers, now=now, cycle=cycle
            )
        return {"body": body}

    async def _escalate(self, ticket: Ticket, actor: str, now: datetime, *, reason: str) -> dict[str, Any]:
        await sla.escalate(self.session, ticket, reason=reason, by=actor, outbox=self.outbox, now=now)
        ticket.version -= 1  # `act` counts this change once
        return {"reason": reason, "level": ticket.escalation_level}

    async def _quote(self, ticket: Ticket, actor: str, now: datetime, **quote: Any) -> dict[str, Any]:
        if ticket.kind != ContactKind.REPAIR:
            raise conflict("Only repair tickets take a quote.", allowed=[])
        if ticket.in_warranty:
            raise conflict("The product is in warranty: the service is free and needs no quote.", allowed=[])
        ticket.quote = {**quote, "status": "pending", "proposed_at": now.isoformat(), "proposed_by": actor}
        return {"quote": ticket.quote}

    async def _accept_quote(self, ticket: Ticket, actor: str, now: datetime) -> dict[str, Any]:
        self._pending_quote(ticket)
        ticket.quote = {**(ticket.quote or {}), "status": "accepted", "decided_at": now.isoformat()}
        return {"quote": ticket.quote}

    async def _decline_quote(self, ticket: Ticket, actor: str, now: datetime) -> dict[str, Any]:
        self._pending_quote(ticket)
        ticket.quote = {**(ticket.quote or {}), "status": "declined", "decided_at": now.isoformat()}
        ticket.resolution_code = "declined"
        ticket.resolution_summary = "The customer declined the quote."
        ticket.resolved_at = now
        return {"quote": ticket.quote}

    async def _dispatch(
        self,
        ticket: Ticket,
        actor: str,
        now: datetime,
        *,
        mode: str,
        appointment_at: datetime | None,
        engineer: str | None,
    ) -> dict[str, Any]:
        if ticket.kind != ContactKind.REPAIR:
            raise conflict("Only repair tickets have a service mode.", allowed=[])
        self._check_quote_gate(ticket)
        if mode == "on_site" and (appointment_at is None or engineer is None):
            raise Problem(
                422, "On-site service needs an appointment time and an engineer.", slug="validation"
            )
        ticket.service_mode, ticket.appointment_at, ticket.engineer = mode, appointment_at, engineer
        return {
            "mode": mode,
            "appointment_at": appointment_at.isoformat() if appointment_at else None,
            "engineer": engineer,
        }

    async def _resolve(
        self,
        ticket: Ticket,
        actor: str,
        now: datetime,
        *,
        resolution_code: str,
        summary: str,
        outcome: str | None,
    ) -> dict[str, Any]:
        if ticket.kind == ContactKind.REPAIR and outcome is None:
            raise Problem(422, "A repair is resolved as repaired, replaced or refunded.", slug="validation")
        if outcome is not None:
            self._check_quote_gate(ticket)
        ticket.resolution_code, ticket.resolution_summary, ticket.outcome = resolution_code, summary, outcome
        ticket.resolved_at = now
        return {"resolution_code": resolution_code, "summary": summary, "outcome": outcome}

    async def _close(self, ticket: Ticket, actor: str, now: datetime) -> dict[str, Any]:
        ticket.closed_at = now
        await self.timers.cancel(self.session, kind=AUTO_CLOSE, subject=str(ticket.id))
        await self._publish_later(
            "tickets.ticket.closed.v1",
            lambda: TicketClosed(ticket=snapshot(ticket), closed_by=actor, closed_at=now),
            ticket,
        )
        return {}

    async def _reopen(self, ticket: Ticket, actor: str, now: datetime, *, reason: str) -> dict[str, Any]:
        ticket.reopen_count += 1
        ticket.resolved_at = ticket.closed_at = None
        await self.timers.cancel(self.session, kind=AUTO_CLOSE, subject=str(ticket.id))
        await self.timers.cancel(self.session, kind=FOLLOW_UP, subject=str(ticket.id))
        policy = await sla.policy_of(self.session, ticket)
        # Resolution starts a new cycle on every reopen.
        await sla.start_clock(
            self.session,
            ticket,
            policy,
            "resolution",
            timers=self.timers,
            now=now,
            cycle=ticket.reopen_count + 1,
        )
        await self._publish_later(
            "tickets.ticket.reopened.v1",
            lambda: TicketReopened(
                ticket=snapshot(ticket), reason=reason, reopened_by=actor, reopened_at=now
            ),
            ticket,
        )
        return {"reason": reason}

    async def _follow_up(
        self, ticket: Ticket, actor: str, now: datetime, *, note: str, satisfied: bool | None
    ) -> dict[str, Any]:
        ticket.follow_up_done_at = now
        ticket.follow_up_due_at = None
        await self.timers.cancel(self.session, kind=FOLLOW_UP, subject=str(ticket.id))
        return {"note": note, "satisfied": satisfied}

    # --- helpers ------------------------------------------------------------------------------------

    def _check_quote_gate(self, ticket: Ticket) -> None:
        """Outside warranty, no work before the customer accepted the fee (DOMAIN rule 8)."""
        if ticket.kind != ContactKind.REPAIR or ticket.in_warranty:
            return
        status = (ticket.quote or {}).get("status")
        if status != "accepted":
            allowed = ["accept_quote", "decline_quote"] if status == "pending" else ["quote"]
            raise conflict(
                "The product is out of warranty: the customer must accept a quote before work starts.",
                allowed=allowed,
            )

    def _pending_quote(self, ticket: Ticket) -> None:
        if (ticket.quote or {}).get("status") != "pending":
            raise conflict("There is no quote waiting for the customer's decision.", allowed=["quote"])

    async def _after_resolve(
        self, ticket: Ticket, actor: str, now: datetime, from_status: TicketStatus
    ) -> None:
        await sla.stop_clocks(
            self.session,
            ticket,
            {"first_response", "next_response", "resolution"},
            timers=self.timers,
            outbox=self.outbox,
            now=now,
        )
        policy = await sla.policy_of(self.session, ticket)
        follow_up_after = timedelta(
            seconds=policy.follow_up_after_seconds if policy else self.config.follow_up_seconds
        )
        ticket.follow_up_due_at = now + follow_up_after
        await self.timers.schedule(
            self.session, kind=FOLLOW_UP, subject=str(ticket.id), due_at=ticket.follow_up_due_at
        )
        await self.timers.schedule(
            self.session,
            kind=AUTO_CLOSE,
            subject=str(ticket.id),
            due_at=now + timedelta(days=self.config.auto_close_days),
        )
        await self.outbox.add(
            self.session,
            "tickets.ticket.resolved.v1",
            TicketResolved(
                ticket=snapshot(ticket),
                resolution_code=ticket.resolution_code or "resolved",
                resolved_by=actor,
                resolved_at=now,
                first_response_at=ticket.first_response_at,
                public_replies=ticket.public_replies,
                reopen_count=ticket.reopen_count,
            ),
            subject=str(ticket.id),
        )

    async def _publish_later(self, type: str, build: Any, ticket: Ticket) -> None:
        # Events carry the snapshot after the whole action, so they are built once `act` has finished.
        self.session.info.setdefault("kefu.tickets.pending", []).append((type, build, ticket))

    async def flush_events(self) -> None:
        for type, build, ticket in self.session.info.pop("kefu.tickets.pending", []):
            await self.outbox.add(self.session, type, build(), subject=str(ticket.id))

    async def _announce_status(
        self, ticket: Ticket, from_status: TicketStatus, to_status: TicketStatus, actor: str, now: datetime
    ) -> None:
        await self.outbox.add(
            self.session,
            "tickets.ticket.status_changed.v1",
            TicketStatusChanged(
                ticket=snapshot(ticket),
                from_status=from_status,
                to_status=to_status,
                changed_by=actor,
                changed_at=now,
            ),
            subject=str(ticket.id),
        )

    def _record(
        self,
        ticket: Ticket,
        actor: str,
        action: str,
        from_status: str | None,
        to_status: str | None,
        details: dict[str, Any],
        now: datetime,
    ) -> None:
        self.session.add(
            TicketHistory(
                ticket_id=ticket.id,
                at=now,
                actor=actor,
                action=action,
                from_status=from_status,
                to_status=to_status,
                details=_jsonable(details),
            )
        )


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


async def get_ticket(session: AsyncSession, ticket_id: object, *, for_update: bool = False) -> Ticket:
    ticket = await session.get(Ticket, ticket_id, with_for_update=for_update)
    if ticket is None:
        raise not_found("ticket", ticket_id)
    return ticket
