"""`Idempotency-Key` on creating POSTs: the same key and body returns the first response."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Annotated, Any, cast

import sqlalchemy as sa
from fastapi import Depends, Header, Request
from fastapi.responses import JSONResponse
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession

from shared.auth import CurrentPrincipal
from shared.db import UTCDateTime, dialect_insert, infra_metadata
from shared.errors import Problem

idempotency_table = sa.Table(
    "idempotency_keys",
    infra_metadata,
    sa.Column("principal", sa.String(200), primary_key=True),
    sa.Column("key", sa.String(200), primary_key=True),
    sa.Column("fingerprint", sa.String(64), nullable=False),
    sa.Column("status_code", sa.Integer(), nullable=False),
    sa.Column("response", sa.LargeBinary(), nullable=False),
    sa.Column("headers", sa.Text(), nullable=False, server_default="{}"),
    sa.Column("created_at", UTCDateTime(), nullable=False),
)


class Idempotency:
    """Bound to one request; a no-op when the client sent no key."""

    def __init__(self, key: str | None, principal: str, fingerprint: str) -> None:
        self.key = key
        self.principal = principal
        self.fingerprint = fingerprint

    async def replay(self, session: AsyncSession) -> JSONResponse | None:
        if self.key is None:
            return None
        row = (
            await session.execute(
                sa.select(idempotency_table).where(
                    idempotency_table.c.principal == self.principal, idempotency_table.c.key == self.key
                )
            )
        ).first()
        if row is None:
            return None
        if row.fingerprint != self.fingerprint:
            raise Problem(
                422,
                "This Idempotency-Key was already used with a different request body.",
                slug="idempotency-key-reused",
            )
        headers = {**json.loads(row.headers), "Idempotent-Replayed": "true"}
        return JSONResponse(json.loads(row.response), status_code=row.status_code, headers=headers)

    async def remember(
        self, session: AsyncSession, *, status: int, body: Any, headers: dict[str, str] | None = None
    ) -> None:
        """Store the response in the same transaction as the change it describes."""
        if self.key is None:
            return
        insert = dialect_insert(session)
        result = await session.execute(
            insert(idempotency_table)
            .values(**self.row(status=status, body=body, headers=headers))
            .on_conflict_do_nothing()
        )
        if not cast("CursorResult[Any]", result).rowcount:
            # A concurrent request with the same key won the race; this one must not commit its copy.
            raise in_flight()

    def row(self, *, status: int, body: Any, headers: dict[str, str] | None = None) -> dict[str, Any]:
        """The stored response, as `remember` writes it (for writers that insert it themselves)."""
        return {
            "principal": self.principal,
            "key": self.key,
            "fingerprint": self.fingerprint,
            "status_code": status,
            "response": json.dumps(body, ensure_ascii=False, default=str).encode(),
            "headers": json.dumps(headers or {}),
            "created_at": datetime.now(UTC),
        }


def in_flight() -> Problem:
    """Another request with the same key holds it: it has not committed yet, or has just committed."""
    return Problem(
        409,
        "A request with this Idempotency-Key is already being processed.",
        slug="idempotency-key-in-flight",
    )


async def _idempotency(
    request: Request,
    principal: CurrentPrincipal,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key", max_length=200, description="Retry-safe key for this create request."
        ),
    ] = None,
) -> Idempotency:
    return Idempotency(idempotency_key, principal.subject, fingerprint(request, await request.body()))


def fingerprint(request: Request, body: bytes) -> str:
    """What makes two requests with one key the same request: method, path and body."""
    return hashlib.sha256(
        request.method.encode() + b" " + request.url.path.encode() + b"\n" + body
    ).hexdigest()


IdempotencyDep = Annotated[Idempotency, Depends(_idempotency)]
