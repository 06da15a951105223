"""This install's reference key: made once, kept in the database.

`references(engine)` gives the `References` of the database behind `engine`
(cached for the engine's life). The key is made by migration 0010; should
the row be missing (a database emptied by hand), the first caller makes one,
keyed from the next inbox id, so references already handed out resolve
as before.
"""

from __future__ import annotations

import secrets
import weakref
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from storage.engine import connection, transaction, utcnow
from storage.models import inbox_items, install_keys
from storage.reference import References

REFERENCES = "references"
_cache: weakref.WeakKeyDictionary[Any, References] = weakref.WeakKeyDictionary()


def new_key_row(next_item_id: int) -> dict[str, Any]:
    """The row of a new reference key (32 random bytes) for ids from `next_item_id`."""
    return {"name": REFERENCES, "secret": secrets.token_hex(32),
            "keyed_from": max(1, next_item_id), "created_at": utcnow()}


async def _read(conn: AsyncConnection) -> References | None:
    row = (await conn.execute(select(install_keys.c.secret, install_keys.c.keyed_from)
                              .where(install_keys.c.name == REFERENCES))).first()
    return None if row is None else References(bytes.fromhex(row.secret), row.keyed_from)


async def references(engine: AsyncEngine) -> References:
    """The references of this install (its key read once per engine)."""
    found = _cache.get(engine.sync_engine)
    if found is not None:
        return found
    async with connection(engine) as conn:  # a read: nothing to commit
        found = await _read(conn)
    if found is None:
        try:
            async with transaction(engine) as conn:
                last = (await conn.execute(select(func.max(inbox_items.c.id)))).scalar()
                await conn.execute(insert(install_keys), new_key_row((last or 0) + 1))
        except IntegrityError:
            pass  # another process made it first: read theirs
        async with connection(engine) as conn:
            found = await _read(conn)
        assert found is not None
    _cache[engine.sync_engine] = found
    return found
