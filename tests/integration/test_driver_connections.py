"""The driver's own connections (`Database.driver_connection`) come from SQLAlchemy's pool but bypass its
error handling: one the server dropped, or one left mid-statement, must not be handed to the next caller."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from shared.db import Database
from shared.db_errors import database_unreachable
from tests.integration.conftest import PG_DSN


@pytest.fixture
async def db(databases: dict[str, str]) -> AsyncIterator[Database]:
    database = Database(databases["intake"], pool_size=1)
    yield database
    await database.dispose()


async def test_a_connection_the_server_dropped_while_pooled_fails_once_as_unreachable(db: Database) -> None:
    async with db.driver_connection() as connection:
        pid = await connection.fetchval("SELECT pg_backend_pid()")
    # As a fast shutdown or an operator does it: the server ends the idle backend.
    admin = await asyncpg.connect(f"{PG_DSN}/postgres")
    try:
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
    finally:
        await admin.close()
    await asyncio.sleep(0.2)

    with pytest.raises(Exception) as failed:
        async with db.driver_connection() as connection:
            await connection.fetchval("SELECT 1")
    # The API answers this with 503 and Retry-After, not a 500; and the retry gets a working connection.
    assert database_unreachable(failed.value), repr(failed.value)
    async with db.driver_connection() as connection:
        assert await connection.fetchval("SELECT pg_backend_pid()") != pid


async def test_a_statement_cancelled_midway_leaves_no_busy_connection_in_the_pool(db: Database) -> None:
    started = asyncio.Event()

    async def slow() -> None:
        async with db.driver_connection() as connection:
            started.set()
            await connection.fetchval("SELECT pg_sleep(5)")

    task = asyncio.create_task(slow())
    await started.wait()
    await asyncio.sleep(0.1)
    task.cancel()  # a request whose client went away, a timeout
    with pytest.raises(asyncio.CancelledError):
        await task

    async with db.driver_connection() as connection:
        assert await asyncio.wait_for(connection.fetchval("SELECT 1"), 2) == 1
