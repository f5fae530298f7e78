"""Briefs: typed fields kept in versions, sign-off by role pinned to a version, and the media booking gate."""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from services.briefs import service
from services.briefs.brief_fields import merged, parse_fields
from services.briefs.models import Brief, BriefVersion, Estimate, SignOff, SignOffRule
from services.briefs.money import EstimateStatus
from services.briefs.schemas import BriefCreate, BriefOut, BriefUpdate, Signature, validation_problem
from services.briefs.signoff import (
    DEFAULT_SIGNOFF_ROLES,
    BriefStatus,
    IllegalTransition,
    NotASigner,
    SignOffState,
    allowed_actions,
)
from shared.auth import Principal
from shared.clock import Clock
from shared.concurrency import check_if_match
from shared.contracts.briefs import BriefApproved, BriefRef, BriefReturned, BriefSubmitted, BriefType
from shared.errors import Problem, conflict, not_found
from shared.outbox import Outbox


def fields_digest(title: str, fields: dict[str, Any]) -> str:
    blob = json.dumps(
        {"title": title, "fields": fields}, ensure_ascii=False, sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(blob.encode()).hexdigest()


async def seed_signoff_rules(session: AsyncSession, *, clock: Clock) -> None:
    """Default required sign-offs for any brief type that has none yet; an agency's changes are kept."""
    present = set((await session.execute(sa.select(SignOffRule.brief_type))).scalars())
    for brief_type, roles in DEFAULT_SIGNOFF_ROLES.items():
        if brief_type.value not in present:
            session.add(
                SignOffRule(
                    brief_type=brief_type.value,
                    roles=list(roles),
                    updated_by="system",
                    updated_at=clock.now(),
                )
            )


async def signoff_rules(session: AsyncSession) -> list[SignOffRule]:
    return list((await session.execute(sa.select(SignOffRule).order_by(SignOffRule.brief_type))).scalars())


async def set_signoff_rule(
    session: AsyncSession, brief_type: BriefType, roles: list[str], *, actor: str, clock: Clock
) -> SignOffRule:
    rule = await session.get(SignOffRule, brief_type.value)
    if rule is None:
        rule = SignOffRule(brief_type=brief_type.value, roles=[], updated_by=actor, updated_at=clock.now())
        session.add(rule)
    rule.roles = list(dict.fromkeys(roles))
    rule.updated_by, rule.updated_at = actor, clock.now()
    await session.flush()
    return rule


async def get_brief(session: AsyncSession, brief_id: uuid.UUID) -> Brief:
    brief = await session.get(Brief, brief_id)
    if brief is None:
        raise not_found("brief", brief_id)
    return brief


def _version(brief: Brief, *, actor: str, at: Any) -> BriefVersion:
    return BriefVersion(
        brief_id=brief.id,
        number=brief.number,
        title=brief.title,
        fields=brief.fields,
        digest=fields_digest(brief.title, brief.fields),
        created_by=actor,
        created_at=at,
    )


async def create_brief(session: AsyncSession, request: BriefCreate, *, actor: str, clock: Clock) -> Brief:
    await service.active_client(session, request.client_id)
    if request.parent_id is not None:
        parent = await session.get(Brief, request.parent_id)
        if parent is None or parent.client_id != request.client_id or parent.type != BriefType.CLIENT:
            raise Problem(422, "parent_id must be a client brief of the same client.", slug="invalid-parent")
    now = clock.now()
    brief = Brief(
        client_id=request.client_id,
        type=request.type.value,
        parent_id=request.parent_id,
        title=request.title,
        fields=request.fields,
        created_by=actor,
        created_at=now,
        updated_at=now,
    )
    session.add(brief)
    await session.flush()
    session.add(_version(brief, actor=actor, at=now))
    await session.flush()
    return brief


async def current_signatures(session: AsyncSession, brief: Brief) -> list[SignOff]:
    """Signatures on the current version given since it was last submitted."""
    if brief.submitted_at is None:
        return []
    rows = await session.execute(
        sa.select(SignOff)
        .where(
            SignOff.brief_id == brief.id,
            SignOff.number == brief.number,
            SignOff.decision == "signed",
            SignOff.at >= brief.submitted_at,
        )
        .order_by(SignOff.at, SignOff.id)
    )
    return list(rows.scalars())


async def state_of(session: AsyncSession, brief: Brief) -> SignOffState:
    signed = await current_signatures(session, brief) if brief.status != BriefStatus.DRAFT else []
    return SignOffState(
        BriefStatus(brief.status),
        brief.number,
        tuple(brief.required_roles),
        frozenset(s.role for s in signed),
    )


async def brief_out(session: AsyncSession, brief: Brief) -> BriefOut:
    signed = await current_signatures(session, brief) if brief.status != BriefStatus.DRAFT else []
    state = SignOffState(
        BriefStatus(brief.status),
        brief.number,
        tuple(brief.required_roles),
        frozenset(s.role for s in signed),
    )
    actions = [str(a) for a in allowed_actions(state.status)]
    if brief.type == BriefType.MEDIA and brief.status == BriefStatus.APPROVED and brief.booked_at is None:
        actions.append("book")
    return BriefOut(
        id=brief.id,
        client_id=brief.client_id,
        type=BriefType(brief.type),
        parent_id=brief.parent_id,
        title=brief.title,
        fields=brief.fields,
        version=brief.number,
        status=brief.status,  # type: ignore[arg-type]
        required_roles=list(brief.required_roles),
        signatures=[Signature(role=s.role, user=s.user, at=s.at) for s in signed],
        missing_roles=list(state.missing_roles) if brief.status == BriefStatus.SUBMITTED else [],
        missing_fields=parse_fields(BriefType(brief.type), brief.fields).missing(),
        allowed_actions=actions,
        created_by=brief.created_by,
        created_at=brief.created_at,
        updated_at=brief.updated_at,
        submitted_at=brief.submitted_at,
        approved_at=brief.approved_at,
        booked_at=brief.booked_at,
        booked_by=brief.booked_by,
        booking_estimate_id=brief.booking_estimate_id,
    )


def _ref(brief: Brief) -> BriefRef:
    return BriefRef(
        id=brief.id,
        client_id=brief.client_id,
        type=BriefType(brief.type),
        version=brief.number,
        title=brief.title,
    )


def _illegal(exc: IllegalTransition) -> Problem:
    return conflict(exc.detail, allowed=exc.allowed)


async def edit_brief(
    session: AsyncSession,
    brief_id: uuid.UUID,
    changes: BriefUpdate,
    *,
    if_match: str | None,
    actor: str,
    clock: Clock,
) -> Brief:
    """Every edit is a new version; an approved brief edited goes back to draft and needs signing again."""
    brief = await get_brief(session, brief_id)
    check_if_match(if_match, brief.version)
    state = await state_of(session, brief)
    try:
        state = state.edit()
    except IllegalTransition as exc:
        raise _illegal(exc) from None
    title = changes.title or brief.title
    try:
        fields = merged(BriefType(brief.type), brief.fields, changes.fields or {})
    except ValidationError as exc:
        raise validation_problem(exc, prefix=("body", "fields")) from None
    if title == brief.title and fields == brief.fields:
        return brief  # nothing changed: no new version, and an approval stands
    now = clock.now()
    brief.title, brief.fields = title, fields
    brief.number, brief.status = state.number, state.status.value
    brief.approved_at = None
    brief.updated_at = now
    brief.version += 1
    session.add(_version(brief, actor=actor, at=now))
    await session.flush()
    return brief


async def submit(
    session: AsyncSession, brief_id: uuid.UUID, *, actor: str, outbox: Outbox, clock: Clock
) -> Brief:
    brief = await get_brief(session, brief_id)
    await service.active_client(session, brief.client_id)
    missing = parse_fields(BriefType(brief.type), brief.fields).missing()
    if missing:
        raise Problem(
            409,
            "The brief is missing fields it needs before sign-off: " + ", ".join(missing),
            slug="incomplete-brief",
            missing_fields=missing,
            allowed=["edit"],
        )
    rule = await session.get(SignOffRule, brief.type)
    roles = (
        rule.roles if rule is not None and rule.roles else list(DEFAULT_SIGNOFF_ROLES[BriefType(brief.type)])
    )
    try:
        state = (await state_of(session, brief)).submit(roles)
    except IllegalTransition as exc:
        raise _illegal(exc) from None
    now = clock.now()
    brief.status, brief.required_roles = state.status.value, list(state.required_roles)
    brief.submitted_at = brief.updated_at = now
    brief.version += 1
    await outbox.add(
        session,
        "briefs.brief.submitted.v1",
        BriefSubmitted(brief=_ref(brief), submitted_by=actor, submitted_at=now),
        subject=str(brief.id),
    )
    await session.flush()
    return brief


async def withdraw(session: AsyncSession, brief_id: uuid.UUID, *, clock: Clock) -> Brief:
    brief = await get_brief(session, brief_id)
    try:
        state = (await state_of(session, brief)).withdraw()
    except IllegalTransition as exc:
        raise _illegal(exc) from None
    brief.status = state.status.value
    brief.updated_at = clock.now()
    brief.version += 1
    await session.flush()
    return brief


async def sign(
    session: AsyncSession, brief_id: uuid.UUID, *, principal: Principal, outbox: Outbox, clock: Clock
) -> Brief:
    """A holder of a required role signs the current version; the last required signature approves it."""
    brief = await get_brief(session, brief_id)
    state = await state_of(session, brief)
    try:
        if state.status is not BriefStatus.SUBMITTED:
            raise IllegalTransition(
                f"A {state.status} brief cannot be signed.", allowed_actions(state.status)
            )
        role = state.signing_role(principal.roles)
        state = state.sign(role)
    except IllegalTransition as exc:
        raise _illegal(exc) from None
    except NotASigner as exc:
        raise Problem(403, str(exc), slug="not-a-signer") from None
    now = clock.now()
    approves = state.status is BriefStatus.APPROVED
    session.add(
        SignOff(
            brief_id=brief.id,
            number=brief.number,
            role=role,
            user=principal.subject,
            decision="signed",
            completes_approval=approves,
            at=now,
        )
    )
    brief.status = state.status.value
    brief.updated_at = now
    brief.version += 1
    await session.flush()
    if approves:
        brief.approved_at = now
        signed = await current_signatures(session, brief)
        await outbox.add(
            session,
            "briefs.brief.approved.v1",
            BriefApproved(
                brief=_ref(brief), approved_at=now, signed_by=[f"{s.role}:{s.user}" for s in signed]
            ),
            subject=str(brief.id),
        )
    return brief


async def give_back(
    session: AsyncSession,
    brief_id: uuid.UUID,
    comments: str,
    *,
    principal: Principal,
    outbox: Outbox,
    clock: Clock,
) -> Brief:
    brief = await get_brief(session, brief_id)
    state = await state_of(session, brief)
    try:
        state = state.give_back(principal.roles)
    except IllegalTransition as exc:
        raise _illegal(exc) from None
    except NotASigner as exc:
        raise Problem(403, str(exc), slug="not-a-signer") from None
    now = clock.now()
    role = next(r for r in brief.required_roles if r in principal.roles)
    session.add(
        SignOff(
            brief_id=brief.id,
            number=brief.number,
            role=role,
            user=principal.subject,
            decision="returned",
            comments=comments,
            at=now,
        )
    )
    brief.status = state.status.value
    brief.updated_at = now
    brief.version += 1
    await outbox.add(
        session,
        "briefs.brief.returned.v1",
        BriefReturned(
            brief=_ref(brief), returned_by=f"{role}:{principal.subject}", returned_at=now, comments=comments
        ),
        subject=str(brief.id),
    )
    await session.flush()
    return brief


async def book_media(
    session: AsyncSession, brief_id: uuid.UUID, estimate_id: uuid.UUID, *, actor: str, clock: Clock
) -> Brief:
    """Rule 5: media is booked only against an estimate the client confirmed in writing."""
    brief = await get_brief(session, brief_id)
    if brief.type != BriefType.MEDIA:
        raise conflict("Only a media brief is booked.", allowed=[])
    if brief.booked_at is not None:
        raise conflict("The media plan is already booked.", allowed=[])
    if brief.status != BriefStatus.APPROVED:
        raise conflict(
            "The media brief must be approved before booking.",
            allowed=[str(a) for a in allowed_actions(BriefStatus(brief.status))],
        )
    estimate = await session.get(Estimate, estimate_id)
    if estimate is None or estimate.client_id != brief.client_id or estimate.brief_id not in (None, brief.id):
        raise conflict("Booking needs a confirmed estimate of this client for this brief.", allowed=[])
    if estimate.status != EstimateStatus.CONFIRMED:
        raise conflict(
            f"The estimate is {estimate.status}; the client must confirm it in writing before booking.",
            allowed=[],
        )
    now = clock.now()
    brief.booked_at, brief.booked_by, brief.booking_estimate_id = now, actor, estimate.id
    brief.updated_at = now
    brief.version += 1
    await session.flush()
    return brief


async def versions(session: AsyncSession, brief_id: uuid.UUID) -> list[BriefVersion]:
    await get_brief(session, brief_id)
    rows = await session.execute(
        sa.select(BriefVersion).where(BriefVersion.brief_id == brief_id).order_by(BriefVersion.number.desc())
    )
    return list(rows.scalars())


async def signoffs(session: AsyncSession, brief_id: uuid.UUID) -> list[SignOff]:
    await get_brief(session, brief_id)
    rows = await session.execute(
        sa.select(SignOff).where(SignOff.brief_id == brief_id).order_by(SignOff.at, SignOff.id)
    )
    return list(rows.scalars())
