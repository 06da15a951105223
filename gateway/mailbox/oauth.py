"""OAuth2 access tokens for a mailbox: the refresh-token grant (RFC 6749 6).

Providers (Microsoft 365, Google) give a refresh token once, at consent; the
gateway trades it for short-lived access tokens at the token endpoint, a
little before each one expires. Some providers rotate the refresh token on
every use: the new one is kept in the database (`mailboxes.refresh_token`),
since the configured one may already be dead. It is tied to the sha256 of the
configured token it descends from, so an operator who consents again and puts
a new token in the environment is not overruled by an old rotated one.

A refusal (`invalid_grant`: revoked, expired, consent withdrawn) is a
`TokenError` at once, with the provider's own words: the fetcher reports it
to the health check the moment it happens, not after days of silence.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.config.sections import MailboxSection, OAuth2Section
from storage import mailboxes as store

# A token endpoint's answer is a small JSON object; more is not read.
MAX_ANSWER_BYTES = 64 * 1024
DEFAULT_LIFETIME_SECONDS = 3600


class TokenError(Exception):
    """No access token: the endpoint refused, or could not be reached."""


def _secret(env: Mapping[str, str], name: str | None, what: str) -> str | None:
    if name is None:
        return None
    value = env.get(name)
    if not value:
        raise TokenError(f"{what}: the environment variable {name} is not set")
    return value


class Tokens:
    """Access tokens for one mailbox, refreshed before they expire."""

    def __init__(self, engine: AsyncEngine, section: MailboxSection, *,
                 env: Mapping[str, str] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if section.oauth2 is None:
            raise ValueError(f"mailbox {section.name} has no [mailbox.oauth2]")
        self._engine = engine
        self._name = section.name
        self._oauth: OAuth2Section = section.oauth2
        self._env = os.environ if env is None else env
        self._clock = clock
        self._token: str | None = None
        self._expires = 0.0
        self.refreshed = 0  # how many times a token was fetched (tests, metrics)

    def forget(self) -> None:
        """The server refused our access token: the next call fetches a new one."""
        self._token = None

    async def access_token(self) -> str:
        if self._token is not None and self._clock() < self._expires - (
                self._oauth.refresh_margin_seconds):
            return self._token
        oauth = self._oauth
        configured = _secret(self._env, oauth.refresh_token_env, "refresh token")
        assert configured is not None
        seed = hashlib.sha256(configured.encode()).hexdigest()
        rotated, rotated_seed = await store.refresh_token(self._engine, self._name)
        refresh = rotated if rotated and rotated_seed == seed else configured
        form = {"grant_type": "refresh_token", "refresh_token": refresh,
                "client_id": oauth.client_id}
        if secret := _secret(self._env, oauth.client_secret_env, "client secret"):
            form["client_secret"] = secret
        if oauth.scope:
            form["scope"] = oauth.scope
        started = self._clock()
        answer = await self._post(form)
        token = answer.get("access_token")
        if not isinstance(token, str) or not token or len(token) > 16384:
            raise TokenError("the token endpoint's answer has no access_token")
        lifetime = answer.get("expires_in", DEFAULT_LIFETIME_SECONDS)
        try:
            seconds = max(0.0, min(float(lifetime), 366 * 86400.0))
        except (TypeError, ValueError):
            seconds = DEFAULT_LIFETIME_SECONDS
        new_refresh = answer.get("refresh_token")
        if isinstance(new_refresh, str) and new_refresh and new_refresh != refresh:
            await store.save_refresh_token(self._engine, self._name, new_refresh, seed)
        self._token, self._expires = token, started + seconds
        self.refreshed += 1
        return token

    async def _post(self, form: dict[str, str]) -> dict[str, Any]:
        timeout = aiohttp.ClientTimeout(total=30)
        try:
            async with aiohttp.ClientSession(timeout=timeout, trust_env=False,
                                             cookie_jar=aiohttp.DummyCookieJar()) as http, \
                    http.post(self._oauth.token_url, data=form,
                              headers={"Accept": "application/json"},
                              allow_redirects=False) as response:
                body = b""
                while len(body) <= MAX_ANSWER_BYTES and (
                        chunk := await response.content.read(MAX_ANSWER_BYTES)):
                    body += chunk  # read() gives what has come: to the end, bounded
                status = response.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise TokenError(f"the token endpoint cannot be reached: "
                             f"{type(exc).__name__}: {exc}"[:300]) from None
        try:
            answer = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            answer = None
        if not isinstance(answer, dict):
            raise TokenError(f"the token endpoint answered {status} without a JSON object")
        if status != 200:
            error = str(answer.get("error", ""))[:100]
            detail = str(answer.get("error_description", ""))[:200]
            raise TokenError(f"the token endpoint refused ({status} {error}"
                             + (f": {detail}" if detail else "") + ")")
        return answer
