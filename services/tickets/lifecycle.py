"""The ticket status machine: which action is allowed in which status, and where it leads."""

from __future__ import annotations

from enum import StrEnum

from shared.contracts.tickets import TicketStatus as S


class Action(StrEnum):
    ASSIGN = "assign"
    REPLY = "reply"
    NOTE = "note"
    UPDATE = "update"  # priority, category, tags
    START_WORK = "start_work"
    WAIT_ON_CUSTOMER = "wait_on_customer"
    CUSTOMER_REPLIED = "customer_replied"
    ESCALATE = "escalate"
    QUOTE = "quote"
    ACCEPT_QUOTE = "accept_quote"
    DECLINE_QUOTE = "decline_quote"
    DISPATCH = "dispatch"  # service mode: remote → on-site with an appointment
    RESOLVE = "resolve"
    CLOSE = "close"
    REOPEN = "reopen"
    FOLLOW_UP = "follow_up"


ACTIVE = frozenset({S.NEW, S.OPEN, S.IN_PROGRESS, S.WAITING_CUSTOMER, S.REOPENED})
ALL = frozenset(S)

# Where each action may be taken. Notes stay possible on closed tickets (the record outlives the work).
ALLOWED_FROM: dict[Action, frozenset[S]] = {
    Action.ASSIGN: ACTIVE,
    Action.REPLY: ACTIVE,
    Action.NOTE: ALL,
    Action.UPDATE: ACTIVE,
    Action.START_WORK: frozenset({S.NEW, S.OPEN, S.REOPENED}),
    Action.WAIT_ON_CUSTOMER: frozenset({S.OPEN, S.IN_PROGRESS, S.REOPENED}),
    Action.CUSTOMER_REPLIED: ACTIVE,
    Action.ESCALATE: ACTIVE,
    Action.QUOTE: ACTIVE,
    Action.ACCEPT_QUOTE: ACTIVE,
    Action.DECLINE_QUOTE: ACTIVE,
    Action.DISPATCH: ACTIVE,
    Action.RESOLVE: ACTIVE,
    Action.CLOSE: frozenset({S.RESOLVED}),
    Action.REOPEN: frozenset({S.RESOLVED, S.CLOSED}),
    Action.FOLLOW_UP: frozenset({S.RESOLVED, S.CLOSED}),
}

# Where an action leads from a status; absent means the status does not change.
_TRANSITIONS: dict[Action, dict[S, S]] = {
    Action.ASSIGN: {S.NEW: S.OPEN},
    Action.REPLY: {S.NEW: S.IN_PROGRESS, S.OPEN: S.IN_PROGRESS, S.REOPENED: S.IN_PROGRESS},
    Action.START_WORK: {S.NEW: S.IN_PROGRESS, S.OPEN: S.IN_PROGRESS, S.REOPENED: S.IN_PROGRESS},
    Action.WAIT_ON_CUSTOMER: {s: S.WAITING_CUSTOMER for s in ALLOWED_FROM[Action.WAIT_ON_CUSTOMER]},
    Action.CUSTOMER_REPLIED: {S.WAITING_CUSTOMER: S.IN_PROGRESS},
    Action.DECLINE_QUOTE: {s: S.RESOLVED for s in ACTIVE},
    Action.DISPATCH: {S.NEW: S.IN_PROGRESS, S.OPEN: S.IN_PROGRESS, S.REOPENED: S.IN_PROGRESS},
    Action.RESOLVE: {s: S.RESOLVED for s in ACTIVE},
    Action.CLOSE: {S.RESOLVED: S.CLOSED},
    Action.REOPEN: {S.RESOLVED: S.REOPENED, S.CLOSED: S.REOPENED},
}


class IllegalAction(Exception):
    def __init__(self, action: Action, status: S) -> None:
        super().__init__(f"{action.value} is not allowed while the ticket is {status.value}")
        self.action = action
        self.status = status
        self.allowed = allowed_actions(status)


def allowed_actions(status: S) -> list[str]:
    return [action.value for action, statuses in ALLOWED_FROM.items() if status in statuses]


def next_status(status: S, action: Action) -> S:
    """The status after `action`, or `IllegalAction` if it may not be taken now."""
    if status not in ALLOWED_FROM[action]:
        raise IllegalAction(action, status)
    return _TRANSITIONS.get(action, {}).get(status, status)
