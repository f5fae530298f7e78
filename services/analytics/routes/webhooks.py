"""`/v1/webhooks`: operators subscribe URLs to breach and warning events and see every delivery."""

from __future__ import annotations

import secrets
import uuid
from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from services.analytics.models import Webhook, WebhookDelivery
from services.analytics.schemas import DeliveryOut, WebhookCreate, WebhookCreated, WebhookOut
from shared.app import ClockDep, SessionDep
from shared.auth import CurrentPrincipal, require
from shared.errors import not_found, problem_responses
from shared.idempotency import IdempotencyDep
from shared.pagination import Cursor, Limit, Page, keyset_page

router = APIRouter(
    prefix="/v1/webhooks",
    tags=["webhooks"],
    responses=problem_responses(401, 403),
    dependencies=[require("webhooks:write")],
)


def _out(hook: Webhook) -> dict[str, Any]:
    return WebhookOut.model_validate(hook, from_attributes=True).model_dump(mode="json")


@router.post("", response_model=WebhookCreated, status_code=201, responses=problem_responses(422))
async def create_webhook(
    body: WebhookCreate,
    session: SessionDep,
    clock: ClockDep,
    principal: CurrentPrincipal,
    idempotency: IdempotencyDep,
) -> Any:
    """Subscribe a URL; every POST to it carries `X-Kefu-Signature: t=…,v1=<HMAC-SHA256>`."""
    if (replayed := await idempotency.replay(session)) is not None:
        return replayed
    hook = Webhook(
        url=str(body.url),
        secret=body.secret or secrets.token_urlsafe(32),
        events=sorted(set(body.events)),
        created_by=principal.subject,
        created_at=clock.now(),
    )
    session.add(hook)
    await session.flush()
    out = {**_out(hook), "secret": hook.secret}
    headers = {"Location": f"/v1/webhooks/{hook.id}"}
    await idempotency.remember(session, status=201, body=out, headers=headers)
    return JSONResponse(out, status_code=201, headers=headers)


@router.get("", response_model=Page[WebhookOut])
async def list_webhooks(session: SessionDep, limit: Limit = 50, cursor: Cursor = None) -> dict[str, Any]:
    """Subscriptions, newest first."""
    rows, next_cursor = await keyset_page(
        session, sa.select(Webhook), key=Webhook.id, limit=limit, cursor=cursor
    )  # type: ignore[arg-type]
    return {"items": [_out(r) for r in rows], "next_cursor": next_cursor}


async def _hook(session: Any, webhook_id: uuid.UUID) -> Webhook:
    hook = await session.get(Webhook, webhook_id)
    if hook is None:
        raise not_found("webhook", webhook_id)
    return hook


@router.get("/{webhook_id}", response_model=WebhookOut, responses=problem_responses(404))
async def get_webhook(webhook_id: uuid.UUID, session: SessionDep) -> dict[str, Any]:
    """One subscription."""
    return _out(await _hook(session, webhook_id))


@router.delete("/{webhook_id}", status_code=204, responses=problem_responses(404))
async def delete_webhook(webhook_id: uuid.UUID, session: SessionDep) -> Response:
    """Unsubscribe: no new deliveries; pending ones are cancelled, past ones stay listed."""
    hook = await _hook(session, webhook_id)
    hook.active = False
    await session.execute(
        sa.update(WebhookDelivery)
        .where(WebhookDelivery.webhook_id == hook.id, WebhookDelivery.status == "pending")
        .values(status="cancelled")
    )
    return Response(status_code=204)


@router.get("/{webhook_id}/deliveries", response_model=Page[DeliveryOut], responses=problem_responses(404))
async def list_deliveries(
    webhook_id: uuid.UUID, session: SessionDep, limit: Limit = 50, cursor: Cursor = None
) -> dict[str, Any]:
    """Every delivery to this subscription, newest first: status, attempts, last response."""
    await _hook(session, webhook_id)
    rows, next_cursor = await keyset_page(
        session,
        sa.select(WebhookDelivery).where(WebhookDelivery.webhook_id == webhook_id),
        key=WebhookDelivery.id,  # type: ignore[arg-type]
        limit=limit,
        cursor=cursor,
    )
    items = [
        DeliveryOut(
            **{k: getattr(r, k) for k in DeliveryOut.model_fields if k != "feed_id"}, feed_id=r.feed_seq
        ).model_dump(mode="json")
        for r in rows
    ]
    return {"items": items, "next_cursor": next_cursor}
