"""`Database.reading()` on SQLite leaves pooled connections as the writers need them."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from shared.db import Database


async def test_a_read_leaves_the_connection_to_the_explicit_transactions(tmp_path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'kefu.db'}", pool_size=1)
    try:
        async with db.transaction() as session:
            await session.execute(sa.text("CREATE TABLE t (n INTEGER)"))
        async with db.reading() as session:
            assert (await session.execute(sa.text("SELECT count(*) FROM t"))).scalar_one() == 0
        async with db.engine.connect() as connection:
            raw = await connection.get_raw_connection()
            # None: pysqlite issues no BEGIN of its own; Database's BEGIN IMMEDIATE is the only one.
            assert raw.driver_connection.isolation_level is None
        async with db.transaction() as session:
            await session.execute(sa.text("INSERT INTO t VALUES (1)"))
        async with db.reading() as session:
            assert (await session.execute(sa.text("SELECT count(*) FROM t"))).scalar_one() == 1
    finally:
        await db.dispose()
