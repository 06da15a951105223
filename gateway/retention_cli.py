"""`intake retention`, `intake backup` and `intake restore`.

Retention runs every stage of a pass to its end (the scheduler does the same
a few batches a tick); `--dry-run` counts instead and changes nothing. Backup
and restore are for the embedded SQLite database (storage/backup.py); on
PostgreSQL they point to pg_dump and point-in-time recovery.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from gateway.config import Config
from storage.backup import BackupError, Contents, backup, known_revisions, restore
from storage.engine import create_engine, utcnow
from storage.location import sqlite_path
from storage.retention import run_pass

POSTGRES = ("{command} is for the embedded SQLite database; on PostgreSQL use pg_dump "
            "(or a base backup with WAL archiving for point-in-time recovery): see "
            "README, Personal data, Backups and restore")


def add_parsers(sub: Any) -> None:
    retention = sub.add_parser("retention", help="apply the [[retention]] policies now, "
                               "printing what went per policy")
    retention.add_argument("--dry-run", action="store_true",
                           help="print what would go, change nothing")
    taken = sub.add_parser("backup", help="a consistent copy of the SQLite database, "
                           "also while intake serve runs")
    taken.add_argument("file", help="the backup file to write (replaced whole)")
    put = sub.add_parser("restore", help="replace the SQLite database with a backup "
                         "(intake serve must be stopped)")
    put.add_argument("file", help="a file written by intake backup")


async def run_retention(config: Config, args: argparse.Namespace) -> int:
    policies = config.retention_policies
    if not policies:
        print("no [[retention]] policies configured: everything is kept")
        return 0
    engine = create_engine(config.database.url, pool_size=2,
                           timeout=config.database.timeout_seconds)
    try:
        stages = await run_pass(engine, policies, utcnow(),
                                batch=config.pipeline.retention_batch_size,
                                dry_run=args.dry_run)
    finally:
        await engine.dispose()
    verb = "would go" if args.dry_run else "went"
    for stage in stages:
        number = stage.counted if args.dry_run else stage.done
        print(f"{stage.policy.name}: {stage.what.value} (before "
              f"{stage.cutoff.isoformat(timespec='seconds')}): {verb} {number}")
    print("dry run: nothing changed" if args.dry_run
          else f"{sum(s.done for s in stages)} row(s) removed or changed")
    return 0


def _described(found: Contents) -> str:
    return (f"schema {found.revision}, {found.inbox_items} inbox items "
            f"({found.pending_items} pending), {found.requests} requests, "
            f"{found.pending_outbox} outbox rows pending")


async def run_backup(config: Config, args: argparse.Namespace) -> int:
    source = sqlite_path(config.database.url)
    if source is None:
        print(f"intake: {POSTGRES.format(command='intake backup')}", file=sys.stderr)
        return 2
    target = Path(args.file)
    try:
        found = await asyncio.to_thread(backup, source, target)
    except BackupError as exc:
        print(f"intake: {exc}", file=sys.stderr)
        return 1
    print(f"backup of {source} written to {target}: {_described(found)}")
    return 0


async def run_restore(config: Config, args: argparse.Namespace) -> int:
    target = sqlite_path(config.database.url)
    if target is None:
        print(f"intake: {POSTGRES.format(command='intake restore')}", file=sys.stderr)
        return 2
    # Not checked (nor created) before the backup is: a refused file leaves nothing.
    file = Path(args.file)
    try:
        found = await asyncio.to_thread(restore, file, target, known_revisions())
    except BackupError as exc:
        print(f"intake: {exc}", file=sys.stderr)
        return 1
    print(f"database {target} restored from {file}: {_described(found)}; claims handed "
          "back, so intake serve processes each pending item once (it also brings the "
          "schema up to date)")
    return 0
