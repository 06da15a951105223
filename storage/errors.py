"""Storage errors, and which driver failures mean "the database is unwell".

Every transaction and connection in storage is entered through
`storage.engine.transaction()` or `connection()`: a driver or pool failure
inside one (the database is down, restarting, locked past the timeout, or the
pool is exhausted) leaves storage as `StorageUnavailable`, which is temporary.
The edges never see a driver's exception types, so they need not guess.
"""

from __future__ import annotations

from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from domain.errors import Conflict, Unavailable


class StorageUnavailable(Unavailable):
    """The database could not take the work in time: try again later."""


class IdempotencyConflict(Conflict):
    """The same Idempotency-Key was used before with a different body."""


# What the drivers raise when the database, not the statement, is at fault:
# connection refused or reset (OSError, asyncpg's and aiosqlite's own), a
# lock or statement timeout, an exhausted pool. Read only inside a database
# call, where an OSError can come from nothing but the connection.
DRIVER_FAULTS: tuple[type[BaseException], ...] = (
    OperationalError, InterfaceError, DisconnectionError, PoolTimeout, OSError, TimeoutError)


def unavailable(exc: BaseException) -> StorageUnavailable:
    """The temporary error to raise for a driver fault, naming what happened."""
    return StorageUnavailable(f"{type(exc).__name__}: {exc}".splitlines()[0])
