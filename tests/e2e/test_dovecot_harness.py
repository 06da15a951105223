"""The Dovecot harness (tests/dovecot.py) works: a real Dovecot 2.3 with TLS
(STARTTLS and implicit), password and OAuth2 (XOAUTH2, OAUTHBEARER) logins,
fast appends with the right UIDs, UIDVALIDITY changes, outages and IDLE.

Only the stdlib `imaplib` talks to it here; imaplib has no IDLE (before 3.14),
so that test sends the raw command over imaplib's socket.
"""

from __future__ import annotations

import imaplib
import json
import re
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime

import pytest

from tests.dovecot import Dovecot, TokenServer, xoauth2

USER = "support@example.test"
PASSWORD = "correct horse battery"


def _message(n: int, size: int = 0) -> bytes:
    head = (f"From: customer{n}@example.org\r\nTo: {USER}\r\n"
            f"Subject: message {n}\r\nMessage-ID: <m{n}@example.org>\r\n"
            "Date: Sat, 05 Dec 2026 10:00:00 +0000\r\n\r\n").encode()
    body = f"body of message {n}\r\n".encode()
    padding = b"x" * 76 + b"\r\n"
    while len(head) + len(body) < size:
        body += padding
    return head + body


def _refresh(tokens: TokenServer, refresh_token: str, *,
             secret: str | None = None) -> tuple[int, dict[str, object]]:
    form = urllib.parse.urlencode({
        "grant_type": "refresh_token", "refresh_token": refresh_token,
        "client_id": tokens.client_id,
        "client_secret": tokens.client_secret if secret is None else secret}).encode()
    try:
        with urllib.request.urlopen(tokens.token_url, data=form, timeout=5) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _xoauth2_login(dovecot: Dovecot, user: str, token: str) -> None:
    client = dovecot.connect(tls="starttls")
    try:
        # On failure Dovecot first sends a JSON error challenge, answered empty.
        calls = iter([xoauth2(user, token), b""])
        client.authenticate("XOAUTH2", lambda _: next(calls, None))
        status, _ = client.select("INBOX")
        assert status == "OK"
    finally:
        try:
            client.logout()
        except (OSError, imaplib.IMAP4.error):
            pass


def _pgrep(dovecot: Dovecot) -> str:
    """What `pgrep -af` finds of the instance (its name is in every process title)."""
    found = subprocess.run(["pgrep", "-af", dovecot.instance_name], capture_output=True,
                           text=True, timeout=10, check=False)
    return found.stdout.strip()


@pytest.fixture
def mailbox(dovecot: Dovecot) -> Dovecot:
    dovecot.add_user(USER, PASSWORD)
    return dovecot


def test_starttls_login_verifies_the_generated_ca(mailbox: Dovecot) -> None:
    client = mailbox.connect(tls="starttls")
    assert isinstance(client.sock, ssl.SSLSocket)
    assert client.sock.getpeercert() is not None  # verified against ca_file
    assert client.login(USER, PASSWORD)[0] == "OK"
    # imaplib keeps the pre-login list: ask again.
    capabilities = client.capability()[1][0].split()
    assert {b"IDLE", b"MOVE", b"UIDPLUS", b"LITERAL+", b"MULTIAPPEND"} <= set(capabilities)
    client.logout()

    # The same server with the system's trust store only: not trusted.
    plain = imaplib.IMAP4("127.0.0.1", mailbox.imap_port, timeout=10)
    try:
        with pytest.raises(ssl.SSLCertVerificationError):
            plain.starttls(ssl.create_default_context())
    finally:
        plain.sock.close()


def test_implicit_tls_login(mailbox: Dovecot) -> None:
    client = mailbox.connect(tls="implicit")
    assert client.sock.version() in ("TLSv1.2", "TLSv1.3")  # type: ignore[attr-defined]
    assert client.login(USER, PASSWORD)[0] == "OK"
    assert client.select("INBOX")[0] == "OK"
    client.logout()

    with pytest.raises(ssl.SSLCertVerificationError):
        imaplib.IMAP4_SSL("127.0.0.1", mailbox.imaps_port,
                          ssl_context=ssl.create_default_context(), timeout=10)


def test_wrong_password_and_unknown_user_are_refused(mailbox: Dovecot) -> None:
    for user, password in ((USER, "wrong"), ("nobody@example.test", PASSWORD)):
        client = mailbox.connect(tls="starttls")
        with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
            client.login(user, password)
        client.logout()
    # A password user added while running can log in at once (passwd-file reread).
    other = mailbox.add_user("billing@example.test")
    with mailbox.session("billing@example.test") as client:
        assert client.select("INBOX")[0] == "OK"
    assert other == mailbox.password("billing@example.test")


def test_xoauth2_with_a_token_from_the_token_server_then_revoked(mailbox: Dovecot) -> None:
    tokens = mailbox.tokens
    status, answer = _refresh(tokens, tokens.issue_refresh_token(USER))
    assert status == 200 and answer["token_type"] == "Bearer"
    access = str(answer["access_token"])

    _xoauth2_login(mailbox, USER, access)
    assert tokens.calls("tokeninfo") >= 1  # Dovecot really asked the provider

    # The token is good for USER only.
    with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
        _xoauth2_login(mailbox, "billing@example.test", access)
    # An unknown token.
    with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
        _xoauth2_login(mailbox, USER, "at-made-up")

    tokens.revoke_all()
    before = tokens.calls("tokeninfo")
    with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
        _xoauth2_login(mailbox, USER, access)
    assert tokens.calls("tokeninfo") > before  # refused by the provider, not a cache


def test_oauthbearer_and_expired_tokens(mailbox: Dovecot) -> None:
    tokens = mailbox.tokens
    access = tokens.issue_access_token(USER)
    client = mailbox.connect(tls="implicit")
    payload = f"n,a={USER},\x01auth=Bearer {access}\x01\x01".encode()
    calls = iter([payload])
    assert client.authenticate("OAUTHBEARER", lambda _: next(calls, None))[0] == "OK"
    client.logout()

    tokens.expire_all()
    with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
        _xoauth2_login(mailbox, USER, access)
    _xoauth2_login(mailbox, USER, tokens.issue_access_token(USER))  # a fresh one works


def test_token_endpoint_rotation_and_refusals(dovecot: Dovecot) -> None:
    tokens = dovecot.tokens
    first = tokens.issue_refresh_token(USER)
    assert _refresh(tokens, first, secret="wrong")[0] == 401

    tokens.rotate_refresh_tokens = True
    tokens.expires_in = 5
    status, answer = _refresh(tokens, first)
    assert status == 200 and answer["expires_in"] == 5
    second = str(answer["refresh_token"])
    assert second != first and tokens.valid_refresh_tokens() == [second]
    assert _refresh(tokens, first) == (400, {"error": "invalid_grant",
                                             "error_description": "refresh token not valid"})

    tokens.reject_grants = True
    assert _refresh(tokens, second)[1]["error"] == "invalid_grant"
    assert tokens.calls("token") == 4


def test_append_uids_flags_and_raw(mailbox: Dovecot) -> None:
    mailbox.create_folder(USER, "Support/Archive")
    mailbox.create_folder(USER, "Support/Archive")  # twice is fine
    first = mailbox.append(USER, "INBOX", _message(1), flags=("\\Seen", "$Forwarded"),
                           date=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
    more = mailbox.append_many(USER, "INBOX", [_message(2), _message(3)])
    assert [first, *more] == [1, 2, 3]
    assert mailbox.uids(USER, "INBOX") == [1, 2, 3]
    assert mailbox.uids(USER, "Support/Archive") == []
    assert mailbox.append(USER, "Support/Archive", _message(4)) == 1

    assert mailbox.flags(USER, "INBOX") == {1: {"\\Seen", "$Forwarded"}, 2: set(), 3: set()}
    assert mailbox.fetch_raw(USER, "INBOX")[2] == _message(2)
    assert mailbox.flags(USER, "INBOX")[2] == set()  # fetch_raw did not mark it \Seen

    with mailbox.session(USER) as client:
        client.select("INBOX", readonly=True)
        _, data = client.uid("FETCH", "1", "(INTERNALDATE)")
    assert b'"02-Jan-2026 03:04:05 +0000"' in data[0]


def test_bulk_append_is_fast(mailbox: Dovecot) -> None:
    messages = [_message(n, size=4096) for n in range(5000)]
    started = time.monotonic()
    uids = mailbox.append_many(USER, "INBOX", messages)
    elapsed = time.monotonic() - started
    assert uids == list(range(1, 5001))
    assert mailbox.uids(USER, "INBOX") == uids
    assert elapsed < 15, f"5,000 messages of 4 KB took {elapsed:.1f}s"
    print(f"5,000 x 4 KB appended in {elapsed:.2f}s")


def test_set_uidvalidity_is_seen_by_select(mailbox: Dovecot) -> None:
    mailbox.append(USER, "INBOX", _message(1))
    with mailbox.session(USER) as client:
        client.select("INBOX")
        before = int(client.response("UIDVALIDITY")[1][0])

    mailbox.set_uidvalidity(USER, "INBOX", before + 1000)

    with mailbox.session(USER) as client:
        client.select("INBOX")
        after = int(client.response("UIDVALIDITY")[1][0])
    assert after == before + 1000
    assert mailbox.uidvalidity(USER, "INBOX") == after


def test_stop_start_keeps_ports_and_messages_and_leaves_no_process(mailbox: Dovecot) -> None:
    mailbox.append_many(USER, "INBOX", [_message(n) for n in range(3)])
    ports = (mailbox.imap_port, mailbox.imaps_port)
    client = mailbox.connect()
    client.login(USER, PASSWORD)
    client.select("INBOX")

    mailbox.stop()
    assert not mailbox.running and mailbox.processes() == []
    assert _pgrep(mailbox) == ""
    # A client logged in during the outage is cut off; new ones are refused.
    with pytest.raises((imaplib.IMAP4.abort, OSError)):
        client.noop()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", mailbox.imap_port), timeout=2).close()

    mailbox.start()
    assert (mailbox.imap_port, mailbox.imaps_port) == ports
    assert mailbox.uids(USER, "INBOX") == [1, 2, 3]
    assert mailbox.fetch_raw(USER, "INBOX")[3] == _message(2)


def test_kill_then_start(mailbox: Dovecot) -> None:
    mailbox.append(USER, "INBOX", _message(1))
    assert mailbox.processes()
    assert _pgrep(mailbox) != ""
    mailbox.kill()
    assert mailbox.processes() == [] and _pgrep(mailbox) == ""
    mailbox.start()
    assert mailbox.uids(USER, "INBOX") == [1]


def test_idle_sees_a_new_message(mailbox: Dovecot) -> None:
    client = mailbox.connect()
    client.login(USER, PASSWORD)
    client.select("INBOX")
    client.sock.settimeout(10)  # every read below is bounded
    client.send(b"I1 IDLE\r\n")
    assert client.readline().startswith(b"+ ")

    mailbox.append(USER, "INBOX", _message(1))
    deadline = time.monotonic() + 10
    seen = b""
    while time.monotonic() < deadline and not re.search(rb"\* 1 EXISTS", seen):
        seen += client.readline()
    assert b"* 1 EXISTS" in seen

    client.send(b"DONE\r\n")
    while not (line := client.readline()).startswith(b"I1 "):
        assert line, "connection closed while ending IDLE"
    assert line.startswith(b"I1 OK")
    client.logout()


def test_move_is_available(mailbox: Dovecot) -> None:
    mailbox.create_folder(USER, "Done")
    mailbox.append_many(USER, "INBOX", [_message(1), _message(2)])
    with mailbox.session(USER) as client:
        client.select("INBOX")
        status, _ = client.uid("MOVE", "1", "Done")
        assert status == "OK"
    assert mailbox.uids(USER, "INBOX") == [2]
    assert mailbox.uids(USER, "Done") == [1]
