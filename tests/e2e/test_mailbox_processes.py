"""Mailbox intake by real `intake serve` processes against a real Dovecot:
SIGKILL in the middle of a fetch, and two gateways sharing one mailbox."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from storage.models import inbox_items, mailbox_messages, messages, requests
from tests.dovecot import Dovecot
from tests.helpers import wait_for
from tests.process import ServeProcess, write_config

USER = "support@example.test"
PASSWORD = "a long pass phrase"


def mail(n: int) -> bytes:
    return (f"From: Customer {n} <c{n}@example.org>\r\nTo: {USER}\r\n"
            f"Subject: Request number {n}\r\nMessage-ID: <p{n}@example.org>\r\n"
            f"Date: Fri, 04 Dec 2026 10:00:00 +0000\r\n\r\nPlease help with {n}.\r\n").encode()


def config(path: Path, db_url: str, dovecot: Dovecot, **mailbox: str) -> Path:
    write_config(path, db_url)
    entry = {"name": '"support"', "host": '"127.0.0.1"', "port": str(dovecot.imap_port),
             "tls": '"none"', "user": f'"{USER}"', "password_env": '"TEST_IMAP_PASSWORD"',
             "after": '"move"', "move_to": '"Processed"', "lease_seconds": "4",
             "poll_seconds": "1", "backoff_initial_seconds": "0.2",
             "backoff_max_seconds": "1"} | mailbox
    with path.open("a") as file:
        file.write("[[mailbox]]\n" + "".join(f"{k} = {v}\n" for k, v in entry.items()))
    return path


async def _count(engine: AsyncEngine, table: object, *where: object) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(table)  # type: ignore[arg-type]
                                       .where(*where))).scalar_one())


async def _exactly_once(engine: AsyncEngine, expected: set[bytes]) -> None:
    async with engine.connect() as conn:
        raws = [bytes(r) for r in (await conn.execute(select(inbox_items.c.raw))).scalars()]
        ids = list((await conn.execute(select(messages.c.message_id)
                                       .where(messages.c.direction == "in"))).scalars())
    assert len(raws) == len(set(raws)), "a message stored twice"
    assert set(raws) == expected, "a message missing or changed"
    assert len(ids) == len(set(ids)) == len(expected)
    assert await _count(engine, requests) == len(expected)


@pytest.fixture
def imap(dovecot: Dovecot, monkeypatch: pytest.MonkeyPatch) -> Dovecot:
    dovecot.add_user(USER, PASSWORD)
    monkeypatch.setenv("TEST_IMAP_PASSWORD", PASSWORD)
    return dovecot


@pytest.mark.slow
async def test_sigkill_during_a_fetch_of_1000__each_exactly_once(
        imap: Dovecot, db_url: str, engine: AsyncEngine, tmp_path: Path) -> None:
    sent = [mail(n) for n in range(1000)]
    imap.append_many(USER, "INBOX", sent)
    path = config(tmp_path / "intake.toml", db_url, imap, max_per_run="50")
    server = ServeProcess(path, tmp_path / "serve.log")
    server.start()
    try:
        await wait_for(lambda: _at_least(engine, inbox_items, 120), timeout=60, interval=0.01)
        server.kill()
    finally:
        server.kill()
    stored = await _count(engine, inbox_items)
    assert stored < 1000, "the kill came too late to cut the fetch"
    restarted = ServeProcess(path, tmp_path / "serve2.log")
    restarted.start()
    try:
        await wait_for(lambda: _at_least(engine, requests, 1000), timeout=120)
        await wait_for(lambda: _nothing_owed(engine), timeout=20)
        await asyncio.sleep(1.0)  # a pass more: nothing new may come of it
    finally:
        restarted.kill()
    await _exactly_once(engine, set(sent))
    assert imap.uids(USER, "INBOX") == []
    assert len(imap.uids(USER, "Processed")) == 1000


async def _at_least(engine: AsyncEngine, table: object, n: int) -> bool:
    return await _count(engine, table) >= n


async def _nothing_owed(engine: AsyncEngine) -> bool:
    return await _count(engine, mailbox_messages, mailbox_messages.c.state == "owed") == 0


@pytest.mark.slow
async def test_two_gateways_share_one_mailbox__no_duplicates_and_takeover(
        imap: Dovecot, pg_url: str, tmp_path: Path) -> None:
    from storage.engine import create_engine

    engine = create_engine(pg_url)
    path = config(tmp_path / "intake.toml", pg_url, imap)
    first = ServeProcess(path, tmp_path / "a.log")
    second = ServeProcess(path, tmp_path / "b.log")
    first.start()
    second.start()
    sent: list[bytes] = []
    try:
        for wave in range(6):
            batch = [mail(wave * 50 + n) for n in range(50)]
            imap.append_many(USER, "INBOX", batch)
            sent += batch
            await asyncio.sleep(0.3)
            if wave == 2:
                # The holder dies: after its lease (4 s) the other takes over.
                holder = await _holder_pid(engine)
                # Each `intake serve` may run worker processes: the holder or its parent.
                parent = _parent(holder)
                [victim] = [p for p in (first, second)
                            if p.proc is not None and p.proc.pid in (holder, parent)]
                victim.kill()
        started = time.monotonic()
        await wait_for(lambda: _at_least(engine, requests, len(sent)), timeout=60)
        took = time.monotonic() - started
        print(f"\n300 messages, holder killed mid-way: all in {took:.1f} s after the last wave")
        await wait_for(lambda: _nothing_owed(engine), timeout=20)
        await asyncio.sleep(1.0)
        await _exactly_once(engine, set(sent))
        assert imap.uids(USER, "INBOX") == []
        assert await _holder_pid(engine) != holder  # the survivor took the mailbox over
    finally:
        first.kill()
        second.kill()
        await engine.dispose()


async def _holder_pid(engine: AsyncEngine) -> int:
    from storage import mailboxes as store

    async def held() -> int | None:
        [state] = await store.states(engine, ["support"])
        return int(state.holder.split(":")[1]) if state.holder else None

    pid = await wait_for(held, timeout=10)
    assert isinstance(pid, int)
    return pid


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
