"""The inbox on PostgreSQL: one claim per event id, alone or in batches, duplicates in any position."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from shared import inbox
from shared.db import Database, infra_metadata

AT = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


@pytest.fixture
async def db(databases: dict[str, str]) -> AsyncIterator[Database]:
    database = Database(databases["analytics"])
    async with database.engine.begin() as connection:
        await connection.run_sync(infra_metadata.create_all)
    yield database
    await database.dispose()


async def test_batches_claim_each_id_once(db: Database) -> None:
    async with db.transaction() as session:
        assert await inbox.claim(session, event_id="e1", type="t.a.b.v1", source="/s", at=AT)
    async with db.transaction() as session:
        fresh = await inbox.claim_many(
            session, [("e1", "t.a.b.v1", "/s"), ("e2", "t.a.b.v1", "/s"), ("e3", "t.a.b.v1", "/s")], at=AT
        )
    assert fresh == {"e2", "e3"}
    async with db.transaction() as session:
        assert await inbox.claim_many(
            session, [("e3", "t.a.b.v1", "/s"), ("e4", "t.a.b.v1", "/x")], at=AT
        ) == {"e4"}
        assert not await inbox.claim(session, event_id="e4", type="t.a.b.v1", source="/x", at=AT)
        rows = (
            await session.execute(sa.select(inbox.inbox_table).order_by(inbox.inbox_table.c.event_id))
        ).all()
    assert [(r.event_id, r.source, r.handled_at) for r in rows] == [
        ("e1", "/s", AT),
        ("e2", "/s", AT),
        ("e3", "/s", AT),
        ("e4", "/x", AT),
    ]


async def test_a_rolled_back_batch_claims_nothing(db: Database) -> None:
    with pytest.raises(RuntimeError):
        async with db.transaction() as session:
            assert await inbox.claim_many(session, [("r1", "t.a.b.v1", "/s")], at=AT) == {"r1"}
            raise RuntimeError("the handler failed")
    async with db.transaction() as session:
        assert await inbox.claim_many(session, [("r1", "t.a.b.v1", "/s")], at=AT) == {"r1"}
