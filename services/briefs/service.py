"""briefs' domain logic."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from services.briefs.models import Client
from services.briefs.schemas import ClientCreate
from shared.clock import Clock
from shared.errors import not_found


async def add_client(session: AsyncSession, request: ClientCreate, *, clock: Clock) -> Client:
    now = clock.now()
    client = Client(**request.model_dump(), created_at=now, updated_at=now)
    session.add(client)
    await session.flush()
    return client


async def get_client(session: AsyncSession, client_id: object) -> Client:
    client = await session.get(Client, client_id)
    if client is None:
        raise not_found("client", client_id)
    return client
