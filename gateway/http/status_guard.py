"""What stands in front of a post from the status page: the per-page token,
the origin, and the rate limits.

The page token is an HMAC-SHA256 over the status token and when the page was
made, keyed from the install's key (storage/status_view.py `page_key`: every
process on the database takes the pages another made), so a token made for
one request's page is worth nothing on another's, and a page left open too
long is reloaded. Another site cannot read the page, so it cannot send the
token: its post is refused (403), and so is a post whose Origin (or, without
one, Referer) is another site's.
A reply's page token is good for one reply in each process (a second click
is not a second reply; gateway/http/form_tokens.py keeps the spent ones);
resolving or reopening twice does nothing more the second time.

Posts are limited per status link and per client address (IPv6 by its /64),
in memory per process, as the forms are (gateway/http/limits.py).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import secrets
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.http.form_tokens import SpentTokens
from gateway.http.limits import Buckets, client_key
from storage.status_view import page_key

# A page left open longer than this is reloaded before its forms are taken.
PAGE_TOKEN_SECONDS = 4 * 3600
# Posts from the page: per status link, and per client address (several
# people's links may share an office's address).
POSTS_PER_MINUTE_PER_LINK = 10
POSTS_PER_MINUTE_PER_ADDRESS = 30
_MAC_BYTES = 18


def _mac(secret: bytes, status_token: str, issued: int, nonce: str) -> str:
    # The status token is hashed first: any length and any character, one message.
    bound = hashlib.sha256(status_token.encode("utf-8", "surrogatepass")).hexdigest()
    digest = hmac.new(secret, f"status-page.{bound}.{issued}.{nonce}".encode(),
                      hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:_MAC_BYTES]).decode()


def issue_page_token(secret: bytes, status_token: str, now: float,
                     nonce: str | None = None) -> str:
    """A token for the forms of one status page, made at `now`."""
    issued = int(now)
    nonce = nonce or secrets.token_urlsafe(9)
    return f"{issued}.{nonce}.{_mac(secret, status_token, issued, nonce)}"


def page_token_issued(token: str) -> int | None:
    """When a well-formed page token says it was made (one spelling per time)."""
    issued = token.partition(".")[0]
    if not (issued.isascii() and issued.isdigit() and len(issued) <= 12):
        return None
    return int(issued) if issued == str(int(issued)) else None


def check_page_token(secret: bytes, status_token: str, token: str | None, now: float
                     ) -> bool:
    """Whether `token` was made for this status link's page, and not too long ago."""
    if not token or len(token) > 200:
        return False
    parts = token.split(".")
    issued = page_token_issued(token)
    if len(parts) != 3 or issued is None or not parts[1]:
        return False
    expected = _mac(secret, status_token, issued, parts[1])
    if not hmac.compare_digest(parts[2].encode("utf-8", "surrogatepass"), expected.encode()):
        return False
    return 0 <= now - issued <= PAGE_TOKEN_SECONDS


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def own_origins(request: web.Request, public_url: str) -> set[str]:
    return {_origin(public_url), f"{request.scheme}://{request.host}".lower()}


def foreign_origin(request: web.Request, public_url: str) -> bool:
    """Whether the post says it comes from another site: its Origin, or without
    one its Referer. A post naming neither (not a browser's) is left to the
    page token; `Origin: null` (an opaque origin) is another site."""
    origin = request.headers.get("Origin")
    if origin is None:
        referer = request.headers.get("Referer")
        if not referer:
            return False
        origin = _origin(referer)
    return origin.strip().lower() not in own_origins(request, public_url)


@dataclass
class StatusDesk:
    """What the status page's handlers share: the token key (read from the
    database at the first page), limits, spent tokens."""

    secret: bytes = b""
    per_link: Buckets = field(default_factory=lambda: Buckets(
        POSTS_PER_MINUTE_PER_LINK / 60, POSTS_PER_MINUTE_PER_LINK))
    per_address: Buckets = field(default_factory=lambda: Buckets(
        POSTS_PER_MINUTE_PER_ADDRESS / 60, POSTS_PER_MINUTE_PER_ADDRESS))
    spent: SpentTokens = field(default_factory=SpentTokens)

    async def ready(self, engine: AsyncEngine) -> None:
        if not self.secret:
            self.secret = await page_key(engine)

    def page_token(self, status_token: str) -> str:
        assert self.secret, "ready() first"
        return issue_page_token(self.secret, status_token, time.time())

    def valid(self, status_token: str, token: str | None) -> bool:
        assert self.secret, "ready() first"
        return check_page_token(self.secret, status_token, token, time.time())

    def wait(self, request: web.Request, status_token: str) -> int:
        """0 if another post may come now, else the seconds to wait."""
        link = hashlib.sha256(status_token.encode("utf-8", "surrogatepass")).hexdigest()
        wait = max(self.per_link.take(link), self.per_address.take(client_key(request.remote)))
        return max(1, math.ceil(wait)) if wait > 0 else 0

    def spend(self, token: str) -> bool:
        """True the first time a reply's page token is used in this process."""
        issued = page_token_issued(token) or 0
        return self.spent.spend(token, issued=issued, expires=issued + PAGE_TOKEN_SECONDS,
                                now=time.time())

    def give_back(self, token: str) -> None:
        self.spent.give_back(token)
