"""API tokens: random secrets shown once; only their sha256 is stored.

The secrets carry 256 bits of randomness, so a fast hash is enough: there is
nothing to brute-force that a slow password hash would protect.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from storage.audit import Audit
from storage.engine import as_utc, connection, transaction, utcnow
from storage.models import agents, api_tokens

ROLES = ("admin", "agent", "intake")
PREFIX = "itk_"


@dataclass(frozen=True, slots=True)
class TokenInfo:
    id: int
    name: str
    role: str
    queues: tuple[str, ...]
    # May move a request to any queue, also one it cannot see (hand-off).
    may_hand_off: bool = True
    # The person the token belongs to: actions are theirs (`agent:<id>`).
    agent_id: int | None = None
    agent_name: str | None = None


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


async def create_token(engine: AsyncEngine, *, name: str, role: str,
                       queues: list[str], may_hand_off: bool = True,
                       agent_id: int | None = None,
                       audit: Audit | None = None) -> tuple[TokenInfo, str]:
    """A new token; with `agent_id`, an agent's (its scope is the agent's queues).
    With `audit`, the creation is audited in the same transaction (never the secret)."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    secret = PREFIX + secrets.token_urlsafe(32)
    async with transaction(engine) as conn:
        token_id = (await conn.execute(insert(api_tokens).returning(api_tokens.c.id), {
            "name": name, "role": role, "queues": sorted(set(queues)),
            "token_hash": hash_secret(secret), "created_at": utcnow(),
            "agent_id": agent_id, "may_hand_off": may_hand_off})).scalar_one()
        if audit is not None:
            await audit.action(conn, "token.create", f"token:{token_id}", {
                "name": name, "role": role, "queues": sorted(set(queues)),
                "agent_id": agent_id, "may_hand_off": may_hand_off})
    return TokenInfo(token_id, name, role, tuple(sorted(set(queues))), may_hand_off,
                     agent_id), secret


_LOOKUP = (select(api_tokens, agents.c.name.label("agent_name"),
                  agents.c.queues.label("agent_queues"), agents.c.active.label("agent_active"))
           .outerjoin(agents, agents.c.id == api_tokens.c.agent_id))


async def lookup_token(engine: AsyncEngine, secret: str) -> TokenInfo | None:
    """The token for a secret; None if unknown, revoked, or its agent is inactive."""
    async with connection(engine) as conn:
        row = (await conn.execute(
            _LOOKUP.where(api_tokens.c.token_hash == hash_secret(secret),
                          api_tokens.c.revoked_at.is_(None)))).first()
    return _info(row)


async def lookup_token_id(engine: AsyncEngine, token_id: int) -> TokenInfo | None:
    """The token with this id, as `lookup_token` gives it (a session that names
    a token re-checks it each time: revoked, or its agent inactive, is None)."""
    async with connection(engine) as conn:
        row = (await conn.execute(
            _LOOKUP.where(api_tokens.c.id == token_id,
                          api_tokens.c.revoked_at.is_(None)))).first()
    return _info(row)


def _info(row: Any) -> TokenInfo | None:
    if row is None or (row.agent_id is not None and not row.agent_active):
        return None
    queues = row.agent_queues if row.agent_id is not None else row.queues
    return TokenInfo(row.id, row.name, row.role, tuple(queues), bool(row.may_hand_off),
                     row.agent_id, row.agent_name)


async def list_tokens(engine: AsyncEngine) -> list[dict[str, Any]]:
    async with connection(engine) as conn:
        rows = (await conn.execute(select(api_tokens).order_by(api_tokens.c.id))).all()
    return [{"id": r.id, "name": r.name, "role": r.role, "queues": r.queues,
             "agent_id": r.agent_id, "may_hand_off": r.may_hand_off,
             "created_at": as_utc(r.created_at), "revoked_at": as_utc(r.revoked_at)}
            for r in rows]


async def revoke_token(engine: AsyncEngine, token_id: int, *,
                       audit: Audit | None = None) -> bool:
    async with transaction(engine) as conn:
        result = await conn.execute(
            update(api_tokens).where(api_tokens.c.id == token_id,
                                     api_tokens.c.revoked_at.is_(None))
            .values(revoked_at=utcnow()))
        if audit is not None and result.rowcount == 1:
            await audit.action(conn, "token.revoke", f"token:{token_id}")
    return result.rowcount == 1
