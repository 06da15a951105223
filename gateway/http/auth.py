"""Bearer tokens and what their roles and queue scopes allow.

Each check returns the caller's token or raises the problem to answer (401
without a valid token, 403 for a role that may not do this).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Collection

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.http.problems import Problem
from storage.tokens import TokenInfo, hash_secret, lookup_token

ADMINS = ("admin",)
STAFF = ("admin", "agent")  # who may read and work requests


class TokenCache:
    """Token lookups cached briefly: a revoked token stops working within `ttl`.

    Bounded: past `MAX_CACHED` the least recently used lookup goes, so a flood of
    made-up tokens costs its own lookups without emptying the cache for others.
    Requests that miss the same token at once share one lookup: when a busy
    client's entry runs out, its next fifty requests in flight are one query,
    not fifty.
    """

    MAX_CACHED = 10_000

    def __init__(self, engine: AsyncEngine, ttl: float = 5.0) -> None:
        self._engine = engine
        self._ttl = ttl
        self._entries: OrderedDict[str, tuple[float, TokenInfo | None]] = OrderedDict()
        self._looking: dict[str, asyncio.Task[TokenInfo | None]] = {}
        # Bumped by `forget`: a lookup begun before it is not cached after it.
        self._generation = 0

    def forget(self) -> None:
        """Drop cached lookups (after a revoke in this process)."""
        self._entries.clear()
        self._looking.clear()
        self._generation += 1

    async def get(self, secret: str) -> TokenInfo | None:
        key = hash_secret(secret)
        hit = self._entries.get(key)
        if hit is not None and hit[0] > time.monotonic():
            self._entries.move_to_end(key)
            return hit[1]
        looking = self._looking.get(key)
        if looking is None:
            looking = self._looking[key] = asyncio.create_task(
                self._lookup(key, secret, self._generation))
            # Its failure reaches every caller still waiting; none may be left.
            looking.add_done_callback(lambda task: task.cancelled() or task.exception())
        # Shielded: one caller that gives up does not cancel the others' lookup.
        return await asyncio.shield(looking)

    async def _lookup(self, key: str, secret: str, generation: int) -> TokenInfo | None:
        try:
            info = await lookup_token(self._engine, secret)
        finally:
            if generation == self._generation:
                self._looking.pop(key, None)
        if generation == self._generation:
            self._entries[key] = (time.monotonic() + self._ttl, info)
            self._entries.move_to_end(key)
            while len(self._entries) > self.MAX_CACHED:
                self._entries.popitem(last=False)
        return info


TOKENS = web.AppKey("tokens", TokenCache)


async def token_of(request: web.Request) -> TokenInfo | None:
    """The caller's token, or None without a valid one (open intake allows that)."""
    header = request.headers.get("Authorization", "")
    scheme, _, secret = header.partition(" ")
    # Our secrets are ASCII (storage/tokens.py); anything else (bytes that were
    # not UTF-8 arrive as lone surrogates) is no token, not a hashing error.
    if scheme.lower() != "bearer" or not secret.strip() or not secret.isascii():
        return None
    return await request.app[TOKENS].get(secret.strip())


def unauthorised() -> Problem:
    return Problem(401, "a valid bearer token is required",
                   headers={"WWW-Authenticate": 'Bearer realm="intake"'})


def forbidden() -> Problem:
    return Problem(403, "this token's role may not do this")


async def require_token(request: web.Request) -> TokenInfo:
    token = await token_of(request)
    if token is None:
        raise unauthorised()
    return token


def ensure_role(token: TokenInfo, roles: Collection[str]) -> TokenInfo:
    """The token, if its role is one of `roles`."""
    if token.role not in roles:
        raise forbidden()
    return token


async def require_role(request: web.Request, roles: Collection[str]) -> TokenInfo:
    """The caller's token, if its role is one of `roles`."""
    return ensure_role(await require_token(request), roles)


def may_read(token: TokenInfo, queue: str | None) -> bool:
    """Admins read all; agents their queues (all if unscoped); intake clients none."""
    if token.role == "admin":
        return True
    if token.role != "agent":
        return False
    return not token.queues or (queue is not None and queue in token.queues)


def actor(token: TokenInfo) -> str:
    """How a token's actions are recorded on a request's timeline (and who holds a
    claim): the agent it belongs to, so all of one person's tokens act as one."""
    return f"agent:{token.agent_id}" if token.agent_id is not None else f"token:{token.id}"
