"""One check's DNS for one message: a budget of questions, the answers it got,
and the synchronous, answer-only view the libraries call.

pyspf and dkimpy look names up synchronously through a function we give
them. That function (`cached`) answers only from this session; a question not
answered yet is noted and raises `Miss`, the check awaits the resolver for the
noted questions (`fetch_misses`) and runs again: "replay on miss". The notes
are kept even where a library swallows the exception (pyspf's bare `except:`
around exp= would; we do not fetch exp=), so a run that missed anything is
never believed. Each check has its own
session: one check's misses are never another's.
"""

from __future__ import annotations

import asyncio

from gateway.sender_auth.cpu_slice import CpuSlice
from gateway.sender_auth.resolver import OVER_LIMIT, Answer, CachingResolver


class Miss(Exception):
    """A question not answered yet: the check awaits it and runs again. Not a
    subclass of any library's exception, so none of them handles it."""


def _key(name: str, rdtype: str) -> tuple[str, str]:
    return name.lower().rstrip("."), rdtype.upper()


class Lookups:
    def __init__(self, resolver: CachingResolver, limit: int,
                 cpu: CpuSlice | None = None) -> None:
        self._resolver = resolver
        self._limit = limit
        # Awaited before each of the check's CPU steps (the verifier's, shared).
        self.cpu = cpu or CpuSlice()
        self._asked = 0
        self.answers: dict[tuple[str, str], Answer] = {}
        self.misses: set[tuple[str, str]] = set()

    async def get(self, name: str, rdtype: str) -> Answer:
        key = _key(name, rdtype)
        answer = self.answers.get(key)
        if answer is not None:
            return answer
        if self._asked >= self._limit:
            answer = Answer(OVER_LIMIT)
        else:
            self._asked += 1
            answer = await self._resolver.lookup(*key)
        self.answers[key] = answer
        return answer

    def cached(self, name: str, rdtype: str) -> Answer:
        """The answer already got, or note the question and raise Miss."""
        key = _key(name, rdtype)
        answer = self.answers.get(key)
        if answer is None:
            self.misses.add(key)
            raise Miss
        return answer

    async def fetch_misses(self) -> None:
        missed = sorted(self.misses)
        self.misses.clear()
        await asyncio.gather(*(self.get(*key) for key in missed))
