"""The brief sign-off workflow as a plain state machine: draft → submitted → approved or returned."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from shared.contracts.briefs import BriefType


class BriefStatus(StrEnum):
    DRAFT = "draft"
    SUBMITTED = "submitted"
    APPROVED = "approved"
    RETURNED = "returned"


class BriefAction(StrEnum):
    EDIT = "edit"
    SUBMIT = "submit"
    WITHDRAW = "withdraw"
    SIGN = "sign"
    RETURN = "return"


# DOMAIN rule 2: the creative brief is signed by the account director and the creative director. The
# other defaults follow the same idea: the director answerable for the work signs before it goes on.
DEFAULT_SIGNOFF_ROLES: Mapping[BriefType, tuple[str, ...]] = {
    BriefType.CLIENT: ("account_director",),
    BriefType.CREATIVE: ("account_director", "creative_director"),
    BriefType.MEDIA: ("account_director", "media_planner"),
    BriefType.RESEARCH: ("account_director",),
}

_ALLOWED: Mapping[BriefStatus, tuple[BriefAction, ...]] = {
    BriefStatus.DRAFT: (BriefAction.EDIT, BriefAction.SUBMIT),
    BriefStatus.SUBMITTED: (BriefAction.SIGN, BriefAction.RETURN, BriefAction.WITHDRAW),
    BriefStatus.RETURNED: (BriefAction.EDIT, BriefAction.SUBMIT),
    # Editing an approved brief makes a new version, which needs signing again.
    BriefStatus.APPROVED: (BriefAction.EDIT,),
}


class IllegalTransition(Exception):
    """An action the current state does not allow; carries the actions it does allow."""

    def __init__(self, detail: str, allowed: Iterable[str]) -> None:
        super().__init__(detail)
        self.detail = detail
        self.allowed = sorted(str(a) for a in allowed)


class NotASigner(Exception):
    """The user holds none of the roles still needed on this version."""


def allowed_actions(status: BriefStatus) -> tuple[BriefAction, ...]:
    return _ALLOWED[status]


def _check(status: BriefStatus, action: BriefAction) -> None:
    if action not in _ALLOWED[status]:
        raise IllegalTransition(f"A {status} brief cannot be given the action {action!r}.", _ALLOWED[status])


@dataclass(frozen=True)
class SignOffState:
    """Where one brief stands: its status, the version in play, the roles required and who has signed."""

    status: BriefStatus
    number: int
    required_roles: tuple[str, ...]
    signed_roles: frozenset[str] = field(default_factory=frozenset)

    @property
    def missing_roles(self) -> tuple[str, ...]:
        return tuple(r for r in self.required_roles if r not in self.signed_roles)

    def edit(self) -> SignOffState:
        """A new version: earlier signatures stay on the old version and no longer count."""
        _check(self.status, BriefAction.EDIT)
        return SignOffState(BriefStatus.DRAFT, self.number + 1, self.required_roles)

    def submit(self, required_roles: Iterable[str]) -> SignOffState:
        _check(self.status, BriefAction.SUBMIT)
        roles = tuple(dict.fromkeys(required_roles))
        if not roles:
            raise ValueError("a brief needs at least one required sign-off")
        return SignOffState(BriefStatus.SUBMITTED, self.number, roles)

    def withdraw(self) -> SignOffState:
        _check(self.status, BriefAction.WITHDRAW)
        return SignOffState(BriefStatus.DRAFT, self.number, self.required_roles)

    def signing_role(self, user_roles: Iterable[str]) -> str:
        """The first still-missing role the user holds; one signature covers one role."""
        held = set(user_roles)
        for role in self.missing_roles:
            if role in held:
                return role
        raise NotASigner(
            "Signing this brief needs one of the roles "
            + ", ".join(self.missing_roles or self.required_roles)
        )

    def sign(self, role: str) -> SignOffState:
        _check(self.status, BriefAction.SIGN)
        if role not in self.missing_roles:
            raise NotASigner(f"The role {role!r} is not awaited on version {self.number}.")
        signed = self.signed_roles | {role}
        done = all(r in signed for r in self.required_roles)
        return SignOffState(
            BriefStatus.APPROVED if done else BriefStatus.SUBMITTED, self.number, self.required_roles, signed
        )

    def give_back(self, user_roles: Iterable[str]) -> SignOffState:
        """Return with comments: only a holder of a required role may send the brief back."""
        _check(self.status, BriefAction.RETURN)
        if not set(user_roles) & set(self.required_roles):
            raise NotASigner("Returning this brief needs one of the roles " + ", ".join(self.required_roles))
        return SignOffState(BriefStatus.RETURNED, self.number, self.required_roles)
