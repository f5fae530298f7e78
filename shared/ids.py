"""Identifiers: time-ordered UUIDv7, so primary keys and cursors sort by creation."""

from __future__ import annotations

import uuid

import uuid6


def new_id() -> uuid.UUID:
    return uuid.UUID(bytes=uuid6.uuid7().bytes)
