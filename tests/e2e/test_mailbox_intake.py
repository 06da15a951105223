"""Mailbox intake against a real Dovecot (tests/dovecot.py): the whole gateway
fetches, stores exactly once, routes, and changes the mailbox only after the
commit; failures show in the health check and are retried."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.app import Gateway, start, stop
from gateway.health_report import build_report
from gateway.mailbox import fetcher as fetcher_module
from gateway.pipeline import worker as worker_module
from storage import mailboxes as store
from storage.engine import utcnow
from storage.models import (
    inbox_items,
    mailbox_folders,
    mailbox_messages,
    messages,
    outbox,
    requests,
)
from storage.processing import dead_items
from tests.dovecot import Dovecot
from tests.e2e.test_cli import intake
from tests.helpers import make_config, wait_for

USER = "support@example.test"
PASSWORD = "correct horse"


def mail(n: int, *, subject: str | None = None, date: str = "Fri, 04 Dec 2026 10:00:00 +0000",
         body: str = "", sender: str | None = None) -> bytes:
    who = sender or f"customer{n}@example.org"
    return (f"From: Customer {n} <{who}>\r\nTo: {USER}\r\n"
            f"Subject: {subject or f'Printer {n} is broken'}\r\n"
            f"Message-ID: <m{n}.{time.monotonic_ns()}@example.org>\r\nDate: {date}\r\n"
            f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
            f"{body or f'Hello, printer {n} does not print.'}\r\n").encode()


def mailbox(dovecot: Dovecot, **overrides: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": "support", "host": "localhost", "port": dovecot.imap_port, "tls": "starttls",
        "ca_file": str(dovecot.ca_file), "user": USER, "password_env": "TEST_IMAP_PASSWORD",
        "after": "move", "move_to": "Processed", "addresses": ["support@localhost"],
        "poll_seconds": 30, "lease_seconds": 6, "backoff_initial_seconds": 0.1,
        "backoff_max_seconds": 0.5, "timeout_seconds": 10}
    return entry | overrides


@pytest.fixture
def imap(dovecot: Dovecot, monkeypatch: pytest.MonkeyPatch) -> Dovecot:
    dovecot.add_user(USER, PASSWORD)
    monkeypatch.setenv("TEST_IMAP_PASSWORD", PASSWORD)
    return dovecot


async def _gateway(db_url: str, *entries: dict[str, Any], **sections: Any) -> Gateway:
    return await start(make_config(db_url, mailbox=list(entries), **sections))


@pytest.fixture
async def running_for() -> AsyncIterator[Any]:
    started: list[Gateway] = []

    async def run(db_url: str, *entries: dict[str, Any], **sections: Any) -> Gateway:
        gateway = await _gateway(db_url, *entries, **sections)
        started.append(gateway)
        return gateway

    yield run
    for gateway in started:
        if gateway.supervisor.stopping:
            continue
        await stop(gateway, grace=1.0)


async def _count(engine: AsyncEngine, table: Any, *where: Any) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(table)
                                       .where(*where))).scalar_one())


async def _requests_made(engine: AsyncEngine, n: int) -> bool:
    return await _count(engine, requests) >= n


async def _state(engine: AsyncEngine) -> store.MailboxState | None:
    found = await store.states(engine, ["support"])
    return found[0] if found else None


async def test_fetch__200_messages_each_one_request_byte_identical(
        imap: Dovecot, db_url: str, engine: AsyncEngine, running_for: Any) -> None:
    sent = [mail(n) for n in range(200)]
    imap.append_many(USER, "INBOX", sent)
    on_server = imap.fetch_raw(USER, "INBOX")
    await running_for(db_url, mailbox(imap))
    await wait_for(lambda: _requests_made(engine, 200), timeout=60)
    await asyncio.sleep(0.3)  # nothing more may come
    async with engine.connect() as conn:
        raws = (await conn.execute(select(inbox_items.c.raw, inbox_items.c.channel,
                                          inbox_items.c.meta))).all()
        routed = (await conn.execute(select(requests.c.queue))).scalars().all()
    assert sorted(bytes(r.raw) for r in raws) == sorted(on_server.values()) == sorted(sent)
    assert {r.channel for r in raws} == {"imap"}
    assert {tuple(r.meta["rcpt_tos"]) for r in raws} == {("support@localhost",)}
    assert len(routed) == 200
    assert await _count(engine, messages, messages.c.direction == "in") == 200
    # Moved only once stored: the folder is empty, the 200 are in Processed.
    await wait_for(lambda: _async(not imap.uids(USER, "INBOX")), timeout=10)
    assert len(imap.uids(USER, "Processed")) == 200
    state = await _state(engine)
    assert state is not None and state.connected and state.fetched == 200
    assert state.last_error is None and state.behind == 0


async def _async(value: Any) -> Any:
    return value


@pytest.mark.parametrize("after", ["keep", "delete"])
async def test_after_fetch__keep_marks_seen_and_delete_expunges(
        imap: Dovecot, db_url: str, engine: AsyncEngine, running_for: Any, after: str) -> None:
    # One already read by a person in a mail client: UIDs, not \Seen, say what is new.
    imap.append_many(USER, "INBOX", [mail(n) for n in range(9)]
                     + [(mail(9), ("\\Seen",), None)])
    await running_for(db_url, mailbox(imap, after=after, move_to=None))
    await wait_for(lambda: _requests_made(engine, 10), timeout=30)
    if after == "keep":
        await wait_for(lambda: _async(all("\\Seen" in f for f in imap.flags(
            USER, "INBOX").values())), timeout=10)
        assert len(imap.uids(USER, "INBOX")) == 10
        # Kept mail is not fetched again: one more arrives, one more request.
        imap.append(USER, "INBOX", mail(10))
        await wait_for(lambda: _requests_made(engine, 11), timeout=10)
        await asyncio.sleep(0.5)
        assert await _count(engine, requests) == 11
    else:
        await wait_for(lambda: _async(not imap.uids(USER, "INBOX")), timeout=10)
    assert await _count(engine, mailbox_messages, mailbox_messages.c.state == "owed") == 0


async def test_owed_action_left_by_another_holder__done_within_a_lease_on_a_live_connection(
        imap: Dovecot, db_url: str, engine: AsyncEngine, running_for: Any) -> None:
    """A connection looks for owed after-fetch actions once per lease, not at
    every pass: one left by another process that held the mailbox meanwhile
    (here written as it would leave it: stored, its record owed, the folder's
    position past it) is still done without a new connection."""
    imap.append_many(USER, "INBOX", [mail(0), mail(1)])
    await running_for(db_url, mailbox(imap, after="keep", move_to=None, idle=False,
                                      poll_seconds=0.5, lease_seconds=3))
    await wait_for(lambda: _async(all("\\Seen" in f for f in imap.flags(
        USER, "INBOX").values()) and len(imap.uids(USER, "INBOX")) == 2), timeout=30)
    async with engine.begin() as conn:
        uidvalidity = (await conn.execute(select(mailbox_folders.c.uidvalidity))).scalar_one()
        # The next UID is 3: the other holder stored it and moved the position on.
        await conn.execute(mailbox_folders.update().values(next_uid=4))
        await conn.execute(mailbox_messages.insert().values(
            mailbox="support", folder="INBOX", uidvalidity=uidvalidity, uid=3, item_id=None,
            message_id=None, raw_sha256="0" * 64, size=1, state="owed", stored_at=utcnow()))
    imap.append(USER, "INBOX", mail(2))
    assert max(imap.uids(USER, "INBOX")) == 3
    await wait_for(lambda: _async("\\Seen" in imap.flags(USER, "INBOX")[3]), timeout=15)

    async def nothing_owed() -> bool:
        return await _count(engine, mailbox_messages, mailbox_messages.c.state == "owed") == 0

    await wait_for(nothing_owed, timeout=5)
    assert await _count(engine, inbox_items) == 2  # not fetched by this process


async def test_idle__new_mail_stored_within_two_seconds(
        imap: Dovecot, db_url: str, engine: AsyncEngine, running_for: Any) -> None:
    await running_for(db_url, mailbox(imap, poll_seconds=300))
    await wait_for(lambda: _connected(engine), timeout=10)
    await asyncio.sleep(0.5)  # in IDLE now (a poll would take 300 s)
    for n in range(3):
        appended = time.monotonic()
        imap.append(USER, "INBOX", mail(n))
        await wait_for(lambda n=n: _stored(engine, n + 1), timeout=5, interval=0.02)
        took = time.monotonic() - appended
        print(f"\n[{engine.dialect.name}] IDLE: stored {took:.2f} s after APPEND")
        assert took < 2.0


async def _connected(engine: AsyncEngine) -> bool:
    state = await _state(engine)
    return state is not None and state.connected


async def _stored(engine: AsyncEngine, n: int) -> bool:
    return await _count(engine, inbox_items) >= n


async def test_uidvalidity_change__read_again_without_new_requests(
        imap: Dovecot, db_url: str, engine: AsyncEngine, running_for: Any) -> None:
    imap.append_many(USER, "INBOX", [mail(n) for n in range(10)])
    gateway = await running_for(db_url, mailbox(imap, after="keep", move_to=None))
    await wait_for(lambda: _requests_made(engine, 10), timeout=30)
    await stop(gateway, grace=1.0)
    before = imap.uidvalidity(USER, "INBOX")
    imap.set_uidvalidity(USER, "INBOX", before + 1000)
    imap.append(USER, "INBOX", mail(10))
    await running_for(db_url, mailbox(imap, after="keep", move_to=None))
    await wait_for(lambda: _requests_made(engine, 11), timeout=30)
    await wait_for(lambda: _async_count_eq(engine, mailbox_messages, 21), timeout=10)
    await asyncio.sleep(0.5)
    assert await _count(engine, requests) == 11
    assert await _count(engine, inbox_items) == 11
    # The ten read again are known by their bytes: recorded, nothing made.
    assert await _count(engine, mailbox_messages, mailbox_messages.c.item_id.is_(None)) == 10


async def _async_count_eq(engine: AsyncEngine, table: Any, n: int) -> bool:
    return await _count(engine, table) == n


async def test_outage__failing_in_health_then_recovers(
        imap: Dovecot, db_url: str, engine: AsyncEngine, running_for: Any) -> None:
    gateway = await running_for(db_url, mailbox(imap, poll_seconds=1))
    await wait_for(lambda: _connected(engine), timeout=10)
    imap.stop()
    await wait_for(lambda: _failing(engine), timeout=15)
    report = await build_report(config=gateway.config, engine=engine)
    [issue] = [i for i in report.issues if i.code == "mailbox_failing"]
    assert "support" in issue.message and int(report.severity) == 2
    imap.start()
    imap.append(USER, "INBOX", mail(1))
    await wait_for(lambda: _requests_made(engine, 1), timeout=20)
    await wait_for(lambda: _not_failing(engine), timeout=10)
    report = await build_report(config=gateway.config, engine=engine)
    assert not [i for i in report.issues if i.code == "mailbox_failing"]


async def _failing(engine: AsyncEngine) -> bool:
    state = await _state(engine)
    return state is not None and state.failing_since is not None and not state.connected


async def _not_failing(engine: AsyncEngine) -> bool:
    state = await _state(engine)
    return state is not None and state.failing_since is None and state.connected


async def test_wrong_password__visible_and_retried(
        imap: Dovecot, db_url: str, engine: AsyncEngine, running_for: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_IMAP_PASSWORD", "wrong")
    imap.append(USER, "INBOX", mail(1))
    gateway = await running_for(db_url, mailbox(imap))
    await wait_for(lambda: _failing(engine), timeout=10)
    state = await _state(engine)
    assert state is not None and "login refused" in (state.last_error or "")
    report = await build_report(config=gateway.config, engine=engine)
    assert any(i.code == "mailbox_failing" and "login refused" in i.message
               for i in report.issues)
    monkeypatch.setenv("TEST_IMAP_PASSWORD", PASSWORD)  # the operator fixes it
    await wait_for(lambda: _requests_made(engine, 1), timeout=15)
    await wait_for(lambda: _not_failing(engine), timeout=10)


def oauth_mailbox(imap: Dovecot, monkeypatch: pytest.MonkeyPatch, mechanism: str,
                  **overrides: Any) -> dict[str, Any]:
    refresh = imap.tokens.issue_refresh_token(USER)
    monkeypatch.setenv("TEST_IMAP_REFRESH", refresh)
    monkeypatch.setenv("TEST_IMAP_SECRET", imap.tokens.client_secret)
    entry = mailbox(imap, password_env=None, oauth2={
        "mechanism": mechanism, "token_url": imap.tokens.token_url,
        "client_id": imap.tokens.client_id, "client_secret_env": "TEST_IMAP_SECRET",
        "refresh_token_env": "TEST_IMAP_REFRESH"})
    return entry | overrides


@pytest.mark.parametrize("mechanism", ["xoauth2", "oauthbearer"])
async def test_oauth__token_validated_by_dovecot_and_rotated_token_kept(
        dovecot: Dovecot, db_url: str, engine: AsyncEngine, running_for: Any,
        monkeypatch: pytest.MonkeyPatch, mechanism: str) -> None:
    dovecot.tokens.rotate_refresh_tokens = True
    dovecot.append(USER, "INBOX", mail(1))
    gateway = await running_for(db_url, oauth_mailbox(dovecot, monkeypatch, mechanism))
    await wait_for(lambda: _requests_made(engine, 1), timeout=15)
    assert dovecot.tokens.calls("token") == 1
    assert dovecot.tokens.calls("tokeninfo") + dovecot.tokens.calls("introspect") >= 1
    stored, _ = await store.refresh_token(engine, "support")
    assert stored is not None and stored in dovecot.tokens.valid_refresh_tokens()
    # The access token expires early and the connection drops: the next login is
    # refused, a new token is fetched with the rotated refresh token, and it goes on.
    await stop(gateway, grace=1.0)
    dovecot.tokens.expire_all()
    dovecot.append(USER, "INBOX", mail(2))
    await running_for(db_url, oauth_mailbox(dovecot, monkeypatch, mechanism))
    await wait_for(lambda: _requests_made(engine, 2), timeout=15)
    assert dovecot.tokens.calls("token") == 2
    assert (await _state(engine)).failing_since is None  # type: ignore[union-attr]


async def test_oauth__refused_refresh_token_visible_at_once_and_retried(
        dovecot: Dovecot, db_url: str, engine: AsyncEngine, running_for: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    dovecot.tokens.reject_grants = True  # consent withdrawn, or the token expired
    dovecot.append(USER, "INBOX", mail(1))
    gateway = await running_for(db_url, oauth_mailbox(dovecot, monkeypatch, "xoauth2"))
    await wait_for(lambda: _failing(engine), timeout=10)
    report = await build_report(config=gateway.config, engine=engine)
    assert any(i.code == "mailbox_failing" and "invalid_grant" in i.message
               for i in report.issues)
    calls = dovecot.tokens.calls("token")
    await wait_for(lambda: _async(dovecot.tokens.calls("token") > calls), timeout=10)  # retried
    dovecot.tokens.reject_grants = False
    await wait_for(lambda: _requests_made(engine, 1), timeout=15)
    await wait_for(lambda: _not_failing(engine), timeout=10)


async def test_archive__old_mail_closed_at_its_date_without_acknowledgements(
        imap: Dovecot, db_url: str, engine: AsyncEngine, running_for: Any) -> None:
    dates = ["Mon, 02 Mar 2020 09:15:00 +0000", "Tue, 03 Mar 2020 11:00:00 +0100"]
    imap.append_many(USER, "INBOX", [mail(n, date=d) for n, d in enumerate(dates)])
    await running_for(db_url, mailbox(imap, mode="archive", after="keep", move_to=None))
    await wait_for(lambda: _requests_made(engine, 2), timeout=20)
    await asyncio.sleep(0.5)
    async with engine.connect() as conn:
        rows = (await conn.execute(select(requests.c.status, requests.c.created_at)
                                   .order_by(requests.c.created_at))).all()
    assert [r.status for r in rows] in (["closed", "closed"], ["resolved", "resolved"])
    created = [r.created_at.replace(tzinfo=r.created_at.tzinfo or UTC) for r in rows]
    assert created == [datetime(2020, 3, 2, 9, 15, tzinfo=UTC),
                       datetime(2020, 3, 3, 10, 0, tzinfo=UTC)]
    assert await _count(engine, outbox) == 0


async def test_too_large__headers_recorded_left_on_server_never_fetched_again(
        imap: Dovecot, db_url: str, engine: AsyncEngine, running_for: Any) -> None:
    big = mail(1, subject="Huge scan attached", body="x" * 300_000)  # the limit is 200,000
    imap.append_many(USER, "INBOX", [big, mail(2)])
    gateway = await running_for(db_url, mailbox(imap))
    await wait_for(lambda: _requests_made(engine, 2), timeout=20)
    async with engine.connect() as conn:
        [item] = [r for r in (await conn.execute(select(inbox_items.c.raw,
                                                        inbox_items.c.meta))).all()
                  if r.meta.get("too_large")]
        subjects = set((await conn.execute(select(messages.c.subject))).scalars())
    assert item.meta["too_large"] == len(big)
    assert len(item.raw) < 10_000 and b"Huge scan attached" in bytes(item.raw)
    assert "Huge scan attached" in subjects
    # Left in the folder for a person; the small one was moved.
    await wait_for(lambda: _async(len(imap.uids(USER, "INBOX")) == 1), timeout=10)
    await stop(gateway, grace=1.0)
    await running_for(db_url, mailbox(imap))
    await wait_for(lambda: _connected(engine), timeout=10)
    await asyncio.sleep(1.0)
    assert await _count(engine, inbox_items) == 2


async def test_poison__stored_raw_dead_lettered_once_never_fetched_again(
        imap: Dovecot, db_url: str, engine: AsyncEngine, running_for: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    original = worker_module.BUILDERS["imap"]

    def choking(item: Any, *args: Any) -> Any:
        if b"poison" in item.raw:
            raise ValueError("the parser chokes on this one")
        return original(item, *args)

    monkeypatch.setitem(worker_module.BUILDERS, "imap", choking)
    poison = mail(1, subject="poison")
    imap.append_many(USER, "INBOX", [poison, mail(2)])
    gateway = await running_for(db_url, mailbox(imap, poll_seconds=0.5, idle=False))
    await wait_for(lambda: _requests_made(engine, 1), timeout=20)
    await wait_for(lambda: _dead(engine), timeout=20)
    [dead] = await dead_items(engine)
    async with engine.connect() as conn:
        raw = (await conn.execute(select(inbox_items.c.raw).where(
            inbox_items.c.id == dead["id"]))).scalar_one()
    assert bytes(raw) == poison
    passes = gateway.mailboxes[0].passes
    await wait_for(lambda: _async(gateway.mailboxes[0].passes >= passes + 3), timeout=10)
    assert await _count(engine, inbox_items) == 2  # polled again and again: never refetched


async def _dead(engine: AsyncEngine) -> bool:
    return bool(await dead_items(engine))


async def test_mailboxes_test_cli__checks_login_and_folders_without_fetching(
        imap: Dovecot, db_url: str, engine: AsyncEngine, tmp_path: Path) -> None:
    imap.append(USER, "INBOX", mail(1))
    path = tmp_path / "intake.toml"

    def write(**overrides: Any) -> Path:
        entry = mailbox(imap, **overrides)
        lines = ["[database]", f'url = "{db_url}"', "[[mailbox]]"]
        lines += [f"{key} = {json.dumps(value)}" for key, value in entry.items()]
        path.write_text("\n".join(lines) + "\n")
        return path

    good = await asyncio.to_thread(intake, "mailboxes", "test", "support", config=write())
    assert good.returncode == 0, good.stdout + good.stderr
    assert "logged in" in good.stdout and "folder 'INBOX': 1 messages" in good.stdout
    assert imap.uids(USER, "INBOX") == [1]  # nothing fetched, nothing moved
    assert await _count(engine, inbox_items) == 0
    wrong = await asyncio.to_thread(intake, "mailboxes", "test", "support",
                                    config=write(folders=["INBOX", "Nope"]))
    assert wrong.returncode == 1 and "FAIL  folder 'Nope'" in wrong.stdout
    refused = await asyncio.to_thread(intake, "mailboxes", "test", "support", config=write(),
                                      TEST_IMAP_PASSWORD="wrong")
    assert refused.returncode == 1 and "login refused" in refused.stdout


async def test_same_bytes_twice_in_one_fetch__one_request(
        imap: Dovecot, db_url: str, engine: AsyncEngine, running_for: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The same message 200 UIDs apart, in two batches committing at once on
    # PostgreSQL: one request, one record without an item, and no wait for
    # a lock to its statement timeout (10 s).
    monkeypatch.setattr(fetcher_module, "BATCH_MESSAGES", 100)
    sent = [mail(n) for n in range(250)]
    sent[200] = sent[0]
    imap.append_many(USER, "INBOX", sent)
    started = time.monotonic()
    await running_for(db_url, mailbox(imap))
    await wait_for(lambda: _async_count_eq(engine, mailbox_messages, 250), timeout=30)
    assert time.monotonic() - started < 8  # no lock wait to its timeout (10 s)
    await wait_for(lambda: _requests_made(engine, 249), timeout=30)
    await asyncio.sleep(0.3)
    assert await _count(engine, requests) == 249
    assert await _count(engine, mailbox_messages, mailbox_messages.c.item_id.is_(None)) == 1
    state = await _state(engine)
    assert state is not None and state.failing_since is None
    await wait_for(lambda: _async(not imap.uids(USER, "INBOX")), timeout=10)


async def test_capped_passes__next_one_goes_on_while_the_last_commits_each_message_once(
        imap: Dovecot, db_url: str, engine: AsyncEngine, running_for: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A first fetch capped at `max_per_run`: each pass hands its batches still
    committing to the next one, which fetches on from where they end. Every
    message is one request and moved once stored; the same bytes in two
    passes are one request; the position and `behind` end right."""
    carried: list[int] = []
    real = fetcher_module._Carried

    def counted(*args: Any) -> Any:
        made = real(*args)
        carried.append(made.rest[0])
        return made

    monkeypatch.setattr(fetcher_module, "BATCH_MESSAGES", 40)
    monkeypatch.setattr(fetcher_module, "_Carried", counted)
    sent = [mail(n) for n in range(600)]
    sent[450] = sent[30]  # passes apart
    imap.append_many(USER, "INBOX", sent)
    await running_for(db_url, mailbox(imap, max_per_run=130))
    await wait_for(lambda: _async_count_eq(engine, mailbox_messages, 600), timeout=60)
    await wait_for(lambda: _requests_made(engine, 599), timeout=60)
    await wait_for(lambda: _async(not imap.uids(USER, "INBOX")), timeout=10)
    await asyncio.sleep(0.3)
    assert carried, "no pass went on while the one before was committing"
    assert await _count(engine, requests) == 599
    assert await _count(engine, mailbox_messages, mailbox_messages.c.item_id.is_(None)) == 1
    assert sorted(imap.fetch_raw(USER, "Processed").values()) == sorted(sent)
    async with engine.connect() as conn:
        next_uid = (await conn.execute(select(mailbox_folders.c.next_uid))).scalar_one()
    assert next_uid == 601

    async def settled() -> bool:
        state = await _state(engine)
        owed = await _count(engine, mailbox_messages, mailbox_messages.c.state == "owed")
        return state is not None and state.behind == 0 and state.connected and owed == 0

    await wait_for(settled, timeout=10)
