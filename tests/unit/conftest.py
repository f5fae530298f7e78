"""Fixtures shared by the unit tests of the platform's plumbing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from shared.db import Database, infra_metadata


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    """A SQLite database with the outbox, inbox and other tables every service has."""
    database = Database(f"sqlite+aiosqlite:///{tmp_path}/unit.db")
    async with database.engine.begin() as connection:
        await connection.run_sync(infra_metadata.create_all)
    yield database
    await database.dispose()
