"""The status page's pure pieces: content negotiation, the page token, what
the customer sees of a request's messages, and when they may reopen it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp.test_utils import make_mocked_request

from domain.lifecycle import Status
from gateway.http.status_guard import PAGE_TOKEN_SECONDS, check_page_token, issue_page_token
from gateway.http.status_page import wants_html
from storage.customer_actions import Done, may_reopen, may_resolve
from storage.status_view import Author, public_messages

SECRET = b"k" * 32
NOW = 1_800_000_000.0
AT = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(("accept", "html"), [
    ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", True),
    ("application/xhtml+xml", True),
    ("application/json", False),
    ("*/*", False),
    ("", False),
    ("text/html;q=0.5, application/json", False),
    ("application/json;q=0.5, text/html", True),
    ("text/html;q=0", False),
    ("text/html;q=zero", False),
    ("text/plain, " * 5000 + "text/html", False),  # read no further than its bound
])
def test_negotiation__html_only_when_asked_before_json(accept: str, html: bool) -> None:
    request = make_mocked_request("GET", "/v1/status/x", headers={"Accept": accept})
    assert wants_html(request) is html


def test_page_token__bound_to_its_status_link_and_its_age() -> None:
    token = issue_page_token(SECRET, "link-a", NOW, nonce="n1")
    assert check_page_token(SECRET, "link-a", token, NOW + 10)
    assert not check_page_token(SECRET, "link-b", token, NOW + 10)  # another request's page
    assert not check_page_token(b"x" * 32, "link-a", token, NOW + 10)  # another key
    assert not check_page_token(SECRET, "link-a", token, NOW + PAGE_TOKEN_SECONDS + 1)
    assert not check_page_token(SECRET, "link-a", token, NOW - 60)  # from the future
    issued, nonce, mac = token.split(".")
    for forged in ("", None, f"{issued}.{nonce}", f"0{issued}.{nonce}.{mac}",
                   f"{int(issued) + 1}.{nonce}.{mac}", f"{issued}.n2.{mac}",
                   f"{issued}.{nonce}.{mac[:-1]}A", f"{issued}..{mac}", "\ud800.x.y",
                   token + "." + mac, "9" * 300):
        assert not check_page_token(SECRET, "link-a", forged, NOW + 10), forged


def _row(n: int, direction: str, sender: str | None, *, name: str | None = None,
         cc: tuple[str, ...] = (), flags: dict[str, Any] | None = None) -> Any:
    return SimpleNamespace(
        id=n, direction=direction, from_address=sender, from_name=name,
        to=[{"name": "", "address": "support@localhost"}],
        cc=[{"name": "", "address": a} for a in cc], subject="s", new_text=f"text {n}",
        text=f"text {n}", created_at=AT, flags=flags or {})


def test_public_messages__people_by_role_never_automatic_or_strangers() -> None:
    rows = [
        _row(1, "in", "ann@example.com", name="Ann", cc=["bob@example.com"]),
        _row(2, "out", "support@localhost", name="Support",
             flags={"kind": "acknowledgement", "auto_submitted": "auto-replied"}),
        _row(3, "out", "support@localhost", name="Sam (Support)", flags={"kind": "reply"}),
        _row(4, "in", "bob@example.com", name="Bob"),
        _row(5, "in", "ann@example.com", flags={"auto_reply": True}),
        _row(6, "in", "mailer-daemon@mx.example", flags={"bounce": {"status": "5.1.1"}}),
        _row(7, "in", "mallory@evil.example", name="Ann"),
        _row(8, "in", None, flags={"erased": True}),
        _row(9, "out", "support@localhost", flags={"kind": "access_link"}),
        _row(10, "in", "ANN@example.com "),
    ]
    shown = public_messages("ann@example.com", rows)
    assert [(m.message_row, m.author, m.name) for m in shown] == [
        (1, Author.YOU, None), (3, Author.US, "Sam (Support)"),
        (4, Author.COPIED, "Bob"), (10, Author.YOU, None)]
    assert shown[2].address == "bob@example.com"  # kept for the JSON, never the page


def test_customer_actions__what_the_lifecycle_allows() -> None:
    assert [s for s in Status if may_resolve(s)] == [
        Status.NEW, Status.OPEN, Status.WAITING, Status.REOPENED]
    now = AT + timedelta(days=30)
    assert may_reopen(Status.RESOLVED, done_at=now - timedelta(days=13), now=now,
                      reopen_days=14) == Done.OK
    assert may_reopen(Status.CLOSED, done_at=now - timedelta(days=15), now=now,
                      reopen_days=14) == Done.TOO_LATE
    assert may_reopen(Status.RESOLVED, done_at=now, now=now, reopen_days=0) == Done.TOO_LATE
    for status in (Status.OPEN, Status.MERGED, Status.QUARANTINED):
        assert may_reopen(status, done_at=now, now=now, reopen_days=14) == Done.NOT_NOW
