"""Storage errors; `temporary` tells the edges whether to answer "try later"."""

from __future__ import annotations


class StorageError(Exception):
    temporary: bool = False


class StorageUnavailable(StorageError):
    """The database could not take the write in time: try again later."""

    temporary = True


class IdempotencyConflict(StorageError):
    """The same Idempotency-Key was used before with a different body."""


def _faults() -> tuple[type[BaseException], ...]:
    from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError
    from sqlalchemy.exc import TimeoutError as PoolTimeout

    return (OperationalError, InterfaceError, DisconnectionError, PoolTimeout, OSError,
            TimeoutError, StorageUnavailable)


# Exceptions that say the database is unwell rather than the input bad: the
# edges answer 451/503 for them, the pipeline retries the item later.
STORAGE_FAULTS = _faults()
