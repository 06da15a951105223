"""Storage errors; `temporary` tells the edges whether to answer "try later"."""

from __future__ import annotations


class StorageError(Exception):
    temporary: bool = False


class StorageUnavailable(StorageError):
    """The database could not take the write in time: try again later."""

    temporary = True


class IdempotencyConflict(StorageError):
    """The same Idempotency-Key was used before with a different body."""
