"""Alembic per service: one `migrations/` folder each, run from code at start-up or by `make migrate`."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from alembic import command, context
from alembic.config import Config
from sqlalchemy import MetaData, pool, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import async_engine_from_config

from shared.db import Database, infra_metadata


def alembic_config(migrations_dir: Path, url: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir))
    if url:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


async def upgrade(db: Database, migrations_dir: Path, *, service: str, revision: str = "head") -> None:
    """Bring the service's database to `revision`; replicas starting together take turns."""
    config = alembic_config(migrations_dir)
    async with db.engine.begin() as connection:
        if not db.is_sqlite:
            await connection.execute(
                text("SELECT pg_advisory_xact_lock(hashtext(:name))"), {"name": f"kefu-{service}"}
            )

        def run(sync_connection: Connection) -> None:
            config.attributes["connection"] = sync_connection
            command.upgrade(config, revision)

        await connection.run_sync(run)


def run_env(service_metadata: MetaData) -> None:
    """The body of every service's `migrations/env.py`."""
    target = [infra_metadata, service_metadata]
    connection: Connection | None = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection, target)
        return
    engine = async_engine_from_config(
        context.config.get_section(context.config.config_ini_section, {}),
        prefix="sqlalchemy.",
        poolclass=pool.NullPool,
    )

    async def online() -> None:
        async with engine.begin() as async_connection:
            await async_connection.run_sync(_run, target)
        await engine.dispose()

    asyncio.run(online())


def _run(connection: Connection, target: Any) -> None:
    context.configure(
        connection=connection,
        target_metadata=target,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
