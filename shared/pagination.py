"""Cursor pagination: `?limit=` (default 50, max 200), an opaque `?cursor=`; `{items, next_cursor}` back."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from typing import Annotated, Any, Generic, TypeVar

import sqlalchemy as sa
from fastapi import Query
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from shared.errors import Problem

T = TypeVar("T")

Limit = Annotated[int, Query(ge=1, le=200, description="Page size (1–200).")]
Cursor = Annotated[str | None, Query(max_length=500, description="Opaque cursor from `next_cursor`.")]


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = None


def encode_cursor(values: Sequence[Any]) -> str:
    raw = json.dumps(list(values), separators=(",", ":"), default=str).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> list[Any]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise Problem(400, "The cursor is not one this API issued.", slug="invalid-cursor") from None
    if not isinstance(values, list):
        raise Problem(400, "The cursor is not one this API issued.", slug="invalid-cursor")
    return values


async def keyset_page(
    session: AsyncSession,
    query: sa.Select[Any],
    *,
    key: sa.ColumnElement[Any],
    limit: int,
    cursor: str | None,
    descending: bool = True,
) -> tuple[list[Any], str | None]:
    """One page of `query` ordered by a unique `key` (a UUIDv7 id sorts by creation), newest first."""
    if cursor is not None:
        (raw,) = decode_cursor(cursor)[:1] or [None]
        try:
            after = key.type.python_type(raw)
        except (TypeError, ValueError):
            raise Problem(400, "The cursor is not one this API issued.", slug="invalid-cursor") from None
        query = query.where(key < after if descending else key > after)
    query = query.order_by(key.desc() if descending else key.asc()).limit(limit + 1)
    rows = list((await session.execute(query)).scalars().all())
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    attribute = getattr(key, "key", None)
    assert attribute, "keyset_page needs a mapped column as its key"
    return rows, encode_cursor([str(getattr(rows[-1], attribute))])
