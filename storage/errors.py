"""Storage errors, and which driver failures mean "the database is unwell".

Every transaction and connection in storage is entered through
`storage.engine.transaction()` or `connection()`: a driver or pool failure
inside one (the database is down, restarting, locked past the timeout, or the
pool is exhausted) leaves storage as `StorageUnavailable`, which is temporary.
The edges never see a driver's exception types, so they need not guess.
"""

from __future__ import annotations

from sqlalchemy.exc import (
    DBAPIError,
    DisconnectionError,
    InterfaceError,
    OperationalError,
    StatementError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout

from domain.errors import Conflict, GatewayError, Unavailable


class StorageUnavailable(Unavailable):
    """The database could not take the work in time: try again later."""


class Unstorable(GatewayError):
    """The database refused this input's own values (not the database being
    unwell): sending it again would fail again, so the answer is permanent."""


class IdempotencyConflict(Conflict):
    """The same Idempotency-Key was used before with a different body."""


# What the drivers raise when the database, not the statement, is at fault:
# connection refused or reset (OSError, asyncpg's and aiosqlite's own), a
# lock or statement timeout, an exhausted pool. Read only inside a database
# call, where an OSError can come from nothing but the connection.
DRIVER_FAULTS: tuple[type[BaseException], ...] = (
    OperationalError, InterfaceError, DisconnectionError, PoolTimeout, OSError, TimeoutError)

# asyncpg reports most server-side faults as its PostgresError, which
# SQLAlchemy wraps in the generic DBAPIError (not OperationalError), so they
# are told apart by SQLSTATE (PostgreSQL manual, appendix A). These classes
# and codes say the server is unwell or busy, never that the statement or its
# values are wrong: the same work may succeed when tried again.
TEMPORARY_SQLSTATE_CLASSES = frozenset({
    "08",  # connection exception: the connection failed or was lost
    "40",  # transaction rollback: serialization failure, deadlock, completion unknown
    "53",  # insufficient resources: too many connections, disk full, out of memory
    "57",  # operator intervention: admin or crash shutdown, cannot connect now,
           # statement timeout or cancel (57014), idle-session timeout
    "58",  # system error: I/O error outside PostgreSQL
})
TEMPORARY_SQLSTATES = frozenset({
    "55P03",  # lock_not_available (lock_timeout, NOWAIT)
    "55006",  # object_in_use
    "25P03",  # idle_in_transaction_session_timeout
    "25P04",  # transaction_timeout (PostgreSQL 17)
})


def sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE a driver error carries (asyncpg through SQLAlchemy), if any."""
    found = getattr(getattr(exc, "orig", None), "sqlstate", None)
    if found is None:
        found = getattr(exc, "sqlstate", None)
    return found if isinstance(found, str) else None


def is_storage_fault(exc: BaseException) -> bool:
    """True if the database, not the work, failed: worth trying again later.

    Every such failure leaves storage as `StorageUnavailable` (temporary), so
    the edges answer 451/503 and the pipeline defers instead of dead-lettering.
    """
    if isinstance(exc, DRIVER_FAULTS):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True  # SQLAlchemy saw the connection die under the statement
    code = sqlstate(exc)
    return code is not None and (code[:2] in TEMPORARY_SQLSTATE_CLASSES
                                 or code in TEMPORARY_SQLSTATES)


def unavailable(exc: BaseException) -> StorageUnavailable:
    """The temporary error to raise for a driver fault, naming what happened."""
    return StorageUnavailable(f"{type(exc).__name__}: {exc}".splitlines()[0])


def is_data_fault(exc: BaseException) -> bool:
    """True if a statement failed on the values it carried, not on the database:
    PostgreSQL's class 22 (data exception: a NUL, bad UTF-8, a value too long
    for its column, text that is not JSON) or 23 (a constraint), or a value the
    driver could not even send (a lone surrogate, an object JSON cannot hold).
    Such a failure belongs to one row: the others of its batch can still commit."""
    if isinstance(exc, StatementError) and not isinstance(exc, DBAPIError):
        return True  # a bind value failed to convert, before anything was sent
    code = sqlstate(exc)
    if code is not None:
        return code[:2] in ("22", "23")
    # SQLite (sqlite3, aiosqlite) raises a value's encoding error as it is:
    # a lone surrogate in text, an integer past 64 bits.
    return isinstance(exc, UnicodeEncodeError | OverflowError)


def refuses_value(exc: BaseException) -> bool:
    """A data fault that will recur however often it is tried (not a clash
    with another row, which a retry may not meet)."""
    code = sqlstate(exc)
    return is_data_fault(exc) and not (code is not None and code.startswith("23"))


def described(exc: BaseException) -> str:
    """An error as a log line above DEBUG may show it, without message content or
    addresses: a database error's text can quote its SQL, its values and (in
    PostgreSQL's messages and DETAIL) the failing row, so it is named by its
    type and SQLSTATE; SQLite's own messages name columns, never values. Any
    other error shows its first line (the engine hides SQL parameters too)."""
    if isinstance(exc, DBAPIError):
        orig = exc.orig
        code = sqlstate(exc)
        text = f"{type(exc).__name__} ({type(orig).__name__}"
        text += f", SQLSTATE {code})" if code else ")"
        if type(orig).__module__ == "sqlite3":
            text += f": {str(orig).splitlines()[0] if str(orig) else ''}"
        return text[:300]
    if isinstance(exc, StatementError):
        # Raised before anything was sent (a missing bind value, a conversion):
        # the wrapped error's own words, never the statement and its parameters.
        inner = exc.orig if exc.orig is not None else exc
        first = (str(inner).splitlines() or [""])[0]
        return f"{type(exc).__name__} ({type(inner).__name__}): {first}"[:300]
    first = (str(exc).splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first}"[:300]
