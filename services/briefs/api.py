"""briefs' HTTP routes."""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, Response

from services.briefs import service
from services.briefs.models import Client
from services.briefs.schemas import ClientCreate, ClientOut
from shared.app import ClockDep, SessionDep
from shared.auth import require
from shared.concurrency import etag
from shared.errors import problem_responses
from shared.idempotency import IdempotencyDep
from shared.pagination import Cursor, Limit, Page, keyset_page

router = APIRouter(prefix="/v1", tags=["clients"], responses=problem_responses(401, 403))


@router.post(
    "/clients",
    status_code=201,
    response_model=ClientOut,
    dependencies=[require("clients:write")],
    responses=problem_responses(400, 409, 422),
)
async def add_client(
    body: ClientCreate, session: SessionDep, clock: ClockDep, idempotency: IdempotencyDep, response: Response
) -> Any:
    """Add an advertiser the agency serves."""
    if (replay := await idempotency.replay(session)) is not None:
        return replay
    client = await service.add_client(session, body, clock=clock)
    out = ClientOut.model_validate(client)
    await idempotency.remember(
        session, status=201, body=out.model_dump(mode="json"), headers={"ETag": etag(client.version)}
    )
    response.headers["ETag"] = etag(client.version)
    return out


@router.get(
    "/clients/{client_id}",
    response_model=ClientOut,
    dependencies=[require("clients:read")],
    responses=problem_responses(404),
)
async def get_client(client_id: uuid.UUID, session: SessionDep, response: Response) -> ClientOut:
    """One client."""
    client = await service.get_client(session, client_id)
    response.headers["ETag"] = etag(client.version)
    return ClientOut.model_validate(client)


@router.get("/clients", response_model=Page[ClientOut], dependencies=[require("clients:read")])
async def list_clients(session: SessionDep, limit: Limit = 50, cursor: Cursor = None) -> Page[ClientOut]:
    """Clients, newest first."""
    clients, next_cursor = await keyset_page(
        session, sa.select(Client), key=Client.id, limit=limit, cursor=cursor
    )
    return Page(items=[ClientOut.model_validate(c) for c in clients], next_cursor=next_cursor)
