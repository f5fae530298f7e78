"""Proposal rounds as plain rules: internal rounds, then the client presentation and its three outcomes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from services.briefs.signoff import IllegalTransition
from shared.contracts.briefs import ProposalDecision, ProposalStage, RejectionFollowUp


class RoundStatus(StrEnum):
    PREPARED = "prepared"
    PRESENTED = "presented"
    DECIDED = "decided"


DECISIONS_BY_STAGE: dict[ProposalStage, tuple[ProposalDecision, ...]] = {
    ProposalStage.INTERNAL: (ProposalDecision.APPROVED, ProposalDecision.SENT_BACK),
    ProposalStage.CLIENT: (ProposalDecision.APPROVED, ProposalDecision.REVISE, ProposalDecision.REJECTED),
}


class RoundOutcome(StrEnum):
    """What a decision leads to."""

    NEXT_ROUND = "next_round"
    TO_CLIENT = "ready_for_client"
    EXECUTION = "execution"
    ENGAGEMENT_ENDED = "engagement_ended"


@dataclass(frozen=True)
class Round:
    stage: ProposalStage
    round: int
    status: RoundStatus
    decision: ProposalDecision | None = None
    follow_up: RejectionFollowUp | None = None


class InvalidDecision(ValueError):
    """A decision that does not exist at this stage, or a follow-up where none belongs."""


def allowed_actions(status: RoundStatus) -> tuple[str, ...]:
    return {RoundStatus.PREPARED: ("present",), RoundStatus.PRESENTED: ("decide",)}.get(status, ())


def present(status: RoundStatus) -> RoundStatus:
    if status is not RoundStatus.PREPARED:
        raise IllegalTransition(f"A {status} round cannot be presented.", allowed_actions(status))
    return RoundStatus.PRESENTED


def decide(
    stage: ProposalStage,
    status: RoundStatus,
    decision: ProposalDecision,
    follow_up: RejectionFollowUp | None,
) -> RoundOutcome:
    if status is not RoundStatus.PRESENTED:
        raise IllegalTransition(
            f"A {status} round cannot be decided; it must be presented first.", allowed_actions(status)
        )
    if decision not in DECISIONS_BY_STAGE[stage]:
        allowed = ", ".join(DECISIONS_BY_STAGE[stage])
        raise InvalidDecision(f"A {stage} round is decided {allowed}, not {decision}.")
    if decision is ProposalDecision.REJECTED:
        if follow_up is None:
            raise InvalidDecision("A rejection needs a follow_up: redo or terminate.")
        return (
            RoundOutcome.NEXT_ROUND if follow_up is RejectionFollowUp.REDO else RoundOutcome.ENGAGEMENT_ENDED
        )
    if follow_up is not None:
        raise InvalidDecision("Only a rejection takes a follow_up.")
    if decision is ProposalDecision.APPROVED:
        return RoundOutcome.TO_CLIENT if stage is ProposalStage.INTERNAL else RoundOutcome.EXECUTION
    return RoundOutcome.NEXT_ROUND  # sent back, or partially approved: revise and present again


def next_round_number(stage: ProposalStage, rounds: Sequence[Round]) -> int:
    """The number of a new round at `stage`, or IllegalTransition when the brief's history forbids one."""
    internal = [r for r in rounds if r.stage is ProposalStage.INTERNAL]
    client = [r for r in rounds if r.stage is ProposalStage.CLIENT]
    if any(r.decision is ProposalDecision.APPROVED for r in client):
        raise IllegalTransition("The client approved this work; it is in execution.", [])
    if any(r.follow_up is RejectionFollowUp.TERMINATE for r in client):
        raise IllegalTransition("The client ended the engagement for this work.", [])
    same = internal if stage is ProposalStage.INTERNAL else client
    if any(r.status is not RoundStatus.DECIDED for r in same):
        raise IllegalTransition(f"A {stage} round is still open; decide it first.", ["decide"])
    if stage is ProposalStage.CLIENT and not any(r.decision is ProposalDecision.APPROVED for r in internal):
        # Rule 3: informal and internal formal proposals come before the client presentation.
        raise IllegalTransition("The work needs an approved internal round before the client sees it.", [])
    return max((r.round for r in same), default=0) + 1
