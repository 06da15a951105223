"""The dashboard over HTTP: logging in with a token in a form, the session
cookie's flags, a wrong token, a revoked one, CSRF on login and logout, what
an agent scoped to a queue sees, and the figures on the page."""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from http.cookies import Morsel, SimpleCookie
from typing import Any

import aiohttp
from aiohttp import web
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.config import Config
from gateway.http.app import init_app
from gateway.http.dashboard_login import LOGIN_BURST
from gateway.http.dashboard_session import LOGIN_COOKIE, SESSION_COOKIE, new_session
from gateway.pipeline.worker import Pipeline
from storage.dashboard import session_key
from storage.engine import utcnow
from storage.models import requests
from storage.tokens import create_token, lookup_token
from tests.helpers import AppClient, auth

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def _csrf(page: str) -> str:
    found = CSRF.search(page)
    assert found is not None, page
    return found.group(1)


def _put_session(client: AppClient, value: str) -> None:
    """Replace the session cookie in the client's jar (same name and path)."""
    cookie: SimpleCookie = SimpleCookie()
    cookie[SESSION_COOKIE] = value
    cookie[SESSION_COOKIE]["path"] = "/dashboard"
    client.session.cookie_jar.update_cookies(cookie, client.make_url("/dashboard"))


def _set_cookies(resp: aiohttp.ClientResponse) -> dict[str, Morsel[str]]:
    return dict(resp.cookies.items())


async def _login_form(client: AppClient) -> str:
    async with client.get("/dashboard/login") as resp:
        assert resp.status == 200
        return _csrf(await resp.text())


async def _login(client: AppClient, secret: str, *, csrf: str | None = None,
                 headers: dict[str, str] | None = None) -> tuple[int, str, dict[str, Any]]:
    """Post the login form; its status, the Location or page, and the cookies set."""
    csrf = csrf if csrf is not None else await _login_form(client)
    async with client.post("/dashboard/login", data={"token": secret, "csrf": csrf},
                           headers=headers, allow_redirects=False) as resp:
        said = resp.headers.get("Location") or await resp.text()
        return resp.status, said, _set_cookies(resp)


async def _dashboard(client: AppClient, query: str = "") -> tuple[int, str]:
    async with client.get(f"/dashboard{query}", allow_redirects=False) as resp:
        return resp.status, resp.headers.get("Location") or await resp.text()


async def _desk(client: AppClient, engine: AsyncEngine, pipeline: Pipeline,
                token: str) -> list[str]:
    """A request in general and one in billing, both past their first-response
    target; a third in general answered and resolved."""
    refs = []
    for subject in ("Printer <on fire>", "Invoice twice", "Scanner"):
        async with client.post("/v1/requests", headers=auth(token), json={
                "requester": {"email": "ann@example.com"}, "subject": subject,
                "body": "please help"}) as resp:
            assert resp.status == 201
            refs.append((await resp.json())["reference"])
    await pipeline.drain()
    overdue = utcnow() - timedelta(hours=2)
    async with engine.begin() as conn:
        await conn.execute(update(requests).where(requests.c.reference == refs[1])
                           .values(queue="billing"))
        await conn.execute(update(requests).where(requests.c.reference.in_(refs[:2]))
                           .values(first_response_due_at=overdue))
    async with client.post(f"/v1/requests/{refs[2]}/replies", headers=auth(token),
                           json={"body": "Fixed.", "status": "resolved"}) as resp:
        assert resp.status == 201, await resp.text()
    return refs


async def test_dashboard_http__login_sets_a_strict_httponly_session_and_shows_figures(
        app_client: AppClient, engine: AsyncEngine, pipeline: Pipeline,
        admin_token: str) -> None:
    refs = await _desk(app_client, engine, pipeline, admin_token)
    assert await _dashboard(app_client) == (303, "/dashboard/login")

    async with app_client.get("/dashboard/login") as resp:
        assert resp.status == 200
        login_cookie = _set_cookies(resp)[LOGIN_COOKIE]
        assert "default-src 'none'" in resp.headers["Content-Security-Policy"]
        assert resp.headers["Cache-Control"] == "no-store"
        page = await resp.text()
    assert (login_cookie["httponly"], login_cookie["samesite"], login_cookie["path"]) == (
        True, "Strict", "/dashboard")
    assert 'type="password"' in page and 'method="post"' in page

    status, location, cookies = await _login(app_client, admin_token, csrf=_csrf(page))
    assert (status, location) == (303, "/dashboard")
    session = cookies[SESSION_COOKIE]
    assert (session["httponly"], session["samesite"], session["path"]) == (
        True, "Strict", "/dashboard")
    assert int(session["max-age"]) == 8 * 3600
    assert not session["secure"]  # plain http here; set behind https
    assert admin_token not in session.value
    assert cookies[LOGIN_COOKIE]["max-age"] == "0"  # spent

    status, page = await _dashboard(app_client)
    assert status == 200
    assert page.count('<svg xmlns="http://www.w3.org/2000/svg"') == 4
    for heading in ("Created and resolved", "Backlog", "Service levels", "First response",
                    "In breach now"):
        assert f">{heading}</h2>" in page
    # Both overdue requests are listed, linked, their subjects escaped.
    for ref in refs[:2]:
        assert f'<a href="/dashboard/requests/{ref}">{ref}</a>' in page
    assert refs[2] not in page
    assert "Printer &lt;on fire&gt;" in page and "<on fire>" not in page
    assert "2 open targets past due" in page
    # The backlog table: general 1 open (one resolved), billing 1.
    assert re.search(r'<th scope="row">general</th><td class="number">1</td>', page)
    assert re.search(r'<th scope="row">billing</th><td class="number">1</td>', page)
    # Today: 3 created, 1 resolved; that one was answered within 15 minutes.
    today = utcnow().date().isoformat()
    assert (f'<th scope="row">{today}</th><td class="number">3</td>'
            '<td class="number">1</td>') in page
    assert '<th scope="row">≤ 15 min</th><td class="number">1</td>' in page
    assert admin_token not in page

    async with app_client.get(f"/dashboard/requests/{refs[0]}") as resp:
        assert resp.status == 200
        assert "Printer &lt;on fire&gt;" in await resp.text()
    assert (await _dashboard(app_client, "?days=7"))[0] == 200
    assert (await _dashboard(app_client, "?days=8"))[0] == 400
    assert (await _dashboard(app_client, "?days=7&x=1"))[0] == 400


async def test_dashboard_http__a_wrong_token_is_refused_without_a_session(
        app_client: AppClient, engine: AsyncEngine) -> None:
    status, page, cookies = await _login(app_client, "itk_" + "x" * 43)
    assert status == 401
    assert "not valid" in page and 'role="alert"' in page
    assert SESSION_COOKIE not in cookies
    assert LOGIN_COOKIE in cookies  # a fresh form to try again
    assert (await _login(app_client, "é" * 500))[0] == 401
    assert await _dashboard(app_client) == (303, "/dashboard/login")
    _, intake = await create_token(engine, name="intake", role="intake", queues=[])
    status, page, cookies = await _login(app_client, intake)
    assert status == 403 and SESSION_COOKIE not in cookies


async def test_dashboard_http__login_needs_the_forms_csrf_pair(
        app_client: AppClient, admin_token: str) -> None:
    # No login cookie at all (a cross-site post carries none: SameSite=Strict).
    app_client.session.cookie_jar.clear()
    status, _, cookies = await _login(app_client, admin_token, csrf="made-up")
    assert status == 403 and SESSION_COOKIE not in cookies
    # A form token that is not this login cookie's.
    other = await _login_form(app_client)
    await _login_form(app_client)  # a new login cookie replaces the one `other` pairs with
    status, page, cookies = await _login(app_client, admin_token, csrf=other)
    assert status == 403 and SESSION_COOKIE not in cookies
    assert "expired" in page
    # Another site's Origin, even with a good pair.
    status, _, cookies = await _login(app_client, admin_token,
                                      headers={"Origin": "https://evil.example"})
    assert status == 403 and SESSION_COOKIE not in cookies
    # The token never works from a URL.
    async with app_client.get("/dashboard", params={"token": admin_token},
                              allow_redirects=False) as resp:
        assert resp.status == 303
    async with app_client.post("/dashboard/login", json={"token": admin_token},
                               allow_redirects=False) as resp:
        assert resp.status == 415
    # Our own Origin is fine.
    origin = str(app_client.make_url("/")).rstrip("/")
    status, location, _ = await _login(app_client, admin_token, headers={"Origin": origin})
    assert (status, location) == (303, "/dashboard")


async def test_dashboard_http__logout_needs_the_sessions_form_token(
        app_client: AppClient, admin_token: str) -> None:
    assert (await _login(app_client, admin_token))[0] == 303
    status, page = await _dashboard(app_client)
    assert status == 200
    async with app_client.post("/dashboard/logout", data={"csrf": "forged"},
                               allow_redirects=False) as resp:
        assert resp.status == 403
    assert (await _dashboard(app_client))[0] == 200  # still logged in
    async with app_client.post("/dashboard/logout", data={"csrf": _csrf(page)},
                               allow_redirects=False) as resp:
        assert (resp.status, resp.headers["Location"]) == (303, "/dashboard/login")
        assert _set_cookies(resp)[SESSION_COOKIE]["max-age"] == "0"
    assert await _dashboard(app_client) == (303, "/dashboard/login")


async def test_dashboard_http__a_revoked_token_is_logged_out(
        app_client: AppClient, admin_token: str) -> None:
    async with app_client.post("/v1/admin/tokens", json={"role": "agent", "name": "lead"},
                               headers=auth(admin_token)) as resp:
        created = await resp.json()
    assert (await _login(app_client, created["token"]))[0] == 303
    assert (await _dashboard(app_client))[0] == 200
    async with app_client.delete(f"/v1/admin/tokens/{created['id']}",
                                 headers=auth(admin_token)) as resp:
        assert resp.status in (200, 204)
    status, location = await _dashboard(app_client)
    assert (status, location) == (303, "/dashboard/login")


async def test_dashboard_http__a_forged_or_expired_cookie_is_no_session(
        app_client: AppClient, engine: AsyncEngine, admin_token: str) -> None:
    assert (await _login(app_client, admin_token))[0] == 303
    [good] = [c.value for c in app_client.session.cookie_jar if c.key == SESSION_COOKIE]
    payload, _, mac = good.rpartition(".")
    for forged in (f"{payload}.{mac[:-2]}AA", good + "x", "x" * 1000, "."):
        _put_session(app_client, forged)
        assert await _dashboard(app_client) == (303, "/dashboard/login"), forged
    # Signed by us, but past its expiry.
    key = await session_key(engine)
    admin = await lookup_token(engine, admin_token)
    assert admin is not None
    _, old = new_session(key, admin.id, time.time() - 9 * 3600)
    _put_session(app_client, old)
    assert await _dashboard(app_client) == (303, "/dashboard/login")
    _, fresh = new_session(key, admin.id, time.time())  # the same, in time: good
    _put_session(app_client, fresh)
    assert (await _dashboard(app_client))[0] == 200


async def test_dashboard_http__an_agent_sees_only_their_queues(
        app_client: AppClient, engine: AsyncEngine, pipeline: Pipeline,
        admin_token: str) -> None:
    refs = await _desk(app_client, engine, pipeline, admin_token)
    _, agent = await create_token(engine, name="billing lead", role="agent",
                                  queues=["billing"])
    assert (await _login(app_client, agent))[0] == 303
    status, page = await _dashboard(app_client)
    assert status == 200
    assert "Your queues: billing." in page
    assert refs[1] in page and refs[0] not in page
    assert "1 open target past due" in page
    assert '<th scope="row">general</th>' not in page
    async with app_client.get(f"/dashboard/requests/{refs[0]}") as resp:
        assert resp.status == 404
    async with app_client.get(f"/dashboard/requests/{refs[1]}") as resp:
        assert resp.status == 200
    async with app_client.get("/dashboard/requests/" + "Z" * 300) as resp:
        assert resp.status == 404


async def test_dashboard_http__a_session_is_good_at_another_process(
        app_client: AppClient, config: Config, admin_token: str,
        aiohttp_client: Callable[[web.Application], Awaitable[AppClient]]) -> None:
    """Another app on the same database (as another worker process, or this
    one restarted: its own engine, caches and no shared memory) takes the cookie."""
    assert (await _login(app_client, admin_token))[0] == 303
    [cookie] = [c.value for c in app_client.session.cookie_jar if c.key == SESSION_COOKIE]
    other = await aiohttp_client(init_app(config))
    _put_session(other, cookie)
    async with other.get("/dashboard", allow_redirects=False) as resp:
        assert resp.status == 200


async def test_dashboard_http__a_flood_of_login_posts_is_made_to_wait(
        app_client: AppClient, admin_token: str) -> None:
    answers = [(await _login(app_client, f"itk_guess{n}"))[0] for n in range(LOGIN_BURST)]
    assert answers == [401] * LOGIN_BURST
    csrf = await _login_form(app_client)  # the page still loads; its post waits
    async with app_client.post("/dashboard/login", data={"token": admin_token, "csrf": csrf},
                               allow_redirects=False) as resp:
        assert resp.status == 429
        assert int(resp.headers["Retry-After"]) >= 1
        assert SESSION_COOKIE not in resp.cookies
