"""Sign-off, proposal rounds and estimates as plain state machines: every legal and illegal move."""

from __future__ import annotations

from decimal import Decimal

import pytest

from services.briefs import money, rounds
from services.briefs.money import EstimateStatus
from services.briefs.rounds import InvalidDecision, Round, RoundOutcome, RoundStatus
from services.briefs.signoff import (
    DEFAULT_SIGNOFF_ROLES,
    BriefAction,
    BriefStatus,
    IllegalTransition,
    NotASigner,
    SignOffState,
    allowed_actions,
)
from shared.contracts.briefs import BriefType, ProposalDecision, ProposalStage, RejectionFollowUp

DIRECTORS = ("account_director", "creative_director")


def submitted() -> SignOffState:
    return SignOffState(BriefStatus.DRAFT, 1, ()).submit(DIRECTORS)


def test_the_creative_brief_needs_both_directors() -> None:
    assert DEFAULT_SIGNOFF_ROLES[BriefType.CREATIVE] == DIRECTORS
    state = submitted()
    state = state.sign(state.signing_role({"account_director"}))
    assert state.status is BriefStatus.SUBMITTED
    assert state.missing_roles == ("creative_director",)
    state = state.sign(state.signing_role({"creative_director"}))
    assert state.status is BriefStatus.APPROVED


def test_a_role_signs_once_and_only_its_holder_signs() -> None:
    state = submitted().sign("account_director")
    with pytest.raises(NotASigner):
        state.signing_role({"account_director", "account_exec"})
    with pytest.raises(NotASigner):
        state.sign("account_director")
    with pytest.raises(NotASigner):
        submitted().signing_role({"media_planner"})


def test_one_person_with_both_roles_signs_each_role_separately() -> None:
    both = {"account_director", "creative_director"}
    state = submitted()
    state = state.sign(state.signing_role(both))
    assert state.status is BriefStatus.SUBMITTED
    state = state.sign(state.signing_role(both))
    assert state.status is BriefStatus.APPROVED


def test_editing_an_approved_brief_makes_a_new_version_without_signatures() -> None:
    approved = submitted().sign("account_director").sign("creative_director")
    edited = approved.edit()
    assert (edited.status, edited.number, edited.signed_roles) == (BriefStatus.DRAFT, 2, frozenset())


def test_return_needs_a_required_role_and_goes_back_for_editing() -> None:
    with pytest.raises(NotASigner):
        submitted().give_back({"account_exec"})
    returned = submitted().give_back({"creative_director"})
    assert returned.status is BriefStatus.RETURNED
    assert returned.edit().status is BriefStatus.DRAFT
    assert returned.submit(DIRECTORS).status is BriefStatus.SUBMITTED


def test_withdraw_takes_a_submitted_brief_back_to_draft() -> None:
    assert submitted().withdraw().status is BriefStatus.DRAFT


@pytest.mark.parametrize("status", list(BriefStatus))
@pytest.mark.parametrize("action", list(BriefAction))
def test_every_action_in_every_state_is_allowed_or_refused_with_the_allowed_list(
    status: BriefStatus, action: BriefAction
) -> None:
    state = SignOffState(status, 1, DIRECTORS)
    moves = {
        BriefAction.EDIT: state.edit,
        BriefAction.SUBMIT: lambda: state.submit(DIRECTORS),
        BriefAction.WITHDRAW: state.withdraw,
        BriefAction.SIGN: lambda: state.sign("account_director"),
        BriefAction.RETURN: lambda: state.give_back({"account_director"}),
    }
    if action in allowed_actions(status):
        assert isinstance(moves[action](), SignOffState)
    else:
        with pytest.raises(IllegalTransition) as refused:
            moves[action]()
        assert refused.value.allowed == sorted(str(a) for a in allowed_actions(status))


def test_submitting_needs_at_least_one_role() -> None:
    with pytest.raises(ValueError):
        SignOffState(BriefStatus.DRAFT, 1, ()).submit([])


# --- proposal rounds ---

INT, C = ProposalStage.INTERNAL, ProposalStage.CLIENT
D = RoundStatus.DECIDED


@pytest.mark.parametrize(
    ("stage", "decision", "follow_up", "outcome"),
    [
        (INT, ProposalDecision.APPROVED, None, RoundOutcome.TO_CLIENT),
        (INT, ProposalDecision.SENT_BACK, None, RoundOutcome.NEXT_ROUND),
        (C, ProposalDecision.APPROVED, None, RoundOutcome.EXECUTION),
        (C, ProposalDecision.REVISE, None, RoundOutcome.NEXT_ROUND),
        (C, ProposalDecision.REJECTED, RejectionFollowUp.REDO, RoundOutcome.NEXT_ROUND),
        (C, ProposalDecision.REJECTED, RejectionFollowUp.TERMINATE, RoundOutcome.ENGAGEMENT_ENDED),
    ],
)
def test_legal_decisions_and_what_they_lead_to(
    stage: ProposalStage,
    decision: ProposalDecision,
    follow_up: RejectionFollowUp | None,
    outcome: RoundOutcome,
) -> None:
    assert rounds.decide(stage, RoundStatus.PRESENTED, decision, follow_up) is outcome


@pytest.mark.parametrize(
    ("stage", "decision", "follow_up"),
    [
        (INT, ProposalDecision.REVISE, None),
        (INT, ProposalDecision.REJECTED, RejectionFollowUp.REDO),
        (C, ProposalDecision.SENT_BACK, None),
        (C, ProposalDecision.REJECTED, None),
        (C, ProposalDecision.APPROVED, RejectionFollowUp.REDO),
        (C, ProposalDecision.REVISE, RejectionFollowUp.TERMINATE),
    ],
)
def test_decisions_that_do_not_exist_at_a_stage(
    stage: ProposalStage, decision: ProposalDecision, follow_up: RejectionFollowUp | None
) -> None:
    with pytest.raises(InvalidDecision):
        rounds.decide(stage, RoundStatus.PRESENTED, decision, follow_up)


@pytest.mark.parametrize("status", [RoundStatus.PREPARED, RoundStatus.DECIDED])
def test_only_a_presented_round_is_decided(status: RoundStatus) -> None:
    with pytest.raises(IllegalTransition):
        rounds.decide(C, status, ProposalDecision.APPROVED, None)


def test_only_a_prepared_round_is_presented() -> None:
    assert rounds.present(RoundStatus.PREPARED) is RoundStatus.PRESENTED
    for status in (RoundStatus.PRESENTED, RoundStatus.DECIDED):
        with pytest.raises(IllegalTransition):
            rounds.present(status)


def test_round_numbering_follows_the_history() -> None:
    assert rounds.next_round_number(INT, []) == 1
    with pytest.raises(IllegalTransition):
        rounds.next_round_number(C, [])  # no approved internal round yet
    internal_ok = Round(INT, 1, D, ProposalDecision.APPROVED)
    assert rounds.next_round_number(C, [internal_ok]) == 1
    revised = Round(C, 1, D, ProposalDecision.REVISE)
    assert rounds.next_round_number(C, [internal_ok, revised]) == 2
    redo = Round(C, 2, D, ProposalDecision.REJECTED, RejectionFollowUp.REDO)
    assert rounds.next_round_number(C, [internal_ok, revised, redo]) == 3


@pytest.mark.parametrize(
    "last",
    [
        Round(C, 1, RoundStatus.PRESENTED),
        Round(C, 1, D, ProposalDecision.APPROVED),
        Round(C, 1, D, ProposalDecision.REJECTED, RejectionFollowUp.TERMINATE),
    ],
)
def test_no_new_client_round_while_one_is_open_after_approval_or_after_termination(last: Round) -> None:
    with pytest.raises(IllegalTransition):
        rounds.next_round_number(C, [Round(INT, 1, D, ProposalDecision.APPROVED), last])


# --- estimates ---


@pytest.mark.parametrize("status", list(EstimateStatus))
@pytest.mark.parametrize("action", ["edit", "send", "confirm", "decline", "record_actual"])
def test_estimate_actions_in_every_state(status: EstimateStatus, action: str) -> None:
    legal = {
        EstimateStatus.DRAFT: {"edit", "send"},
        EstimateStatus.SENT: {"edit", "confirm", "decline"},
        EstimateStatus.CONFIRMED: {"edit", "record_actual"},
        EstimateStatus.DECLINED: {"edit"},
    }[status]
    if action in legal:
        money.check(status, action)
    else:
        with pytest.raises(IllegalTransition):
            money.check(status, action)


def test_editing_a_sent_or_declined_estimate_returns_it_to_draft() -> None:
    for status in (EstimateStatus.SENT, EstimateStatus.DECLINED, EstimateStatus.DRAFT):
        after = money.after_edit(
            status, confirmed_total=None, new_total=Decimal("1"), tolerance_percent=Decimal("10")
        )
        assert after is EstimateStatus.DRAFT


def test_a_confirmed_estimate_stays_confirmed_only_within_tolerance() -> None:
    def after(new_total: str) -> EstimateStatus:
        return money.after_edit(
            EstimateStatus.CONFIRMED,
            confirmed_total=Decimal("100000.00"),
            new_total=Decimal(new_total),
            tolerance_percent=Decimal("10"),
        )

    assert after("110000.00") is EstimateStatus.CONFIRMED
    assert after("90000.00") is EstimateStatus.CONFIRMED
    assert after("110000.01") is EstimateStatus.DRAFT
    assert after("89999.99") is EstimateStatus.DRAFT
