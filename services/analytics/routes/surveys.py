"""`/v1/surveys/{token}`: the public survey form and its one answer; the token is the only credential."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from services.analytics import surveys
from services.analytics.schemas import SurveyAnswer, SurveyForm, SurveyQuestion, SurveyReceipt
from shared.app import ClockDep, OutboxDep, SessionDep
from shared.errors import problem_responses

router = APIRouter(prefix="/v1/surveys", tags=["surveys"], responses=problem_responses(404, 410))

Token = Annotated[str, Path(min_length=20, max_length=100, description="The token from the survey link.")]

QUESTIONS = [
    SurveyQuestion(
        id="csat",
        text="How satisfied are you with how we handled this?",
        text_zh="您对本次服务满意吗?",
        scale=(1, 5),
    ),
    SurveyQuestion(
        id="nps",
        text="How likely are you to recommend us to a friend?",
        text_zh="您向朋友推荐我们的可能性有多大?",
        scale=(0, 10),
    ),
    SurveyQuestion(
        id="ces",
        text="How easy was it to get your issue resolved?",
        text_zh="解决问题的过程是否轻松?",
        scale=(1, 7),
    ),
    SurveyQuestion(id="comment", text="Anything else you would like to tell us?", text_zh="其他意见或建议"),
]


@router.get("/{token}", response_model=SurveyForm)
async def survey_form(token: Token, session: SessionDep, clock: ClockDep) -> SurveyForm:
    """The survey's questions (public: the token is the credential)."""
    survey = await surveys.survey_by_token(session, token, now=clock.now())
    return SurveyForm(
        survey_id=survey.id,
        about="ticket" if survey.ticket_id else "presentation",
        expires_at=survey.expires_at,
        answered=survey.answered_at is not None,
        questions=QUESTIONS,
    )


@router.post(
    "/{token}/responses",
    response_model=SurveyReceipt,
    status_code=201,
    responses=problem_responses(409, 422),
)
async def answer_survey(
    token: Token, body: SurveyAnswer, session: SessionDep, outbox: OutboxDep, clock: ClockDep
) -> SurveyReceipt:
    """Answer: CSAT 1–5, NPS 0–10, CES 1–7 and a comment; once only (409 after), 410 once expired."""
    now = clock.now()
    survey = await surveys.survey_by_token(session, token, now=now, for_update=True)
    completed = await surveys.answer(
        session, outbox, survey, csat=body.csat, nps=body.nps, ces=body.ces, comment=body.comment, now=now
    )
    return SurveyReceipt(survey_id=completed.survey_id, completed_at=completed.completed_at)
