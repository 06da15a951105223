"""Agents as people (name, email, the queues they work) and the canned responses
they insert in replies. A token may belong to an agent (storage/tokens.py):
its scope is then the agent's queues, and it stops working when the agent is
made inactive.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from domain.errors import Conflict
from storage.audit import Audit
from storage.engine import as_utc, connection, insert_new, transaction, utcnow
from storage.models import agents, canned_responses

AGENT_FIELDS = ("name", "email", "queues", "active", "quiet_hours", "digest_minutes")
CANNED_FIELDS = ("queue", "language", "name", "body")


def _agent(row: Any) -> dict[str, Any]:
    return {"id": row.id, "name": row.name, "email": row.email, "queues": list(row.queues),
            "active": bool(row.active), "quiet_hours": row.quiet_hours,
            "digest_minutes": row.digest_minutes, "created_at": as_utc(row.created_at),
            "updated_at": as_utc(row.updated_at)}


async def create_agent(engine: AsyncEngine, *, name: str, email: str, queues: list[str],
                       active: bool = True, quiet_hours: str | None = None,
                       digest_minutes: int | None = None,
                       audit: Audit | None = None) -> dict[str, Any] | None:
    """The new agent; None if another has this email."""
    now = utcnow()
    async with transaction(engine) as conn:
        row = (await conn.execute(
            insert_new(conn, agents).values(
                name=name, email=email, queues=sorted(set(queues)), active=active,
                quiet_hours=quiet_hours, digest_minutes=digest_minutes,
                created_at=now, updated_at=now).returning(*agents.c))).first()
        if audit is not None and row is not None:
            await audit.action(conn, "agent.create", f"agent:{row.id}",
                               {"queues": list(row.queues), "active": bool(row.active)})
    return None if row is None else _agent(row)


async def get_agent(engine: AsyncEngine, agent_id: int) -> dict[str, Any] | None:
    async with connection(engine) as conn:
        row = (await conn.execute(select(agents).where(agents.c.id == agent_id))).first()
    return None if row is None else _agent(row)


async def list_agents(engine: AsyncEngine) -> list[dict[str, Any]]:
    async with connection(engine) as conn:
        rows = (await conn.execute(select(agents).order_by(agents.c.id))).all()
    return [_agent(r) for r in rows]


async def update_agent(engine: AsyncEngine, agent_id: int, changes: dict[str, Any], *,
                       audit: Audit | None = None) -> dict[str, Any] | None:
    """The agent after the change; None if there is none. Conflict: email taken."""
    values = {k: v for k, v in changes.items() if k in AGENT_FIELDS}
    if "queues" in values:
        values["queues"] = sorted(set(values["queues"]))
    try:
        async with transaction(engine) as conn:
            row = (await conn.execute(
                update(agents).where(agents.c.id == agent_id)
                .values(values | {"updated_at": utcnow()}).returning(*agents.c))).first()
            if audit is not None and row is not None:
                # Which fields changed; the values only of scope and activity.
                await audit.action(conn, "agent.update", f"agent:{agent_id}", {
                    "fields": sorted(values)} | {k: values[k] for k in ("queues", "active")
                                                  if k in values})
    except IntegrityError:
        raise Conflict("another agent has this email") from None
    return None if row is None else _agent(row)


async def agent_names(engine: AsyncEngine, ids: set[int]) -> dict[int, str]:
    """Names by id, for showing who acted (`agent:<id>`)."""
    if not ids:
        return {}
    async with connection(engine) as conn:
        rows = (await conn.execute(select(agents.c.id, agents.c.name)
                                   .where(agents.c.id.in_(sorted(ids))))).all()
    return {r.id: r.name for r in rows}


# --- canned responses ------------------------------------------------------------

def _canned(row: Any) -> dict[str, Any]:
    return {"id": row.id, "queue": row.queue, "language": row.language, "name": row.name,
            "body": row.body, "created_at": as_utc(row.created_at),
            "updated_at": as_utc(row.updated_at)}


async def create_canned(engine: AsyncEngine, *, queue: str, language: str, name: str,
                        body: str, audit: Audit | None = None) -> dict[str, Any] | None:
    """The new canned response; None if the queue has one by this name in this language."""
    now = utcnow()
    async with transaction(engine) as conn:
        row = (await conn.execute(
            insert_new(conn, canned_responses).values(
                queue=queue, language=language, name=name, body=body, created_at=now,
                updated_at=now).returning(*canned_responses.c))).first()
        if audit is not None and row is not None:
            await _audit_canned(conn, audit, row, created=True)
    return None if row is None else _canned(row)


async def list_canned(engine: AsyncEngine, *, queues: list[str] | None = None,
                      language: str | None = None) -> list[dict[str, Any]]:
    query = select(canned_responses).order_by(canned_responses.c.queue,
                                              canned_responses.c.language,
                                              canned_responses.c.name)
    if queues is not None:
        query = query.where(canned_responses.c.queue.in_(queues))
    if language is not None:
        query = query.where(canned_responses.c.language == language)
    async with connection(engine) as conn:
        rows = (await conn.execute(query)).all()
    return [_canned(r) for r in rows]


async def get_canned(engine: AsyncEngine, canned_id: int) -> dict[str, Any] | None:
    async with connection(engine) as conn:
        row = (await conn.execute(select(canned_responses)
                                  .where(canned_responses.c.id == canned_id))).first()
    return None if row is None else _canned(row)


async def update_canned(engine: AsyncEngine, canned_id: int, changes: dict[str, Any], *,
                        audit: Audit | None = None) -> dict[str, Any] | None:
    """After the change; None if there is none. Conflict: the name is taken."""
    values = {k: v for k, v in changes.items() if k in CANNED_FIELDS}
    try:
        async with transaction(engine) as conn:
            row = (await conn.execute(
                update(canned_responses).where(canned_responses.c.id == canned_id)
                .values(values | {"updated_at": utcnow()})
                .returning(*canned_responses.c))).first()
            if audit is not None and row is not None:
                await _audit_canned(conn, audit, row, created=False)
    except IntegrityError:
        raise Conflict("this queue has a canned response by this name in this "
                       "language") from None
    return None if row is None else _canned(row)


async def delete_canned(engine: AsyncEngine, canned_id: int, *,
                        audit: Audit | None = None) -> bool:
    async with transaction(engine) as conn:
        result = await conn.execute(delete(canned_responses)
                                    .where(canned_responses.c.id == canned_id))
        if audit is not None and result.rowcount == 1:
            await audit.action(conn, "canned.delete", f"canned:{canned_id}")
    return result.rowcount == 1


async def _audit_canned(conn: AsyncConnection, audit: Audit, row: Any, *,
                        created: bool) -> None:
    await audit.action(conn, "canned.save", f"canned:{row.id}", {
        "queue": row.queue, "language": row.language, "name": row.name, "created": created})
