"""`intake retention`, `intake backup` and `intake restore` as a user runs them."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from storage.engine import utcnow
from storage.inbox import NewItem, accept_many
from storage.models import requests
from storage.processing import claim_items
from storage.records import NewMessage, NewRequest
from storage.store import complete_items
from tests.e2e.test_cli import intake
from tests.helpers import count_rows


def _config(path: Path, db_url: str) -> Path:
    path.write_text("\n".join([
        "[database]", f'url = "{db_url}"',
        "[[queue]]", 'name = "general"', "[[queue]]", 'name = "billing"',
        "[[retention]]", "delete_after_days = 30",
        "[[retention]]", 'queue = "billing"', "anonymise_after_days = 30",
    ]) + "\n")
    return path


async def _requests(engine: AsyncEngine, queues: list[str]) -> None:
    await accept_many(engine, [NewItem("api", b"{}", {}) for _ in queues])
    items = await claim_items(engine, limit=len(queues), lease_seconds=60)
    await complete_items(engine, [(item, NewRequest(
        queue=queue, requester_email="ann@example.com", requester_name="Ann",
        message=NewMessage(subject="s", text="t", new_text="t", from_address=None,
                           from_name=None))) for item, queue in zip(items, queues, strict=True)])


async def test_retention_cli__dry_run_then_run(db_url: str, engine: AsyncEngine,
                                               tmp_path: Path) -> None:
    await _requests(engine, ["general", "general", "general", "billing", "billing"])
    async with engine.begin() as conn:  # all finished 40 days ago but one of general's
        await conn.execute(update(requests).values(
            status="closed", resolved_at=utcnow() - timedelta(days=40)))
        await conn.execute(update(requests).where(requests.c.id == 1).values(
            status="open", resolved_at=None))
    config = _config(tmp_path / "intake.toml", db_url)

    dry = intake("retention", "--dry-run", config=config)
    assert dry.returncode == 0, dry.stderr
    lines = dry.stdout.splitlines()
    assert any(line.startswith("default: requests deleted") and line.endswith("would go 2")
               for line in lines), lines
    assert any(line.startswith("queue=billing type=*: requests anonymised")
               and line.endswith("would go 2") for line in lines), lines
    assert lines[-1] == "dry run: nothing changed"
    assert await count_rows(engine, requests) == 5

    done = intake("retention", config=config)
    assert done.returncode == 0, done.stderr
    assert any(line.startswith("default: requests deleted") and line.endswith("went 2")
               for line in done.stdout.splitlines())
    assert await count_rows(engine, requests) == 3
    assert await count_rows(engine, requests, requests.c.anonymised_at.is_not(None)) == 2


def test_retention_cli__backup_and_restore_refuse_postgresql(pg_url: str,
                                                             tmp_path: Path) -> None:
    config = _config(tmp_path / "intake.toml", pg_url)
    for command in ("backup", "restore"):
        result = intake(command, str(tmp_path / "copy.db"), config=config)
        assert result.returncode == 2
        assert "pg_dump" in result.stderr


def test_retention_cli__restore_refuses_what_is_not_a_backup(tmp_path: Path) -> None:
    config = _config(tmp_path / "intake.toml", f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database at all" * 100)
    result = intake("restore", str(junk), config=config)
    assert result.returncode == 1 and "is not a SQLite database" in result.stderr
    assert not (tmp_path / "x.db").exists()  # nothing made of a refused restore
    missing = intake("backup", str(tmp_path / "b.db"), config=config)
    assert missing.returncode == 2 and "does not exist" in missing.stderr
