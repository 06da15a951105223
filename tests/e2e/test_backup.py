"""`intake backup` under SMTP load against a running `intake serve` (SQLite),
then `intake restore` into a new file and `intake serve` on it.

Every mail acknowledged (250) before the backup started is in the backup; a
restore refuses a database in use; the restored gateway processes each item
pending in the backup once and sends each acknowledgement still due once,
and none it had already sent."""

from __future__ import annotations

import asyncio
import re
import signal
import smtplib
import sqlite3
import subprocess
import sys
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.e2e.test_outbound import Relay
from tests.helpers import wait_for
from tests.process import ServeProcess

SENDERS = 4
PER_SENDER = 60
BACKUP_AFTER = 100  # acknowledged mails before the backup starts
TAG = re.compile(r"\[#([0-9A-Z]{4}-[0-9A-Z]{4})\]")  # the reference in our subjects


def _config(path: Path, db: Path, relay_port: int) -> Path:
    path.write_text("\n".join([
        "[intake]", 'addresses = ["support@localhost"]',
        "[database]", f'url = "sqlite+aiosqlite:///{db}"',
        "[pipeline]", "workers = 2", "poll_seconds = 0.2", "lease_seconds = 5",
        "[outbound]", f'relay = "127.0.0.1:{relay_port}"', "acknowledgements_per_hour = 100",
        "acknowledgements_per_minute = 100000", "acknowledgements_per_domain_per_hour = 100000",
        "backoff_initial_seconds = 0.05", "backoff_max_seconds = 0.2",
    ]) + "\n")
    return path


def _intake(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway.cli", "--config", str(config), *args],
                          capture_output=True, text=True, timeout=120)


def _load(port: int, acked: list[str], backup_due: threading.Event) -> None:
    def sender(n: int) -> None:
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
            client.ehlo()
            for i in range(PER_SENDER):
                mid = f"b{n}-{i}@example.com"
                sender_address = f"s{n}-{i}@example.com"  # an acknowledgement each
                data = (f"From: {sender_address}\r\nTo: support@localhost\r\n"
                        f"Subject: load {n}-{i}\r\nMessage-ID: <{mid}>\r\n\r\nbody\r\n").encode()
                client.mail(sender_address)
                client.rcpt("support@localhost")
                code, _ = client.data(data)
                assert code == 250
                acked.append(mid)  # list.append is atomic: the order they were answered
                if len(acked) >= BACKUP_AFTER:
                    backup_due.set()

    with ThreadPoolExecutor(SENDERS) as pool:
        list(pool.map(sender, range(SENDERS)))


def _rows(db: Path, sql: str) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


@pytest.mark.slow
async def test_backup__under_load_restores_and_resumes_once(tmp_path: Path) -> None:
    first_relay, second_relay = Relay(), Relay()
    await first_relay.up()
    await second_relay.up()
    live_db, backup_file, restored_db = (tmp_path / "live.db", tmp_path / "backup.db",
                                         tmp_path / "restored.db")
    live_config = _config(tmp_path / "live.toml", live_db, first_relay.port)
    server = ServeProcess(live_config, tmp_path / "live.log")
    await asyncio.to_thread(server.start)
    try:
        acked: list[str] = []
        backup_due = threading.Event()
        load = asyncio.create_task(asyncio.to_thread(_load, server.smtp_port, acked,
                                                     backup_due))
        assert await asyncio.to_thread(backup_due.wait, 60)
        before = list(acked)  # answered 250 before the backup started
        taken = await asyncio.to_thread(_intake, live_config, "backup", str(backup_file))
        assert taken.returncode == 0, taken.stderr
        during = len(acked) - len(before)
        # A restore over the serving database is refused, and changes nothing.
        refused = await asyncio.to_thread(_intake, live_config, "restore", str(backup_file))
        assert refused.returncode == 1 and "in use" in refused.stderr
        await load
        assert len(acked) == SENDERS * PER_SENDER
    finally:
        server.signal(signal.SIGTERM)
        assert await asyncio.to_thread(server.wait) == 0
    assert during > 0, "the load went on while the backup was taken"

    # Every mail acknowledged before the backup began is in it (raw bytes).
    in_backup = {row[0] for row in _rows(
        backup_file, "SELECT CAST(raw AS TEXT) FROM inbox_items")}
    missing = [mid for mid in before if not any(f"<{mid}>" in raw for raw in in_backup)]
    assert missing == []
    pending_items = _rows(backup_file, "SELECT count(*) FROM inbox_items "
                                       "WHERE state IN ('pending', 'processing')")[0][0]
    sent_before = {row[0] for row in _rows(
        backup_file, "SELECT r.reference FROM outbox o JOIN requests r ON r.id = o.request_id"
                     " WHERE o.kind = 'email' AND o.state = 'done'")}

    restored_config = _config(tmp_path / "restored.toml", restored_db, second_relay.port)
    put = await asyncio.to_thread(_intake, restored_config, "restore", str(backup_file))
    assert put.returncode == 0, put.stderr
    server = ServeProcess(restored_config, tmp_path / "restored.log")
    await asyncio.to_thread(server.start)
    try:
        items = len(in_backup)

        async def settled() -> bool:
            rows = _rows(restored_db, "SELECT "
                         "(SELECT count(*) FROM inbox_items WHERE state <> 'done'),"
                         "(SELECT count(*) FROM outbox WHERE state NOT IN ('done', 'dead')),"
                         "(SELECT count(*) FROM requests)")
            return rows[0] == (0, 0, items)

        await wait_for(settled, timeout=60, interval=0.3)
        await asyncio.sleep(1.0)  # a duplicate would show up by now
    finally:
        server.signal(signal.SIGTERM)
        assert await asyncio.to_thread(server.wait) == 0
        await first_relay.down()
        await second_relay.down()

    # Each item once: one request and one message per inbox item, none left over.
    assert _rows(restored_db, "SELECT count(*), count(DISTINCT inbox_item_id) FROM requests")[0] \
        == (items, items)
    assert _rows(restored_db, "SELECT count(*) FROM messages WHERE direction = 'in'")[0][0] \
        == items
    # Each acknowledgement once: the restored gateway sent every one not sent
    # before the backup, and none that was.
    references = {row[0] for row in _rows(restored_db, "SELECT reference FROM requests")}
    sent_after = Counter(TAG.search(m["Subject"]).group(1)  # type: ignore[union-attr]
                         for m in second_relay.received)
    assert references - sent_before, "the restored gateway had acknowledgements to send"
    assert set(sent_after) == references - sent_before
    assert set(sent_after.values()) == {1}
    assert pending_items >= 0
