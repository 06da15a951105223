"""Form tokens cannot be replayed, on both databases: each is signed for the
client's address (IPv6 grouped by /64), valid for a shorter time, and spent by
the one post it carried (given back if that post was refused for another reason).
"""

from __future__ import annotations

import asyncio
import secrets
import time

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.config import DEFAULT_FORM, Config
from gateway.http.form_tokens import SpentTokens
from gateway.http.limits import client_key
from parsers.forms import (
    DEFAULT_TOKEN_AGE_SECONDS,
    check_token,
    issue_token,
    parse_form,
)
from storage.models import inbox_items
from tests.helpers import AppClient, count_rows, make_config

SECRET = "form-secret-for-the-replay-tests-0123"
JSON = {"Accept": "application/json"}
GOOD = {"name": "Ann", "email": "ann@example.com", "subject": "Printer on fire",
        "message": "It started at nine."}


@pytest.fixture
def config(db_url: str) -> Config:
    return make_config(db_url, form=[DEFAULT_FORM | {"min_fill_seconds": 2,
                                                     "rate_limit_per_minute": 1000}],
                       http={"form_secret": SECRET})


def _token(client: str = "127.0.0.1", age: float = 10.0) -> str:
    """A token as a page issues it: its own nonce, for the test client's address."""
    return issue_token(SECRET.encode(), "support", time.time() - age, client,
                       nonce=secrets.token_urlsafe(9))


async def _post(http: AppClient, token: str, **values: str) -> tuple[int, dict[str, str]]:
    async with http.post("/v1/forms/support", data=GOOD | values | {"_form_token": token},
                         headers=JSON) as resp:
        body = await resp.json()
        return resp.status, body


async def test_form_token__is_spent_by_its_post(app_client: AppClient,
                                                engine: AsyncEngine) -> None:
    token = _token()
    status, _ = await _post(app_client, token)
    assert status == 201
    for _ in range(3):
        status, problem = await _post(app_client, token, subject="Replayed")
        assert (status, problem["reason"]) == (422, "token")
        assert "sent already" in problem["detail"]
    assert await count_rows(engine, inbox_items) == 1
    # A fresh token (the page reloaded) posts again.
    status, _ = await _post(app_client, _token())
    assert status == 201


async def test_form_token__concurrent_replays_store_one_post(app_client: AppClient,
                                                              engine: AsyncEngine) -> None:
    token = _token()
    answers = await asyncio.gather(*(_post(app_client, token) for _ in range(10)))
    assert sorted(status for status, _ in answers) == [201] + [422] * 9
    assert await count_rows(engine, inbox_items) == 1


async def test_form_token__given_back_when_the_post_is_refused_for_a_field(
        app_client: AppClient, engine: AsyncEngine) -> None:
    token = _token()
    status, problem = await _post(app_client, token, email="not an address")
    assert (status, problem["reason"]) == (422, "invalid")
    status, _ = await _post(app_client, token)  # the same page, the field put right
    assert status == 201
    assert await count_rows(engine, inbox_items) == 1


@pytest.mark.parametrize("client", ["203.0.113.7", "2001:db8::1", "::ffff:203.0.113.7", ""])
async def test_form_token__from_another_address_is_not_valid(
        app_client: AppClient, engine: AsyncEngine, client: str) -> None:
    status, problem = await _post(app_client, _token(client_key(client)))
    assert (status, problem["reason"]) == (422, "token")
    assert "not valid" in problem["detail"]
    assert await count_rows(engine, inbox_items) == 0


async def test_form_token__other_spellings_of_a_spent_token_are_refused(
        app_client: AppClient) -> None:
    token = _token()
    assert (await _post(app_client, token))[0] == 201
    issued, mac = token.split(".")[0], token.partition(".")[2]
    for variant in (f"0{issued}.{mac}", f"+{issued}.{mac}", f"{token}=", f" {token}",
                    f"{token}\x00", f"{token}.", f"{issued}..{mac}"):
        status, problem = await _post(app_client, variant)
        assert (status, problem["reason"]) == (422, "token"), variant


def test_form_token__bound_to_the_ipv6_64_and_the_ipv4_host() -> None:
    spec = parse_form(DEFAULT_FORM | {"min_fill_seconds": 1}, "form[0]")
    secret, now = SECRET.encode(), 1_000_000.0

    def good(issued_to: str, posted_from: str) -> bool:
        token = issue_token(secret, "support", now - 10, client_key(issued_to))
        return check_token(secret, spec, token, now, client_key(posted_from)) is None

    assert good("2001:db8:1:2::1", "2001:db8:1:2:ffff:ffff:ffff:ffff")  # same /64
    assert not good("2001:db8:1:2::1", "2001:db8:1:3::1")
    assert good("::ffff:198.51.100.4", "198.51.100.4")  # IPv4-mapped is the IPv4 host
    assert not good("198.51.100.4", "198.51.100.5")


def test_form_token__validity_is_shorter_than_a_day() -> None:
    spec = parse_form(DEFAULT_FORM | {"min_fill_seconds": 1}, "form[0]")
    assert spec.max_token_age_seconds == DEFAULT_TOKEN_AGE_SECONDS <= 2 * 3600
    token = issue_token(b"s" * 32, "support", 1_000_000.0)
    assert check_token(b"s" * 32, spec, token, 1_000_000.0 + 2 * 3600 + 1) is not None


def test_spent_tokens__bounded_without_letting_a_dropped_one_back() -> None:
    spent = SpentTokens(max_spent=3)
    for issued in (100, 101, 102):
        assert spent.spend(f"t{issued}", issued=issued, expires=issued + 50, now=110)
    assert not spent.spend("t101", issued=101, expires=151, now=111)  # a replay
    assert spent.spend("t103", issued=103, expires=153, now=111)      # drops t100
    assert len(spent) == 3
    assert not spent.spend("t100", issued=100, expires=150, now=112)  # dropped, still refused
    assert not spent.spend("u100", issued=100, expires=150, now=112)  # issued up to the floor
    assert spent.spend("t104", issued=104, expires=154, now=112)
    # Expired tokens leave the record (their age refuses them anyway).
    assert spent.spend("t200", issued=200, expires=260, now=200)
    assert len(spent) == 1
    spent.give_back("t200")
    assert spent.spend("t200", issued=200, expires=260, now=201)
