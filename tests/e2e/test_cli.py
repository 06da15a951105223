"""The `intake` command as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from storage.inbox import NewItem, accept_many
from storage.migrate import head_revision
from storage.models import api_tokens, inbox_items
from storage.processing import fail_item
from storage.tokens import hash_secret
from tests.process import write_config


def intake(*args: str, config: Path | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    environment = dict(os.environ, **env)
    environment.pop("INTAKE_CONFIG", None)
    if config is not None:
        environment["INTAKE_CONFIG"] = str(config)
    return subprocess.run([sys.executable, "-m", "gateway.cli", *args], env=environment,
                          capture_output=True, text=True, timeout=60)


async def test_cli__tokens_create_prints_secret_last_and_stores_hash(
        db_url: str, engine: AsyncEngine, tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.toml", db_url)
    result = intake("tokens", "create", "--role", "agent", "--queue", "general", config=config)
    assert result.returncode == 0, result.stderr
    secret = result.stdout.strip().splitlines()[-1]
    assert secret.startswith("itk_") and " " not in secret
    async with engine.connect() as conn:
        row = (await conn.execute(select(api_tokens))).one()
    assert row.token_hash == hash_secret(secret)
    assert secret not in str(tuple(row))
    assert (row.role, row.queues) == ("agent", ["general"])

    listed = intake("tokens", "list", config=config)
    assert "agent" in listed.stdout and secret not in listed.stdout
    revoked = intake("tokens", "revoke", str(row.id), config=config)
    assert revoked.returncode == 0
    async with engine.connect() as conn:
        assert (await conn.execute(select(api_tokens.c.revoked_at))).scalar() is not None


async def test_cli__tokens_unknown_queue_refused(db_url: str, tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.toml", db_url)
    result = intake("tokens", "create", "--role", "agent", "--queue", "nope", config=config)
    assert result.returncode == 2
    assert "unknown queue: nope" in result.stderr


def test_cli__wrong_config_names_file_key_and_problem(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    cases = {
        "[intake]\nmax_message_bytes = -5\n": "key intake.max_message_bytes",
        "[intake]\naddresses = ['not an address']\n": "key intake.addresses",
        "[smtp]\nlisten = 'nowhere'\n": "key smtp.listen",
        "[[queue]]\nname = 'a'\n[[queue]]\nname = 'a'\n": "duplicate queue name",
        "[[queue]]\nnmae = 'a'\n": "key queue[0].nmae: Extra inputs are not permitted",
        "[databse]\nurl = 'x'\n": "key databse: unknown section",
        "[intake\n": "invalid TOML",
    }
    for text, expected in cases.items():
        bad.write_text(text)
        result = intake("check-config", config=bad)
        assert result.returncode == 2, text
        assert str(bad) in result.stderr and expected in result.stderr, (text, result.stderr)
    missing = intake("check-config", config=tmp_path / "missing.toml")
    assert missing.returncode == 2 and "cannot read" in missing.stderr


def test_cli__serve_with_wrong_config_exits_nonzero(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[http]\nmax_body_bytes = 'lots'\n")
    result = intake("serve", config=bad)
    assert result.returncode == 2
    assert f"{bad}: key http.max_body_bytes" in result.stderr


def test_cli__env_overrides_config(tmp_path: Path) -> None:
    result = intake("check-config", INTAKE_DATABASE_URL="mysql://nope")
    assert result.returncode == 2
    assert "key database.url" in result.stderr


def test_cli__check_config_ok(tmp_path: Path) -> None:
    result = intake("check-config")
    assert result.returncode == 0
    assert "queues: general" in result.stdout and "support@localhost" in result.stdout


async def test_cli__dead_letters_and_reprocess(db_url: str, engine: AsyncEngine,
                                               tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.toml", db_url)
    [item_id] = await accept_many(engine, [NewItem("smtp", b"Subject: x\r\n\r\ny\r\n")])
    await fail_item(engine, item_id, "ValueError: broken", dead=True)
    listed = intake("dead-letters", "list", config=config)
    assert listed.returncode == 0
    assert "ValueError: broken" in listed.stdout and "1 dead-lettered" in listed.stdout
    again = intake("reprocess", "--all", config=config)
    assert again.returncode == 0 and again.stdout.startswith("1 ")
    async with engine.connect() as conn:
        assert (await conn.execute(select(inbox_items.c.state))).scalar() == "pending"
    assert intake("reprocess", config=config).returncode == 2


async def test_cli__migrate(db_url: str, tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.toml", db_url)
    result = intake("migrate", config=config)
    assert result.returncode == 0, result.stderr
    assert f"revision {head_revision()}" in result.stdout


def test_cli__parse_json_is_stable(tmp_path: Path) -> None:
    import json

    eml = tmp_path / "m.eml"
    eml.write_bytes(b"From: Ann <ann@example.com>\r\nTo: support@localhost\r\n"
                    b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\nMessage-ID: <x1@example.com>\r\n"
                    b"Auto-Submitted: auto-replied\r\n\r\nHello\r\n\r\n-- \r\nAnn\r\n")
    result = intake("parse", str(eml), "--json")
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert list(record) == ["message_id", "in_reply_to", "references", "date", "from",
                            "reply_to", "to", "cc", "subject", "text", "html", "new_text",
                            "attachments", "auto_reply", "bounce", "list", "defects"]
    assert record["subject"] == "Gr\u00fc\u00dfe"
    assert record["from"] == {"name": "Ann", "address": "ann@example.com"}
    assert record["new_text"] == "Hello"
    assert record["auto_reply"] is True
    human = intake("parse", str(eml))
    assert "Automatic:   auto_reply" in human.stdout
    assert intake("parse", str(tmp_path / "missing.eml")).returncode == 2
