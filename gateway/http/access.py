"""Who may act on a request, and on which version of it: the one check every
request action goes through (reads, PATCH, notes, replies, escalate, merge,
leases, release from quarantine, attachments).

Scope: a token sees a request only in its queues (an unscoped agent and an
admin see all); out of scope answers 404, exactly like a reference that does
not exist. A queue the action would move the request to must be configured
(the body's model: 422 naming the field); one out of the token's scope is a
hand-off, allowed to tokens that `may_hand_off` (the default) and 403 for
others (`check_hand_off`). A request it would be merged into is checked by
`merge_target`.

Concurrency (RFC 9110 13.1.1, strong comparison): If-Match is required (428)
where the client chooses the new values from what it read: PATCH, and escalate
with a `queue`. Wherever it is sent it must match (412). Either way a change is
made only to the version that was authorised: storage compares and sets it, and
a request that changed in between is read again, authorised again and tried
again (`perform`), or, under the client's own If-Match, refused with 412.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from aiohttp import web

from domain.lifecycle import Status
from gateway.http.auth import STAFF, ensure_role, may_read, require_token
from gateway.http.problems import Problem, invalid
from gateway.http.shared import CONFIG, ENGINE
from parsers.api_request import FieldProblem
from storage import queries
from storage.tokens import TokenInfo

T = TypeVar("T")
# A request changed by someone else between our read and our write is read and
# tried again this often before the client is told to retry (409).
MAX_ATTEMPTS = 5
# `W/"x"` or `"x"`, comma separated (RFC 9110 8.8.3); our tags are "v<version>".
_ENTITY_TAG = re.compile(r'\s*(W/)?"([\x21\x23-\x7e\x80-\xff]*)"\s*(?:,|$)')
_OUR_TAG = re.compile(r"v(\d{1,18})")


def not_found() -> Problem:
    return Problem(404, "no request with this reference")


class Changed(Exception):
    """Raised by an attempt whose compare-and-set found another version."""


@dataclass(frozen=True, slots=True)
class IfMatch:
    """A parsed If-Match header: `*`, or the versions its strong tags name."""

    any: bool
    versions: frozenset[int]

    @classmethod
    def parse(cls, header: str | None) -> IfMatch | None:
        if header is None:
            return None
        if header.strip() == "*":
            return cls(any=True, versions=frozenset())
        versions: set[int] = set()
        position = 0
        while position < len(header):
            found = _ENTITY_TAG.match(header, position)
            if found is None or found.end() == position:
                return cls(any=False, versions=frozenset())  # malformed: matches nothing
            ours = _OUR_TAG.fullmatch(found.group(2))
            if ours and not found.group(1):  # a weak tag never matches If-Match
                versions.add(int(ours.group(1)))
            position = found.end()
        return cls(any=False, versions=frozenset(versions))

    def matches(self, version: int) -> bool:
        return self.any or version in self.versions

    @property
    def pins(self) -> bool:
        """True when it names versions: a change on another one is the client's 412."""
        return not self.any


def etag(version: int) -> str:
    return f'"v{version}"'


@dataclass(frozen=True, slots=True)
class Acting:
    """An authorised caller and the request as it was read for them."""

    token: TokenInfo
    request: dict[str, Any]
    if_match: IfMatch | None
    act: bool
    whole: bool

    @property
    def reference(self) -> str:
        return str(self.request["reference"])

    @property
    def version(self) -> int:
        return int(self.request["version"])

    def queues(self, request: web.Request) -> list[str]:
        """The configured queues this token may see (and so move requests to)."""
        names = [q.name for q in request.app[CONFIG].queue]
        if self.token.role == "admin" or not self.token.queues:
            return names
        return [n for n in names if n in self.token.queues]

    def check_hand_off(self, request: web.Request, queue: str | None) -> None:
        """403 for a move to a queue this token cannot see, unless it may hand off
        (the queue is configured: the body's model checked that)."""
        if queue is None or self.token.may_hand_off or queue in self.queues(request):
            return
        raise Problem(403, "this token may not hand requests to a queue outside its scope",
                      errors=[FieldProblem("/queue", "is a queue this token may not hand "
                                                      "requests to")])

    def require_if_match(self) -> None:
        """428 unless the client said which version it is changing."""
        if self.if_match is None:
            raise Problem(428, "send If-Match with the ETag of the version you are changing")

    def check_if_match(self) -> None:
        """412 if the client's If-Match names another version than the current one."""
        if self.if_match is not None and not self.if_match.matches(self.version):
            raise _stale()

    async def perform(self, request: web.Request,
                      attempt: Callable[[Acting], Awaitable[T]]) -> T:
        """Run `attempt` for the version authorised; on `Changed`, read the request
        again, authorise it again and retry (a pinned If-Match gets 412 instead)."""
        acting = self
        for _ in range(MAX_ATTEMPTS):
            acting.check_if_match()
            try:
                return await attempt(acting)
            except Changed:
                if acting.if_match is not None and acting.if_match.pins:
                    raise _stale() from None
            acting = await _authorised(request, acting.token, act=acting.act,
                                       whole=acting.whole, if_match=acting.if_match)
        raise Problem(409, "the request kept changing while we tried to change it; "
                           "read it again and retry", headers={"Retry-After": "1"})

    async def merge_target(self, request: web.Request, into: str) -> dict[str, Any]:
        """The request to merge into, if this token may act on it too."""
        target = await queries.get_request(request.app[ENGINE], into, whole=False)
        if target is None or not may_read(self.token, target.get("queue")):
            raise invalid("/into", "no request with this reference")
        if target["status"] == Status.RECEIVED:
            raise Problem(409, "the request to merge into is still being processed; "
                               "try again shortly", headers={"Retry-After": "1"})
        if target["status"] == Status.MERGED:
            raise invalid("/into", "is itself merged into another request; merge into that one")
        return target


def _stale() -> Problem:
    return Problem(412, "the request changed since you read it; read it again")


async def _authorised(request: web.Request, token: TokenInfo, *, act: bool, whole: bool,
                      if_match: IfMatch | None, reference: str | None = None) -> Acting:
    found = await queries.get_request(request.app[ENGINE],
                                      reference or request.match_info["reference"], whole=whole)
    if found is None or not may_read(token, found.get("queue")):
        raise not_found()  # out of scope looks exactly like unknown
    if act:
        ensure_role(token, STAFF)
        if found["status"] == Status.RECEIVED:
            raise Problem(409, "this input is still being processed; try again shortly",
                          headers={"Retry-After": "1"})
    return Acting(token=token, request=found, if_match=if_match, act=act, whole=whole)


async def authorise(request: web.Request, *, act: bool = True, whole: bool = False,
                    reference: str | None = None) -> Acting:
    """The caller's token and the request the path names, as the caller may see it.

    401 without a token; 404 for a request out of the token's scope (or none);
    with `act` (a change, not a read): 403 for a role that may not change
    requests, 409 while the input is still being processed. `whole` reads the
    messages and timeline too; `reference`, when the path does not name it.
    """
    token = await require_token(request)
    return await _authorised(request, token, act=act, whole=whole,
                             if_match=IfMatch.parse(request.headers.get("If-Match")),
                             reference=reference)
