"""The `intake` command as a user runs it."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
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


async def test_cli__tokens_create_without_hand_off(
        db_url: str, engine: AsyncEngine, tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.toml", db_url)
    for extra in ([], ["--no-hand-off"]):
        result = intake("tokens", "create", "--role", "agent", "--queue", "general", *extra,
                        config=config)
        assert result.returncode == 0, result.stderr
    async with engine.connect() as conn:
        rows = (await conn.execute(select(api_tokens.c.may_hand_off)
                                   .order_by(api_tokens.c.id))).scalars().all()
    assert rows == [True, False]
    assert "no hand-off" in result.stdout


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


def test_cli__config_accepted_after_the_subcommand(db_url: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[http]\nmax_body_bytes = 'lots'\n")
    result = intake("check-config", "--config", str(bad))
    assert result.returncode == 2 and f"{bad}: key http.max_body_bytes" in result.stderr
    config = write_config(tmp_path / "c.toml", db_url)
    listed = intake("tokens", "list", "--config", str(config))
    assert listed.returncode == 0, listed.stderr
    # After the subcommand wins over before it, as the last option given does.
    both = intake("--config", str(bad), "check-config", "--config", str(config))
    assert both.returncode == 0 and str(config) in both.stdout


@pytest.mark.parametrize("command", [["tokens", "list"], ["dead-letters"], ["reprocess", "--all"],
                                     ["quarantine", "list"], ["reroute", "--all-open"]])
def test_cli__elsewhere_refuses_instead_of_making_an_empty_database(
        tmp_path: Path, command: list[str]) -> None:
    result = subprocess.run([sys.executable, "-m", "gateway.cli", *command], cwd=tmp_path,
                            env=_without_intake_env(), capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2, result.stderr
    assert f"database {tmp_path / 'intake.db'}: does not exist" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "intake.db").exists()


def test_cli__migrate_creates_the_embedded_database_then_says_nothing_to_do(
        tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "gateway.cli", *args], cwd=tmp_path,
                              env=_without_intake_env(), capture_output=True, text=True,
                              timeout=60)

    first = run("migrate")
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == \
        f"database migrated from revision none (empty) to {head_revision()}"
    again = run("migrate")
    assert again.stdout.strip() == \
        f"database already at revision {head_revision()}; nothing to do"
    assert run("tokens", "list").returncode == 0  # now it exists


def _without_intake_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("INTAKE_")}


def test_cli__postfix_maps_relay_our_addresses_to_lmtp(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[intake]\naddresses = ["support@example.com", "billing@example.com", '
                      '"help@other.example"]\ndomains = ["desk.example"]\n'
                      '[smtp]\nlmtp_listen = "0.0.0.0:2424"\n')
    printed = intake("postfix-maps", "--config", str(config))
    assert printed.returncode == 0, printed.stderr
    assert "relay_recipient_maps = texthash:/etc/postfix/intake/relay_recipients" in \
        printed.stdout
    # The README's recipe sets exactly what the command prints.
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    for line in printed.stdout.split("\n\n")[0].splitlines()[1:]:
        assert f'"{line}"' in readme, line
    written = intake("postfix-maps", "--config", str(config), "--output", str(tmp_path / "m"))
    assert written.stdout == "".join(
        f"{key} = texthash:{tmp_path / 'm' / name}\n" for key, name in (
            ("relay_domains", "relay_domains"), ("transport_maps", "transport"),
            ("relay_recipient_maps", "relay_recipients")))

    def rows(name: str) -> list[str]:
        text = (tmp_path / "m" / name).read_text()
        return [line for line in text.splitlines() if not line.startswith("#")]

    assert rows("relay_domains") == ["desk.example OK", "example.com OK",
                                     "other.example OK"]
    # A wildcard listener is reached on the loopback address.
    assert rows("transport") == [f"{d} lmtp:inet:127.0.0.1:2424" for d in
                                 ("desk.example", "example.com", "other.example")]
    assert rows("relay_recipients") == ["billing@example.com OK", "help@other.example OK",
                                        "support@example.com OK", "@desk.example OK"]
    elsewhere = intake("postfix-maps", "--config", str(config), "--lmtp", "intake:2424",
                       "--output", str(tmp_path / "n"))
    assert "example.com lmtp:inet:intake:2424" in (tmp_path / "n" / "transport").read_text()
    config.write_text('[intake]\naddresses = ["support@example.com"]\n')
    no_lmtp = intake("postfix-maps", "--config", str(config))
    assert no_lmtp.returncode == 2 and "smtp.lmtp_listen" in no_lmtp.stderr
    assert elsewhere.returncode == 0


async def test_cli__ready_line_names_lmtp_relay_and_broker(
        db_url: str, caplog: pytest.LogCaptureFixture) -> None:
    from gateway.app import start, stop
    from tests.helpers import make_config

    config = make_config(db_url, outbound={"relay": "127.0.0.1:2526"},
                         broker={"url": "amqp://intake:secret@127.0.0.1:1/"})
    with caplog.at_level(logging.INFO, logger="intake"):
        gateway = await start(config)
        await stop(gateway, grace=3.0)
    [ready] = [r.getMessage() for r in caplog.records if "intake ready" in r.getMessage()]
    assert f"lmtp 127.0.0.1:{gateway.lmtp_port}" in ready
    assert "relay 127.0.0.1:2526" in ready
    assert "broker amqp://intake:***@127.0.0.1:1/" in ready and "secret" not in ready
