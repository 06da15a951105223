"""`intake erase` and `intake export`: a person's data erased or handed over,
from the command line (audited as actor `cli`, with the OS user)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from gateway.erasure import run_to_end
from gateway.export_archive import write_archive
from parsers.addresses import mailbox_or_none
from storage.audit import Audit, record
from storage.erasures import address_hash, start
from storage.migrate import upgrade

CLI = Audit("cli")


def _address(text: str) -> str | None:
    mailbox = mailbox_or_none(text.strip())
    if mailbox is None:
        print(f"not one email address: {text!r}", file=sys.stderr)
        return None
    return mailbox.addr_spec


def _confirmed(address: str) -> bool:
    if not sys.stdin.isatty():
        print("erasing cannot be undone: confirm with --yes", file=sys.stderr)
        return False
    answer = input(f"Erase every trace of {address}? This cannot be undone. [y/N] ")
    return answer.strip().lower() in ("y", "yes")


async def erase(engine: Any, args: argparse.Namespace) -> int:
    """Start (or resume) the erasure of one person and work it to the end."""
    address = _address(args.requester)
    if address is None:
        return 2
    if not args.yes and not _confirmed(address):
        return 1
    await upgrade(engine)
    found, new = await start(engine, address, audit=CLI)
    print(f"erasure {found['id']} {'started' if new else 'resumed'}", flush=True)
    done = await run_to_end(engine, found["id"], audit=CLI)
    counts = done["counts"]
    print(f"erasure {done['id']} done: " + (", ".join(
        f"{key.replace('_', ' ')} {value}" for key, value in sorted(counts.items()))
        or "nothing of theirs was found"))
    print(f"requests affected: {', '.join(done['references']) or 'none'}")
    return 0


async def export(engine: Any, args: argparse.Namespace) -> int:
    """Write one person's export (a zip) to --output, whole or not at all."""
    address = _address(args.requester)
    if address is None:
        return 2
    target = Path(args.output)
    partial = target.with_name(target.name + ".part")
    try:
        with partial.open("wb") as sink:
            summary = await write_archive(engine, address, sink)
            sink.flush()
            os.fsync(sink.fileno())
        partial.replace(target)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        print(f"cannot write {target}: {exc.strerror}", file=sys.stderr)
        return 1
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    digest = await address_hash(engine, address)
    await record(engine, actor=CLI.actor, action="export.create", target=f"requester:{digest}",
                 data={"requests": summary.requests, "messages": summary.messages,
                       "files": summary.files})
    print(f"{target}: {summary.requests} request(s), {summary.messages} message(s), "
          f"{summary.files} file(s)")
    return 0
