"""Engine creation with the settings each backend needs for durable intake."""

from __future__ import annotations

import asyncio
import json
import weakref
from collections.abc import AsyncIterator, Collection, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import (
    ColumnElement,
    String,
    Table,
    TextClause,
    TypeDecorator,
    any_,
    bindparam,
    event,
    insert,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import Insert as PgInsert
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import Insert as SqliteInsert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from storage.errors import StorageUnavailable, is_storage_fault, unavailable


def is_sqlite(engine: AsyncEngine) -> bool:
    return engine.dialect.name == "sqlite"


def _sqlite_pragmas(dbapi_connection: Any, busy_ms: int) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers run beside the writer; synchronous=FULL makes a commit
    # survive power loss, which is what "committed before 250" promises.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    # Wait for a lock a little less than the statement timeout, so a locked
    # database surfaces as our timeout (451/503) and not as a hung thread.
    cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


# Prepared statements kept per SQLite connection (sqlite3's default is 128).
# SQLAlchemy writes a batch of n rows as one INSERT of n VALUES groups, and an
# IN list of n ids as n parameters, so every batch size is a statement of its
# own, and a 256-row INSERT costs about 220 KiB prepared: at 128 per connection
# the caches kept growing as new batch sizes came (RSS up about 0.2-0.5 MiB per
# 1,000 messages, see benchmarks/sqlite_rss.py). 16 bound them (to about 3.5 MiB
# per connection at worst) and re-preparing costs far less than a commit.
SQLITE_STATEMENT_CACHE = 16


def json_text(value: Any) -> str:
    """A JSON column's value as text, encoded once, by orjson (in C: the stdlib
    encoder was a measurable share of storing a batch). What orjson refuses (an
    integer beyond 64 bits, a lone surrogate, a non-string key) is left to the
    stdlib encoder, so what was storable before still is."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # orjson.JSONEncodeError is a TypeError
        return json.dumps(value)


def create_engine(url: str, *, pool_size: int = 10, timeout: float = 10.0) -> AsyncEngine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = create_async_engine(url, pool_size=pool_size, max_overflow=0,
                                     pool_timeout=timeout, hide_parameters=True,
                                     json_serializer=json_text,
                                     connect_args={"cached_statements": SQLITE_STATEMENT_CACHE})
        busy_ms = int(timeout * 800)
        event.listen(engine.sync_engine, "connect",
                     lambda dbapi, _record: _sqlite_pragmas(dbapi, busy_ms))
        engine.sync_engine.intake_timeout = timeout  # type: ignore[attr-defined]  # write_gate
        return engine
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=0,
        pool_timeout=timeout,
        # An error's text must not carry the values (addresses, subjects) into logs.
        hide_parameters=True,
        # Dead connections (database restarted) are replaced, not handed out.
        pool_pre_ping=True,
        json_serializer=json_text,
        connect_args={"timeout": timeout, "command_timeout": timeout},
    )


def among(conn: AsyncConnection, column: ColumnElement[Any],
          values: Collection[Any]) -> ColumnElement[bool]:
    """`column IN (values)`; on PostgreSQL `column = ANY(:values)`, one array.

    SQLAlchemy expands an IN list into a parameter per value at every
    execution, rendered and processed in Python: a SELECT over a batch's 125
    ids took 0.63 to 0.70 ms of the client's CPU, against 0.20 ms with one
    array (0.15 ms for `SELECT 1`).
    Each list length is also a statement of its own for the server to parse
    and plan. PostgreSQL reads both forms as the same scalar-array comparison,
    with the same index plans, and an array has no limit on its length.
    SQLite keeps the IN list (callers bound it: storage/participants.py).
    """
    if conn.dialect.name == "postgresql":
        return column == any_(bindparam(None, list(values), type_=_array_of(column)))
    return column.in_(list(values))


def among_bound(column: ColumnElement[Any], name: str) -> dict[str, ColumnElement[bool]]:
    """`among` for a statement built once, by backend name: `column` among the
    values bound later as `name`."""
    return {"postgresql": column == any_(bindparam(name, type_=_array_of(column))),
            "sqlite": column.in_(bindparam(name, expanding=True))}


def _array_of(column: ColumnElement[Any]) -> ARRAY[Any]:
    # Text as VARCHAR[] without the column's length, as an IN list's parameters
    # are: a cast to VARCHAR(n) would cut a longer value, which could then
    # match a stored one that it is not.
    return ARRAY(String() if isinstance(column.type, String) else column.type)


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime | None) -> datetime | None:
    """SQLite hands timestamps back naive; they were written in UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


# Built once per dialect and table: a statement object memoizes its cache key,
# so executing the same one again skips building and hashing that key (and the
# compiled form comes from the engine's cache).
_INSERT_NEW: dict[tuple[str, Table], PgInsert | SqliteInsert] = {}


def insert_new(conn: AsyncConnection, table: Table) -> PgInsert | SqliteInsert:
    """INSERT that skips rows whose key is taken (ON CONFLICT DO NOTHING), in
    the connection's dialect: both backends spell it alike, SQLAlchemy does not.
    Statements are immutable (`.values()` returns a copy), so one is shared."""
    key = (conn.dialect.name, table)
    statement = _INSERT_NEW.get(key)
    if statement is None:
        dialect_insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
        statement = _INSERT_NEW[key] = dialect_insert(table).on_conflict_do_nothing()
    return statement


_INSERT_IDS: dict[tuple[str, Table], Any] = {}
# By table and columns: the statement, and the JSON columns (sent as their text).
_ARRAY_INSERTS: dict[tuple[Table, tuple[str, ...]], tuple[TextClause, frozenset[str]] | None] = {}
# How PostgreSQL is sent a column's values as one array, by the column's type as
# PostgreSQL names it (JSON goes as its text, read back as JSON in the SELECT).
_ARRAY_TYPES = {"BIGINT": "bigint", "INTEGER": "integer", "SMALLINT": "smallint",
                "BOOLEAN": "boolean", "TEXT": "text", "BYTEA": "bytea",
                "TIMESTAMP WITH TIME ZONE": "timestamptz", "JSONB": "text", "JSON": "text"}
_JSON = ("JSON", "JSONB")


async def insert_ids(conn: AsyncConnection, table: Table,
                     rows: Sequence[dict[str, Any]]) -> list[int]:
    """Insert `rows` (in few statements) and return their new ids in the order
    of `rows`.

    On PostgreSQL, as one array per column (`_array_insert`). Elsewhere
    SQLAlchemy batches the rows; on SQLite it keeps RETURNING in the order of
    the rows only by inserting them one statement each (SQLite ties no
    generated rowid to its VALUES row): a 250-row batch was 250 statements. It
    need not: in a transaction SQLite has one writer, rows are inserted in the
    order of their VALUES, and an INTEGER PRIMARY KEY gives each new row a
    larger id than the rows before it. So the ids returned, sorted, are the
    rows' own."""
    if not rows:
        return []
    sqlite = conn.dialect.name == "sqlite"
    columns = tuple(rows[0])
    arrays = None if sqlite else _array_insert(conn, table, columns)
    values = None
    if arrays is not None and all(tuple(row) == columns for row in rows):
        statement, json = arrays
        try:
            values = {f"p{i}": [json_text(row[name]) for row in rows] if name in json
                      else [row[name] for row in rows] for i, name in enumerate(columns)}
        except (TypeError, ValueError):
            pass  # a value JSON cannot hold: refused by SQLAlchemy's path, as a bad value
    if values is not None:
        ids = sorted(row[0] for row in await conn.execute(statement, values))
    else:
        key = (conn.dialect.name, table)
        statement = _INSERT_IDS.get(key)
        if statement is None:
            statement = _INSERT_IDS[key] = insert(table).returning(
                table.c.id, sort_by_parameter_order=not sqlite)
        found = [row[0] for row in await conn.execute(statement, list(rows))]
        ids = sorted(found) if sqlite else found
    if len(ids) != len(rows):
        raise RuntimeError(f"{len(rows)} rows inserted into {table.name}, {len(ids)} ids back")
    return ids


def _array_insert(conn: AsyncConnection, table: Table, columns: tuple[str, ...]
                  ) -> tuple[TextClause, frozenset[str]] | None:
    """`INSERT ... SELECT ... FROM unnest(...)` of `columns`, one array each, or
    None where a column is not sent as a plain value (a type that converts its
    values in Python) or a column left out has a default made in Python.

    One statement text whatever the number of rows, so PostgreSQL prepares it
    once per connection; SQLAlchemy's multi-row VALUES is a statement of its own
    for each batch size, rendered and bound value by value at every execution
    and prepared again by the server. The rows are inserted in the order given
    (ORDER BY their position in it), so their ids rise in that order: what
    SQLAlchemy's own ordered RETURNING assumes of PostgreSQL."""
    key = (table, columns)
    if key in _ARRAY_INSERTS:
        return _ARRAY_INSERTS[key]
    found: tuple[TextClause, frozenset[str]] | None = None
    quote = conn.dialect.identifier_preparer.quote
    kinds, picked, json = [], [], set()
    for name in columns:
        column_type = table.c[name].type
        compiled = column_type.compile(dialect=conn.dialect)
        kind = "text" if compiled.startswith("VARCHAR") else _ARRAY_TYPES.get(compiled)
        if (kind is None or isinstance(column_type, TypeDecorator)
                or getattr(column_type, "none_as_null", False)):  # None as SQL NULL
            break
        kinds.append(kind)
        picked.append(f"CAST({quote(name)} AS {compiled})" if compiled in _JSON
                      else quote(name))
        if compiled in _JSON:
            json.add(name)
    else:
        if not any(c.default is not None and c.name not in columns for c in table.columns):
            names = ", ".join(quote(name) for name in columns)
            arrays = ", ".join(f"CAST(:p{i} AS {kind}[])" for i, kind in enumerate(kinds))
            found = (text(f"INSERT INTO {quote(table.name)} ({names}) "
                          f"SELECT {', '.join(picked)} FROM unnest({arrays}) "
                          f"WITH ORDINALITY AS given({names}, given_position) "
                          f"ORDER BY given_position RETURNING {quote('id')}"), frozenset(json))
    _ARRAY_INSERTS[key] = found
    return found


class _WriteGate:
    """One SQLite writer at a time in this process, first come first served.

    SQLite has one write lock per file. A connection that finds it taken waits
    in SQLite's busy handler, which sleeps 1 ms rising to 100 ms between tries
    however soon the lock is free: the intake's group commit and the pipeline,
    each on its own connection, lost most of their time asleep. Queued here,
    the next writer starts the moment the last one commits. A task that holds
    the gate passes it again (a nested transaction then meets SQLite's own lock,
    as before), and a wait past the engine's timeout is a storage fault.
    """

    def __init__(self, timeout: float) -> None:
        self._lock = asyncio.Lock()
        self._owner: asyncio.Task[Any] | None = None
        self._timeout = timeout

    @asynccontextmanager
    async def held(self, wait: float | None = None) -> AsyncIterator[None]:
        task = asyncio.current_task()
        if task is not None and self._owner is task:
            yield
            return
        try:
            async with asyncio.timeout(self._timeout if wait is None else wait):
                await self._lock.acquire()
        except TimeoutError:
            raise StorageUnavailable("timed out waiting for the SQLite write turn") from None
        self._owner = task
        try:
            yield
        finally:
            self._owner = None
            self._lock.release()


# Per SQLite engine and event loop (an asyncio.Lock belongs to one loop).
_GATES: weakref.WeakKeyDictionary[Any, dict[asyncio.AbstractEventLoop, _WriteGate]] = (
    weakref.WeakKeyDictionary())
_GATE_TIMEOUT = 10.0


@asynccontextmanager
async def write_gate(engine: AsyncEngine, wait: float | None = None) -> AsyncIterator[None]:
    """Hold this process's SQLite write turn for the block; nothing on PostgreSQL.
    StorageUnavailable after `wait` seconds (default: the engine's timeout)."""
    if not is_sqlite(engine):
        yield
        return
    loop = asyncio.get_running_loop()
    gates = _GATES.setdefault(engine.sync_engine, {})
    gate = gates.get(loop)
    if gate is None:
        for stale in [other for other in gates if other.is_closed()]:
            del gates[stale]
        timeout = getattr(engine.sync_engine, "intake_timeout", _GATE_TIMEOUT)
        gate = gates[loop] = _WriteGate(timeout)
    async with gate.held(wait):
        yield


@asynccontextmanager
async def transaction(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """`engine.begin()` whose storage faults (storage/errors.py `is_storage_fault`:
    the pool, the connection, the server's state, locks and timeouts) leave as
    StorageUnavailable; a fault of the statement or its values leaves as it is.
    On SQLite it waits for this process's write turn first (`write_gate`)."""
    try:
        async with write_gate(engine), engine.begin() as conn:
            yield conn
    except Exception as exc:
        if is_storage_fault(exc):
            raise unavailable(exc) from exc
        raise


@asynccontextmanager
async def connection(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """`engine.connect()` (reads, no transaction kept) with the same translation."""
    try:
        async with engine.connect() as conn:
            yield conn
    except Exception as exc:
        if is_storage_fault(exc):
            raise unavailable(exc) from exc
        raise
