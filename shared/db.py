"""Async database access for SQLite (aiosqlite) and PostgreSQL (asyncpg), one database per service."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, DateTime, MetaData, String, any_, bindparam, event, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import Insert as PgInsert
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import Insert as SqliteInsert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import ExceptionContext, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.types import TypeDecorator

from shared.db_errors import connection_unusable, refused_statement

# Tables every service has (outbox, inbox, idempotency keys); each service's Alembic env adds them.
infra_metadata = MetaData()


class UTCDateTime(TypeDecorator[datetime]):
    """Timestamps stored in UTC and always read back time-zone aware, on SQLite as on PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class DecimalText(TypeDecorator[Decimal]):
    """Money as exact decimal text: SQLite has no decimal type and a float would lose fen."""

    impl = String(40)
    cache_ok = True

    def process_bind_param(self, value: Decimal | None, dialect: Any) -> str | None:
        return None if value is None else str(Decimal(value))

    def process_result_value(self, value: str | None, dialect: Any) -> Decimal | None:
        return None if value is None else Decimal(value)


def dialect_name(session: AsyncSession) -> str:
    return session.get_bind().dialect.name


def dialect_insert(session: AsyncSession) -> Callable[[Any], PgInsert | SqliteInsert]:
    """The session's dialect's INSERT, which has `ON CONFLICT` (the generic one has not)."""
    return pg_insert if dialect_name(session) == "postgresql" else sqlite_insert


def any_of(column: Any, values: Sequence[Any], *, postgresql: bool) -> ColumnElement[bool]:
    """`column IN (values)`, as one array parameter on PostgreSQL: `column = ANY($1)`.

    An IN list is rendered with one placeholder per value, so every length is another statement to
    prepare, and lists of many lengths (the relay's batches, the timer scheduler's) crowd the rest out
    of each connection's prepared-statement cache. The array form is one statement whatever the length.
    """
    condition: ColumnElement[bool] = (
        column == any_(bindparam(None, list(values), type_=ARRAY(column.type)))
        if postgresql
        else column.in_(values)
    )
    return condition


class Database:
    """An engine and a session factory; `transaction()` is the unit of work."""

    def __init__(
        self, url: str, *, echo: bool = False, pool_size: int = 10, pool_timeout: float = 30.0
    ) -> None:
        self.url = url
        parsed = make_url(url)
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        options: dict[str, Any] = {"echo": echo}
        if self.is_sqlite:
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            options["connect_args"] = {"timeout": 30}
        else:
            # No pre-ping: it costs two round trips (BEGIN; ROLLBACK) on every checkout. A connection found
            # dead fails its transaction, SQLAlchemy then discards the whole pool, and the caller's retry (the
            # consumer's backoff, the client's) gets a fresh one.
            # No overflow: a connection opened beyond the pool would be closed again on return, and under
            # a steady load above the pool's size every such one costs a connect, the driver's type
            # introspection and the statements prepared anew (seen as ~1.4 new connections a second in the
            # load benchmark). The pool is the cap, and every connection in it stays open.
            # A caller that waits `pool_timeout` for a connection gets `sqlalchemy.exc.TimeoutError`, which
            # the HTTP layer answers with 503 and `Retry-After`: the service is saturated, not broken.
            options.update(pool_size=pool_size, max_overflow=0, pool_recycle=1800, pool_timeout=pool_timeout)
        self.engine: AsyncEngine = create_async_engine(url, **options)
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
            # pysqlite's own transaction handling defers BEGIN; take it over so BEGIN IMMEDIATE
            # serialises writers instead of failing with "database is locked" on upgrade.
            event.listen(self.engine.sync_engine, "begin", _sqlite_begin)
        else:
            event.listen(self.engine.sync_engine, "handle_error", _discard_unusable)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        # Reads take no transaction on PostgreSQL: under READ COMMITTED each statement sees its own
        # snapshot inside a transaction as well, so BEGIN and COMMIT would only add two round trips.
        # Not on SQLite: handing a connection back from AUTOCOMMIT resets pysqlite's own isolation level,
        # which turns its implicit BEGINs back on under the BEGIN IMMEDIATE this class issues itself.
        self.read_sessions = (
            self.sessions
            if self.is_sqlite
            else async_sessionmaker(
                self.engine.execution_options(isolation_level="AUTOCOMMIT"), expire_on_commit=False
            )
        )

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session that commits when the block ends and rolls back if it raises."""
        async with self.sessions() as session, session.begin():
            yield session

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[AsyncSession]:
        """A session for reading only: on PostgreSQL each statement on its own, no transaction around them."""
        async with self.read_sessions() as session:
            yield session

    @asynccontextmanager
    async def driver_connection(self) -> AsyncIterator[Any]:
        """The driver's own connection (asyncpg's on PostgreSQL), from the pool, outside any transaction.

        For the few hottest writes, whose statements are fixed: each statement runs in its own implicit
        transaction, and the ORM's per-statement cost is skipped.
        """
        async with self.engine.connect() as connection:
            raw = await connection.get_raw_connection()
            try:
                yield raw.driver_connection
            except BaseException as exc:
                # SQLAlchemy never sees what the driver raises here, so it would pool this connection
                # again whatever state it is in: one the server dropped, or one cut off mid-statement,
                # would fail the next caller. Only a statement the server refused leaves it ready.
                if not refused_statement(exc):
                    await connection.invalidate()
                raise

    async def ping(self) -> None:
        async with self.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()


def _discard_unusable(context: ExceptionContext) -> None:
    # SQLAlchemy's asyncpg dialect counts only a closed connection as a disconnect; one whose protocol is
    # stuck (the server ended it while it sat in the pool, and it has not noticed the close yet) would be
    # pooled again and fail every caller until it does.
    if connection_unusable(context.original_exception):
        context.is_disconnect = True


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_begin(connection: Any) -> None:
    connection.exec_driver_sql("BEGIN IMMEDIATE")
