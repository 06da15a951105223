"""The dashboard's signed cookies: a session, and the login form's CSRF pair.

A session is a cookie the server signs (HMAC-SHA256 with this install's key,
storage/dashboard.py `session_key`), carrying the token's id, an expiry and a
random nonce; no server-side store, so any worker process accepts it and a
restart keeps it. The token is looked up again on every request, so revoking
it (or deactivating its agent) ends the session at once. The token itself is
never in the cookie or a URL.

Forms that change something are CSRF-protected twice: the cookies are
SameSite=Strict (a cross-site post carries none), and each form carries a
token that only the server can derive from the cookie it pairs with (logout:
the session's nonce; login, before there is a session: a short-lived login
cookie's nonce, so nobody can log a victim in to their own session).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass

SESSION_COOKIE = "intake_dashboard"
LOGIN_COOKIE = "intake_dashboard_login"
COOKIE_PATH = "/dashboard"
SESSION_SECONDS = 8 * 3600  # a working day: then the token is asked for again
LOGIN_SECONDS = 3600  # the login page's form is good for this long
MAX_COOKIE = 400  # ours are about 150 characters; a longer one is not read


@dataclass(frozen=True, slots=True, kw_only=True)
class Session:
    token_id: int
    expires: int  # Unix time
    nonce: str


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: bytes, purpose: str, value: str) -> str:
    # The purpose keeps a value signed for one use from passing for another.
    return _b64(hmac.new(key, f"{purpose}|{value}".encode(), hashlib.sha256).digest())


def _signed(key: bytes, purpose: str, value: str) -> str:
    return f"{value}.{_mac(key, purpose, value)}"


def _verified(key: bytes, purpose: str, cookie: str | None) -> str | None:
    """The value of a cookie signed for `purpose`, or None if it is not one."""
    if not cookie or len(cookie) > MAX_COOKIE or not cookie.isascii():
        return None
    value, _, mac = cookie.rpartition(".")
    if not value or not hmac.compare_digest(mac, _mac(key, purpose, value)):
        return None
    return value


def new_session(key: bytes, token_id: int, now: float) -> tuple[Session, str]:
    """A session for the token, and its cookie value."""
    session = Session(token_id=token_id, expires=int(now) + SESSION_SECONDS,
                      nonce=secrets.token_urlsafe(12))
    payload = _b64(json.dumps([session.token_id, session.expires, session.nonce],
                              separators=(",", ":")).encode())
    return session, _signed(key, "session", payload)


def read_session(key: bytes, cookie: str | None, now: float) -> Session | None:
    """The session a cookie carries, if it is ours and not expired."""
    payload = _verified(key, "session", cookie)
    if payload is None:
        return None
    try:
        token_id, expires, nonce = json.loads(_unb64(payload))
    except (ValueError, TypeError):
        return None  # signed by us, so not expected; still never an error page
    if not (isinstance(token_id, int) and isinstance(expires, int) and isinstance(nonce, str)):
        return None
    if expires <= now:
        return None
    return Session(token_id=token_id, expires=expires, nonce=nonce)


def session_form_token(key: bytes, session: Session) -> str:
    """What the session's forms (logout) carry: derived from its nonce."""
    return _mac(key, "csrf", session.nonce)


def new_login(key: bytes, now: float) -> tuple[str, str]:
    """A login cookie value (issue time and nonce, signed) and its form token."""
    value = f"{int(now)}:{secrets.token_urlsafe(12)}"
    return _signed(key, "login", value), _mac(key, "login-form", value)


def login_form_ok(key: bytes, cookie: str | None, form_token: str, now: float) -> bool:
    """The login form's token pairs with the login cookie, issued within LOGIN_SECONDS."""
    value = _verified(key, "login", cookie)
    if value is None or not form_token.isascii():
        return False
    issued, _, _ = value.partition(":")
    if not issued.isdigit() or not 0 <= now - int(issued) <= LOGIN_SECONDS:
        return False
    return hmac.compare_digest(form_token, _mac(key, "login-form", value))


def session_form_ok(key: bytes, session: Session, form_token: str) -> bool:
    return form_token.isascii() and hmac.compare_digest(
        form_token, session_form_token(key, session))
