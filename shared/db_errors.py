"""Which database errors mean "the connection is gone" and which mean "the server refused a statement".

The HTTP layer answers the first kind with 503 and `Retry-After` (`shared.errors`); the pool discards a
connection the driver can no longer use (`shared.db`).
"""

from __future__ import annotations

from collections.abc import Iterator

from asyncpg.exceptions import (
    CannotConnectNowError,
    InterfaceError,
    InternalClientError,
    OperatorInterventionError,
    PostgresConnectionError,
    PostgresError,
    TooManyConnectionsError,
)
from sqlalchemy.exc import DBAPIError

# Errors that mean the database could not be reached or dropped the connection (a restart, a network cut,
# no free connection slots), as opposed to a statement it rejected.
_UNREACHABLE = (
    OSError,
    ConnectionError,
    TimeoutError,
    PostgresConnectionError,
    TooManyConnectionsError,
    CannotConnectNowError,
    OperatorInterventionError,
)
# The driver's own verdict that its connection cannot run a statement: closed, or its protocol stuck
# mid-way through something else ("another operation is in progress", seen on a pooled connection the
# server ended while it sat idle). No statement was sent. The driver's DataError and configuration errors
# are InterfaceErrors too, but about a value (and ValueErrors), not about the connection.
_DRIVER_CONNECTION = (InterfaceError, InternalClientError)


def _connection_lost(exc: BaseException) -> bool:
    return isinstance(exc, _DRIVER_CONNECTION) and not isinstance(exc, ValueError)


# Every exception type that, raised on its own, may mean a lost connection (what the app's error
# handlers are registered for; `database_unreachable` then decides).
CONNECTION_ERRORS = (*_UNREACHABLE, *_DRIVER_CONNECTION)


def _causes(exc: BaseException) -> Iterator[BaseException]:
    seen: BaseException | None = exc
    for _ in range(10):  # a chain of causes is short; never follow a cycle forever
        if seen is None:
            return
        yield seen
        # SQLAlchemy wraps the driver's error (`orig`), which wraps the socket's or the server's.
        seen = getattr(seen, "orig", None) or seen.__cause__ or seen.__context__


def database_unreachable(exc: BaseException) -> bool:
    """True when a database error means "cannot talk to the server now" rather than a bad statement."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return any(isinstance(cause, _UNREACHABLE) or _connection_lost(cause) for cause in _causes(exc))


def connection_unusable(exc: BaseException) -> bool:
    """True when the driver says its connection cannot run another statement (see `_DRIVER_CONNECTION`)."""
    return any(_connection_lost(cause) for cause in _causes(exc))


def refused_statement(exc: BaseException) -> bool:
    """True when the server answered a statement with an error (a constraint, say) and the connection is
    ready for the next one; False for a dropped connection, a cancelled statement or anything else."""
    return any(isinstance(c, PostgresError) for c in _causes(exc)) and not database_unreachable(exc)
