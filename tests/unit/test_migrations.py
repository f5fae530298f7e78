"""Each service's migrations build exactly the schema its models describe."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from services.catalogue import SERVICES
from shared.db import Database, infra_metadata
from shared.migrations import upgrade


@pytest.mark.parametrize("name", sorted(SERVICES))
async def test_migrations_match_models(tmp_path: Path, name: str) -> None:
    definition = SERVICES[name].definition
    db = Database(f"sqlite+aiosqlite:///{tmp_path}/{name}.db")
    try:
        await upgrade(db, definition.migrations_dir, service=name)
        async with db.engine.connect() as connection:
            diff = await connection.run_sync(
                lambda sync: compare_metadata(
                    MigrationContext.configure(sync), [infra_metadata, definition.metadata]
                )
            )
    finally:
        await db.dispose()
    assert diff == [], (
        f"{name}: models and migrations differ; run `python -m services revision --service {name}`"
    )
