"""Threat: the IMAP server (or whoever answers on its port) is hostile or
broken. A message bigger than asked for is cut off, not read into memory; a
refused token does not hang the login until the timeout; lines injected after
the STARTTLS answer end the session; a message the server lists but will not
give is an error, reported and retried with backoff, never skipped over and
never a loop without pause."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from gateway.config.loader import build_config
from gateway.config.sections import MailboxSection
from gateway.mailbox.client import AuthFailed, ImapError, Session

SEEN: Counter[bytes] = Counter()


async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 on_fetch: Callable[[bytes, asyncio.StreamWriter], None]) -> None:
    writer.write(b"* OK [CAPABILITY IMAP4rev1 AUTH=XOAUTH2 SASL-IR] hostile ready\r\n")
    try:
        while line := await reader.readline():
            tag, _, rest = line.rstrip(b"\r\n").partition(b" ")
            command = rest.split(b" ", 1)[0].upper()
            SEEN[b"UID SEARCH" if b"SEARCH" in rest.upper() else command] += 1
            if command == b"CAPABILITY":
                writer.write(b"* CAPABILITY IMAP4rev1 STARTTLS AUTH=XOAUTH2 SASL-IR IDLE\r\n"
                             + tag + b" OK done\r\n")
            elif command == b"STARTTLS":
                # The answer, and in the same packet a line meant to be read as
                # if it came under TLS.
                writer.write(tag + b" OK Begin TLS\r\n* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n")
            elif b"SEARCH" in rest.upper():
                writer.write(b"* SEARCH 1\r\n" + tag + b" OK searched\r\n")
            elif command == b"UID" and b"RFC822.SIZE" in rest.upper():
                writer.write(b'* 1 FETCH (UID 1 RFC822.SIZE 40 INTERNALDATE '
                             b'"05-Dec-2026 10:00:00 +0000")\r\n' + tag + b" OK sized\r\n")
            elif command == b"LOGIN":
                writer.write(tag + b" OK logged in\r\n")
            elif command == b"AUTHENTICATE":
                challenge = base64.b64encode(b'{"status":"invalid_token"}')
                writer.write(b"+ " + challenge + b"\r\n")
                await writer.drain()
                await reader.readline()  # the client's dummy answer
                writer.write(tag + b" NO [AUTHENTICATIONFAILED] token refused\r\n")
            elif command == b"SELECT":
                writer.write(b"* 1 EXISTS\r\n* OK [UIDVALIDITY 7] ok\r\n* OK [UIDNEXT 2] ok\r\n"
                             + tag + b" OK [READ-WRITE] selected\r\n")
            elif command == b"UID" and b"FETCH" in rest.upper():
                on_fetch(tag, writer)
            elif command == b"LOGOUT":
                writer.write(b"* BYE\r\n" + tag + b" OK bye\r\n")
                break
            else:
                writer.write(tag + b" BAD what\r\n")
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


@pytest.fixture
async def hostile() -> AsyncIterator[Callable[..., object]]:
    servers: list[asyncio.Server] = []

    async def start(on_fetch: Callable[[bytes, asyncio.StreamWriter], None]) -> int:
        server = await asyncio.start_server(
            lambda r, w: _serve(r, w, on_fetch), "127.0.0.1", 0)
        servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    yield start
    for server in servers:
        server.close()


def _section(port: int, **extra: object) -> MailboxSection:
    entry = {"name": "h", "host": "127.0.0.1", "port": port, "tls": "none", "user": "u@x.test",
             "password_env": "PW", "after": "keep", "timeout_seconds": 5} | extra
    return build_config({"mailbox": [entry]}, "<test>", {}).mailbox[0]


async def test_fetch__a_message_bigger_than_asked_for_is_cut_off(hostile: object) -> None:
    def flood(tag: bytes, writer: asyncio.StreamWriter) -> None:
        # Says RFC822.SIZE was small, then announces 2 GB and starts sending.
        writer.write(b"* 1 FETCH (UID 1 BODY[] {2000000000}\r\n" + b"x" * 65536)

    port = await hostile(flood)  # type: ignore[operator]
    session = await Session.open(_section(port), password="pw")
    try:
        await session.select("INBOX")
        started = time.monotonic()
        with pytest.raises(ImapError, match="2000000000 bytes where at most 100000"):
            await session.bodies([1], largest=100_000)
        assert time.monotonic() - started < 2.0  # at once, not at the timeout
    finally:
        await session.close()


async def test_login__a_refused_token_fails_at_once_with_the_reason(hostile: object) -> None:
    port = await hostile(lambda tag, writer: None)  # type: ignore[operator]
    section = _section(port, password_env=None, oauth2={
        "token_url": "http://127.0.0.1:9/token", "client_id": "c", "refresh_token_env": "R"})
    started = time.monotonic()
    with pytest.raises(AuthFailed) as refused:
        await Session.open(section, token="expired-token")
    assert time.monotonic() - started < 2.0  # the challenge was answered, not waited out
    assert "token refused" in str(refused.value)
    assert re.search(r"invalid_token", str(refused.value))


async def test_starttls__lines_sent_in_clear_after_the_answer_end_the_session(
        hostile: object) -> None:
    port = await hostile(lambda tag, writer: None)  # type: ignore[operator]
    with pytest.raises(ImapError, match="more after its STARTTLS answer"):
        await Session.open(_section(port, tls="starttls"), password="pw")


async def test_fetch__a_message_listed_but_never_given_is_an_error_with_backoff(
        hostile: object, tmp_path: Path, sqlite_template: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    from gateway.mailbox.fetcher import MailboxFetcher
    from storage import mailboxes as store
    from storage.engine import create_engine

    def nothing(tag: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(tag + b" OK Fetch completed (no message)\r\n")

    port = await hostile(nothing)  # type: ignore[operator]
    shutil.copyfile(sqlite_template, tmp_path / "intake.db")
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'intake.db'}")
    monkeypatch.setenv("PW", "pw")
    config = build_config({"mailbox": [{
        "name": "h", "host": "127.0.0.1", "port": port, "tls": "none", "user": "u@x.test",
        "password_env": "PW", "after": "keep", "backoff_initial_seconds": 0.2,
        "backoff_max_seconds": 0.4, "idle": False, "poll_seconds": 0.05}]}, "<test>", {})
    fetcher = MailboxFetcher(engine=engine, config=config, section=config.mailbox[0])
    SEEN.clear()
    task = asyncio.create_task(fetcher.run())
    try:
        await asyncio.sleep(2.0)
        [state] = await store.states(engine, ["h"])
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await engine.dispose()
    assert state.failing_since is not None
    assert "UID 1" in (state.last_error or "") and "will not give it" in (state.last_error or "")
    assert fetcher.stored == 0
    # Retried with backoff (0.2 s, doubling to 0.4 s): a handful of passes, not thousands.
    assert 2 <= SEEN[b"UID SEARCH"] <= 40, SEEN
