"""Where an embedded (SQLite) database lives, checked before anything opens it.

SQLite says only "unable to open database file" when its file or directory
cannot be written, and that after a long traceback. Checked first, a path
that cannot work is one line naming the path and the reason, and the
command stops before doing anything (`intake serve`, `intake migrate` and
every command that touches the database).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from sqlalchemy.engine import make_url

from domain.errors import ConfigError


class UnwritableLocation(ConfigError):
    """A file or directory intake must write cannot be used; the text says which, why."""


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL (None: not SQLite, or in memory)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    database = parsed.database or ""
    if parsed.query.get("uri") in ("true", "1") and database.startswith("file:"):
        database = database[len("file:"):].partition("?")[0]
    if not database or database == ":memory:" or parsed.query.get("mode") == "memory":
        return None
    return Path(database).expanduser().absolute()


def check_location(url: str, *, create: bool = True) -> None:
    """Raise UnwritableLocation unless the database file and its directory can be
    written: SQLite writes the file and, beside it, its -wal and -shm files.
    Creates the (empty) file if it is missing, as SQLite itself would; with
    `create=False` a missing file is refused instead (a command that reads the
    database, run in the wrong directory, must not leave an empty one behind)."""
    path = sqlite_path(url)
    if path is None:
        return
    if make_url(url).query.get("mode") == "ro":
        raise UnwritableLocation(f"database {path}: opened read-only (mode=ro), "
                                    "but intake writes to its database")
    directory = path.parent
    if not directory.exists():
        raise UnwritableLocation(f"database {path}: the directory {directory} does not "
                                    "exist")
    if not directory.is_dir():
        raise UnwritableLocation(f"database {path}: {directory} is not a directory")
    if path.is_dir():
        raise UnwritableLocation(f"database {path}: is a directory, not a file")
    if not create and not path.exists():
        raise UnwritableLocation(
            f"database {path}: does not exist; `intake migrate` or `intake serve` creates "
            "it (a relative path is taken from the current directory: give --config or "
            "INTAKE_DATABASE_URL to name the database you meant)")
    try:
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o644))
    except OSError as exc:
        raise UnwritableLocation(f"database {path}: cannot write it: "
                                    f"{exc.strerror or exc}") from None
    try:
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as exc:
        raise UnwritableLocation(
            f"database {path}: cannot create files in {directory} (SQLite keeps its -wal "
            f"and -shm files there): {exc.strerror or exc}") from None


def check_temporary_directory() -> None:
    """Raise UnwritableLocation unless temporary files can be made (large form uploads
    are spooled to them): on a read-only root file system, set TMPDIR."""
    try:
        with tempfile.TemporaryFile():
            pass
    except OSError as exc:
        where = tempfile.tempdir or os.environ.get("TMPDIR") or "/tmp, /var/tmp or ."
        raise UnwritableLocation(
            f"cannot create temporary files in {where}: {exc.strerror or exc} "
            "(set TMPDIR to a writable directory)") from None
