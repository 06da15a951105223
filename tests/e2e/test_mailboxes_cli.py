"""`intake mailboxes` and `intake mailboxes test NAME` as a user runs them, on a
SQLite file with two `[[mailbox]]` tables (the real Dovecot's test is elsewhere)."""

from __future__ import annotations

import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from storage import mailboxes as store
from storage.engine import create_engine
from tests.e2e.test_cli import intake
from tests.process import free_port

HOLDER = "host:123:cafe"


def _config(path: Path, db_url: str, imap_port: int) -> Path:
    path.write_text("\n".join([
        "[intake]", 'addresses = ["support@localhost"]',
        "[database]", f'url = "{db_url}"',
        "[[mailbox]]", 'name = "support"', 'host = "127.0.0.1"', f"port = {imap_port}",
        'tls = "none"', 'user = "support@localhost"', 'password_env = "IMAP_PASSWORD"',
        'after = "move"', 'move_to = "Done"', "timeout_seconds = 5",
        "[[mailbox]]", 'name = "old-mail"', 'host = "imap.example.com"',
        'user = "archive@example.com"', 'password_env = "IMAP_PASSWORD"',
        'after = "keep"', 'mode = "archive"',
    ]) + "\n")
    return path


@pytest.fixture
def sqlite_url(tmp_path: Path, sqlite_template: Path) -> str:
    path = tmp_path / "intake.db"
    shutil.copyfile(sqlite_template, path)
    return f"sqlite+aiosqlite:///{path}"


@pytest.fixture
async def sqlite_engine(sqlite_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(sqlite_url)
    yield engine
    await engine.dispose()


async def test_mailboxes_cli__lists_both_with_their_state(
        sqlite_url: str, sqlite_engine: AsyncEngine, tmp_path: Path) -> None:
    config = _config(tmp_path / "c.toml", sqlite_url, 1143)
    # `support` is fetched and 3 behind; `old-mail` failed once (a hostile error text).
    assert await store.hold(sqlite_engine, "support", HOLDER, 60)
    await store.report(sqlite_engine, "support", connected=True, behind=3)
    await store.report(sqlite_engine, "old-mail", connected=False,
                       error="NO [AUTHENTICATIONFAILED] nope\r\n\x1b[31mred")

    listed = intake("mailboxes", config=config)
    assert listed.returncode == 0, listed.stderr
    head, support, old, total = listed.stdout.splitlines()
    assert head.split()[:4] == ["NAME", "SERVER", "USER", "MODE"]
    assert "LAST ERROR" in head
    assert support.split()[:9] == ["support", "127.0.0.1:1143", "support@localhost", "intake",
                                   "move", "to", "Done", "yes", HOLDER]
    assert support.split()[-4:] == ["never", "3", "0", "-"]
    assert old.split()[:7] == ["old-mail", "imap.example.com:993", "archive@example.com",
                               "archive", "keep", "no", "-"]
    assert old.endswith("NO [AUTHENTICATIONFAILED] nope [31mred")  # no escape, one line
    assert "\x1b" not in listed.stdout
    assert total == "2 mailbox(es)"

    as_json = intake("mailboxes", "--json", config=config)
    assert as_json.returncode == 0, as_json.stderr
    rows = {row["name"]: row for row in json.loads(as_json.stdout)}
    assert list(rows) == ["support", "old-mail"]  # in the configuration's order
    assert {k: rows["support"][k] for k in (
        "host", "port", "user", "mode", "after", "move_to", "connected", "holder", "behind",
        "fetched", "last_error", "failing_since")} == {
        "host": "127.0.0.1", "port": 1143, "user": "support@localhost", "mode": "intake",
        "after": "move", "move_to": "Done", "connected": True, "holder": HOLDER, "behind": 3,
        "fetched": 0, "last_error": None, "failing_since": None}
    assert rows["support"]["last_pass_at"] is not None
    assert (rows["old-mail"]["connected"], rows["old-mail"]["holder"]) == (False, None)
    assert rows["old-mail"]["last_error"] == "NO [AUTHENTICATIONFAILED] nope\r\n\x1b[31mred"
    assert rows["old-mail"]["failing_since"] is not None
    assert rows["old-mail"]["last_fetch_at"] is None


async def test_mailboxes_cli__never_fetched(sqlite_url: str, tmp_path: Path) -> None:
    """No rows yet (`intake serve` never ran them): listed all the same."""
    config = _config(tmp_path / "c.toml", sqlite_url, 1143)
    rows = json.loads(intake("mailboxes", "--json", config=config).stdout)
    assert [(r["name"], r["connected"], r["holder"], r["behind"], r["last_pass_at"])
            for r in rows] == [("support", False, None, 0, None),
                               ("old-mail", False, None, 0, None)]


def test_mailboxes_cli__test_of_an_unknown_name(sqlite_url: str, tmp_path: Path) -> None:
    config = _config(tmp_path / "c.toml", sqlite_url, 1143)
    result = intake("mailboxes", "test", "nope", config=config)
    assert result.returncode == 2
    assert "unknown mailbox 'nope'" in result.stderr and "support, old-mail" in result.stderr
    assert intake("mailboxes", "test", config=config).returncode == 2  # no name at all


def test_mailboxes_cli__test_where_nothing_listens(sqlite_url: str, tmp_path: Path) -> None:
    port = free_port()  # bound and closed: nothing listens there
    config = _config(tmp_path / "c.toml", sqlite_url, port)
    result = intake("mailboxes", "test", "support", config=config, IMAP_PASSWORD="secret")
    assert result.returncode == 1, result.stdout + result.stderr
    [line] = result.stdout.splitlines()
    assert line.startswith(f"FAIL  127.0.0.1:{port} (none) as support@localhost: ")
    assert "secret" not in result.stdout + result.stderr
