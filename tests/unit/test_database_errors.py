"""Which database errors mean "retry shortly" (503) and which leave a pooled connection fit for reuse."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from sqlalchemy.exc import DBAPIError

from shared.db_errors import connection_unusable, database_unreachable, refused_statement


def wrapped(driver_error: BaseException) -> DBAPIError:
    """As SQLAlchemy raises a driver's error: a DBAPIError whose cause is the driver's own."""
    try:
        try:
            raise driver_error
        except BaseException as exc:
            raise DBAPIError("SELECT 1", None, exc) from exc
    except DBAPIError as outer:
        return outer


STUCK = asyncpg.exceptions.InternalClientError(
    "cannot switch to state 12; another operation (2) is in progress"
)
CLOSED = asyncpg.InterfaceError("connection is closed")
SHUTDOWN = asyncpg.exceptions.AdminShutdownError("terminating connection due to administrator command")
BAD_VALUE = asyncpg.exceptions.DataError("invalid input for query argument $1: 'x' (an integer is required)")
DUPLICATE = asyncpg.UniqueViolationError("duplicate key value violates unique constraint")


@pytest.mark.parametrize(
    "error", [STUCK, CLOSED, SHUTDOWN, ConnectionResetError(), wrapped(STUCK), wrapped(CLOSED)]
)
def test_a_lost_or_stuck_connection_is_unreachable_not_a_refused_statement(
    error: BaseException,
) -> None:
    assert database_unreachable(error)
    assert not refused_statement(error)


@pytest.mark.parametrize("error", [BAD_VALUE, DUPLICATE, wrapped(BAD_VALUE), wrapped(DUPLICATE)])
def test_a_statement_the_database_or_driver_refused_is_not_an_outage(error: BaseException) -> None:
    # A value the driver cannot encode is the request's fault, not the database's: no "retry shortly".
    assert not database_unreachable(error)
    assert not connection_unusable(error)


def test_only_the_driver_saying_so_makes_a_connection_unusable() -> None:
    assert connection_unusable(STUCK) and connection_unusable(wrapped(CLOSED))
    assert not connection_unusable(SHUTDOWN)  # the server's message; SQLAlchemy sees the close itself


def test_a_refused_statement_leaves_the_connection_ready_and_a_cancelled_one_does_not() -> None:
    assert refused_statement(DUPLICATE) and refused_statement(wrapped(DUPLICATE))
    assert not refused_statement(asyncio.CancelledError())
    assert not refused_statement(ValueError("between two statements"))
