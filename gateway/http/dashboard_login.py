"""The dashboard's login and logout, and what its pages share.

Admins and agents log in with their API token in a form (POST, never in a
URL); what they get is a signed session cookie (dashboard_session.py), and
the token is looked up again on every page (`signed_in`): revoked means
logged out. The pages are HTML with no script, sent with a strict
Content-Security-Policy and never cached.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from aiohttp import web
from jinja2 import Environment, FileSystemLoader, select_autoescape

from gateway.http.auth import STAFF, TOKENS
from gateway.http.dashboard_session import (
    COOKIE_PATH,
    LOGIN_COOKIE,
    LOGIN_SECONDS,
    SESSION_COOKIE,
    SESSION_SECONDS,
    Session,
    login_form_ok,
    new_login,
    new_session,
    read_session,
    session_form_ok,
)
from gateway.http.form_pages import origin_of
from gateway.http.limits import Buckets, client_key
from gateway.http.shared import CONFIG, ENGINE
from storage.dashboard import session_key
from storage.tokens import TokenInfo, lookup_token_id

MAX_TOKEN = 200  # our tokens are 47 characters
# Login posts per client address (IPv6: its /64), per process: a person's typos
# pass, a script's flood of guesses costs it a wait, not us a lookup each.
LOGIN_RATE_PER_SECOND = 0.2
LOGIN_BURST = 10
LOGIN_ATTEMPTS = web.AppKey("dashboard_login_attempts", Buckets)
FORM_FIELD = "csrf"
_TEMPLATES = Environment(loader=FileSystemLoader(Path(__file__).with_name("templates")),
                         autoescape=select_autoescape(default=True), trim_blocks=True,
                         lstrip_blocks=True)
# No script, no outside resource, no framing; forms post only to us.
_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
                               "img-src 'self'; form-action 'self'; base-uri 'none'; "
                               "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin", "Cache-Control": "no-store",
}


def page(template: str, status: int = 200, **values: Any) -> web.Response:
    text = _TEMPLATES.get_template(template).render(**values)
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8",
                        headers=_HEADERS)


def _secure(request: web.Request) -> bool:
    return request.secure or request.app[CONFIG].public_url.startswith("https://")


def _set_cookie(request: web.Request, response: web.Response, name: str, value: str,
                max_age: int) -> None:
    response.set_cookie(name, value, max_age=max_age, path=COOKIE_PATH, httponly=True,
                        samesite="Strict", secure=_secure(request))


def _clear_cookie(request: web.Request, response: web.Response, name: str) -> None:
    response.del_cookie(name, path=COOKIE_PATH, httponly=True, samesite="Strict",
                        secure=_secure(request))


def _see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location, **_HEADERS})


async def signed_in(request: web.Request) -> tuple[Session, TokenInfo] | None:
    """The session and its token, still valid now; None if not logged in."""
    key = await session_key(request.app[ENGINE])
    session = read_session(key, request.cookies.get(SESSION_COOKIE), time.time())
    if session is None:
        return None
    token = await lookup_token_id(request.app[ENGINE], session.token_id)
    if token is None or token.role not in STAFF:
        return None
    return session, token


async def logged_out(request: web.Request) -> web.Response:
    """To the login page; a cookie that no longer logs in is cleared."""
    response = _see_other(f"{COOKIE_PATH}/login")
    if SESSION_COOKIE in request.cookies:
        _clear_cookie(request, response, SESSION_COOKIE)
    return response


# --- logging in and out --------------------------------------------------------


async def _login_form(request: web.Request, status: int = 200,
                      error: str | None = None) -> web.Response:
    """The login page, with a fresh login cookie and the form token it pairs with."""
    key = await session_key(request.app[ENGINE])
    cookie, form_token = new_login(key, time.time())
    response = page("dashboard_login.html", status, field=FORM_FIELD, form_token=form_token,
                    error=error)
    _set_cookie(request, response, LOGIN_COOKIE, cookie, LOGIN_SECONDS)
    return response


async def login_page(request: web.Request) -> web.Response:
    if await signed_in(request) is not None:
        return _see_other(COOKIE_PATH)
    return await _login_form(request)


def _cross_site(request: web.Request) -> bool:
    """A post whose Origin is not us (a browser always sends Origin on a POST)."""
    origin = request.headers.get("Origin")
    if origin is None:
        return False
    own = {origin_of(request.app[CONFIG].public_url), f"{request.scheme}://{request.host}"}
    return origin.lower() not in {o.lower() for o in own}


async def _form(request: web.Request) -> dict[str, str]:
    """The posted form's text fields (the first of each name; files ignored)."""
    if request.content_type not in ("application/x-www-form-urlencoded", "multipart/form-data"):
        raise web.HTTPUnsupportedMediaType(text="send the form (urlencoded)")
    fields: dict[str, str] = {}
    for name, value in (await request.post()).items():
        if isinstance(value, str):
            fields.setdefault(name, value)
    return fields


async def login(request: web.Request) -> web.Response:
    wait = request.app[LOGIN_ATTEMPTS].take(client_key(request.remote))
    if wait > 0:
        response = page("dashboard_problem.html", 429, title="Too many attempts",
                        detail="Too many login attempts from your address: wait a minute, "
                               "then try again.")
        response.headers["Retry-After"] = str(max(1, math.ceil(wait)))
        return response
    key = await session_key(request.app[ENGINE])
    if _cross_site(request):
        return await _login_form(request, 403, "This form may only be sent from this site.")
    fields = await _form(request)
    if not login_form_ok(key, request.cookies.get(LOGIN_COOKIE),
                         fields.get(FORM_FIELD, ""), time.time()):
        return await _login_form(request, 403, "The login form had expired or was not "
                                               "ours. Please enter your token again.")
    secret = fields.get("token", "").strip()
    token = None
    if secret and len(secret) <= MAX_TOKEN and secret.isascii():
        token = await request.app[TOKENS].get(secret)
    if token is None:
        return await _login_form(request, 401, "That token is not valid, or it was revoked.")
    if token.role not in STAFF:
        return await _login_form(request, 403, "Only admin and agent tokens may see the "
                                               "dashboard.")
    _, cookie = new_session(key, token.id, time.time())
    response = _see_other(COOKIE_PATH)
    _set_cookie(request, response, SESSION_COOKIE, cookie, SESSION_SECONDS)
    _clear_cookie(request, response, LOGIN_COOKIE)
    return response


async def logout(request: web.Request) -> web.Response:
    found_session = await signed_in(request)
    if found_session is None:
        return await logged_out(request)
    session, _ = found_session
    key = await session_key(request.app[ENGINE])
    fields = await _form(request)
    if _cross_site(request) or not session_form_ok(key, session, fields.get(FORM_FIELD, "")):
        return page("dashboard_problem.html", 403, title="Not logged out",
                    detail="The logout form was not ours. Use the button on the dashboard.")
    response = _see_other(f"{COOKIE_PATH}/login")
    _clear_cookie(request, response, SESSION_COOKIE)
    return response
