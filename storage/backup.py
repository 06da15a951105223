"""Backups of the embedded (SQLite) database, taken while it serves, and restores.

A backup is SQLite's online backup API (`sqlite3.Connection.backup`) in one
step: it reads the live database inside one read transaction, so the copy is
one consistent moment (every commit before it, none after), and in WAL mode
the gateway's writers go on meanwhile. It is written beside the destination,
synced, checked and then renamed into place, so a crash leaves no half file.

A restore checks the file first (a SQLite database that passes quick_check,
with this gateway's schema at a revision this version knows), then copies it
over the configured database under an exclusive lock: SQLite grants one only
when no other connection has the database open, so a restore never runs
under a serving gateway (and a gateway does not start during one). Claims
and leases in the copy belonged to processes that no longer exist: inbox
items being processed and outbox rows being sent go back to pending, so a
gateway started on it processes each pending item and delivers each pending
row once.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from domain.errors import GatewayError
from domain.lifecycle import DeliveryState, ItemState

HEADER = b"SQLite format 3\x00"


class BackupError(GatewayError):
    """A backup or restore that cannot be done; the text says why."""


@dataclass(frozen=True, slots=True)
class Contents:
    revision: str | None
    inbox_items: int
    requests: int
    pending_items: int
    pending_outbox: int


def _connect(path: Path, *, read_only: bool = False, timeout: float = 10.0) -> sqlite3.Connection:
    uri = f"file:{path}{'?mode=ro' if read_only else ''}"
    return sqlite3.connect(uri, uri=True, timeout=timeout, isolation_level=None)


def contents(conn: sqlite3.Connection) -> Contents:
    """What a database holds, for the command's report (and the checks)."""
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    missing = {"alembic_version", "inbox_items", "requests", "outbox"} - tables
    if missing:
        raise BackupError(f"not an intake database (no {', '.join(sorted(missing))} table)")
    revision = conn.execute("SELECT version_num FROM alembic_version").fetchone()

    def number(sql: str, *args: str) -> int:
        return int(conn.execute(sql, args).fetchone()[0])

    return Contents(
        revision=revision[0] if revision else None,
        inbox_items=number("SELECT count(*) FROM inbox_items"),
        requests=number("SELECT count(*) FROM requests"),
        pending_items=number("SELECT count(*) FROM inbox_items WHERE state IN (?, ?)",
                             ItemState.PENDING, ItemState.PROCESSING),
        pending_outbox=number("SELECT count(*) FROM outbox WHERE state IN (?, ?)",
                              DeliveryState.PENDING, DeliveryState.SENDING))


def _check(conn: sqlite3.Connection, what: str) -> None:
    result = conn.execute("PRAGMA quick_check").fetchall()
    if result != [("ok",)]:
        raise BackupError(f"{what} is damaged: {result[0][0] if result else 'no answer'}")


def _sync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def backup(source: Path, target: Path) -> Contents:
    """A consistent copy of the live database `source` at `target` (replaced
    whole, or left as it was)."""
    target = target.absolute()
    if not source.is_file():
        raise BackupError(f"database {source}: does not exist")
    if target.exists() and target.samefile(source):
        raise BackupError("the backup file cannot be the database itself")
    partial = target.with_name(f".{target.name}.partial")
    partial.unlink(missing_ok=True)
    try:
        live = _connect(source)
        try:
            copy = sqlite3.connect(partial, isolation_level=None)
            try:
                live.backup(copy)  # every page in one step: one read transaction
                # One file, whatever the source's journal: it moves as one.
                copy.execute("PRAGMA journal_mode=DELETE")
                _check(copy, f"the backup {target}")
                found = contents(copy)
            finally:
                copy.close()
        finally:
            live.close()
        _sync(partial)
        os.replace(partial, target)
        _sync(target.parent)
    except (sqlite3.Error, OSError) as exc:
        partial.unlink(missing_ok=True)
        raise BackupError(f"backup of {source} to {target} failed: {exc}") from None
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return found


def check_backup(file: Path, known_revisions: set[str]) -> Contents:
    """Refuse anything but an intake database this version can migrate."""
    try:
        with file.open("rb") as handle:
            header = handle.read(len(HEADER))
    except OSError as exc:
        raise BackupError(f"cannot read {file}: {exc.strerror or exc}") from None
    if header != HEADER:
        raise BackupError(f"{file} is not a SQLite database")
    try:
        conn = _connect(file, read_only=True)
        try:
            _check(conn, str(file))
            found = contents(conn)
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise BackupError(f"{file} cannot be read as a database: {exc}") from None
    if found.revision not in known_revisions:
        raise BackupError(f"{file} is at schema revision {found.revision!r}, which this "
                          "version does not know (a backup of a newer version?)")
    return found


def restore(file: Path, target: Path, known_revisions: set[str]) -> Contents:
    """Copy the backup `file` over the database `target` and hand its claims
    back; BackupError while anything has `target` open."""
    file = file.absolute()
    if target.exists() and file.samefile(target):
        raise BackupError("the backup file is the database itself")
    check_backup(file, known_revisions)
    try:
        dest = _connect(target, timeout=0.5)
    except sqlite3.Error as exc:
        raise BackupError(f"database {target}: cannot open it: {exc}") from None
    try:
        try:
            # Held until closed: no gateway can open the database meanwhile.
            dest.execute("PRAGMA locking_mode=EXCLUSIVE")
            dest.execute("BEGIN EXCLUSIVE")
            dest.execute("SELECT count(*) FROM sqlite_master").fetchone()
            dest.execute("COMMIT")
        except sqlite3.OperationalError:
            raise BackupError(f"database {target} is in use (a running intake serve?): "
                              "stop it before restoring") from None
        try:
            source = _connect(file, read_only=True)
            try:
                source.backup(dest)
            finally:
                source.close()
            dest.execute("BEGIN IMMEDIATE")
            # The claims of processes that are gone: pending again, taken once.
            dest.execute("UPDATE inbox_items SET state = ?, lease_until = NULL, "
                         "claim_token = NULL WHERE state = ?",
                         (ItemState.PENDING, ItemState.PROCESSING))
            dest.execute("UPDATE outbox SET state = ?, lease_until = NULL WHERE state = ?",
                         (DeliveryState.PENDING, DeliveryState.SENDING))
            dest.execute("COMMIT")
            _check(dest, f"the restored database {target}")
            return contents(dest)
        except sqlite3.Error as exc:
            raise BackupError(f"restore into {target} failed: {exc}") from None
    finally:
        dest.close()


def known_revisions() -> set[str]:
    """Every schema revision this version's migrations know (None: an empty one)."""
    from alembic.script import ScriptDirectory

    from storage.migrate import alembic_config

    return {script.revision for script in
            ScriptDirectory.from_config(alembic_config()).walk_revisions()}
