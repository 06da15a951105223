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

from storage.engine import as_utc, connection, transaction, utcnow
from storage.models import api_tokens

ROLES = ("admin", "agent", "intake")
PREFIX = "itk_"


@dataclass(frozen=True, slots=True)
class TokenInfo:
    id: int
    name: str
    role: str
    queues: tuple[str, ...]


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


async def create_token(engine: AsyncEngine, *, name: str, role: str,
                       queues: list[str]) -> tuple[TokenInfo, str]:
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    secret = PREFIX + secrets.token_urlsafe(32)
    async with transaction(engine) as conn:
        token_id = (await conn.execute(insert(api_tokens).returning(api_tokens.c.id), {
            "name": name, "role": role, "queues": sorted(set(queues)),
            "token_hash": hash_secret(secret), "created_at": utcnow()})).scalar_one()
    return TokenInfo(token_id, name, role, tuple(sorted(set(queues)))), secret


async def lookup_token(engine: AsyncEngine, secret: str) -> TokenInfo | None:
    async with connection(engine) as conn:
        row = (await conn.execute(
            select(api_tokens).where(api_tokens.c.token_hash == hash_secret(secret),
                                     api_tokens.c.revoked_at.is_(None)))).first()
    if row is None:
        return None
    return TokenInfo(row.id, row.name, row.role, tuple(row.queues))


async def list_tokens(engine: AsyncEngine) -> list[dict[str, Any]]:
    async with connection(engine) as conn:
        rows = (await conn.execute(select(api_tokens).order_by(api_tokens.c.id))).all()
    return [{"id": r.id, "name": r.name, "role": r.role, "queues": r.queues,
             "created_at": as_utc(r.created_at), "revoked_at": as_utc(r.revoked_at)}
            for r in rows]


async def revoke_token(engine: AsyncEngine, token_id: int) -> bool:
    async with transaction(engine) as conn:
        result = await conn.execute(
            update(api_tokens).where(api_tokens.c.id == token_id,
                                     api_tokens.c.revoked_at.is_(None))
            .values(revoked_at=utcnow()))
    return result.rowcount == 1
