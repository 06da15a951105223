"""The `intake` command."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from domain.errors import ConfigError, GatewayError
from gateway.audit_cli import add_parser as add_audit_parser
from gateway.config import Config, load_config
from gateway.config.sections import MailboxSection
from gateway.logs import LEVELS, configure, parse_level
from gateway.retention_cli import add_parsers as add_retention_parsers
from gateway.retention_cli import run_backup, run_restore, run_retention
from storage.audit import Audit
from storage.engine import create_engine
from storage.errors import StorageUnavailable, is_storage_fault, unavailable
from storage.location import UnwritableLocation, check_location, check_temporary_directory

Command = Callable[[Config, argparse.Namespace], Awaitable[int]]
# Changes made from here are audited as `cli` (storage/audit.py adds the OS user).
CLI_AUDIT = Audit("cli")


def _engine(config: Config) -> Any:
    return create_engine(config.database.url, pool_size=2,
                         timeout=config.database.timeout_seconds)


async def _serve(config: Config, args: argparse.Namespace) -> int:
    from gateway.app import serve

    # A worker under the supervisor (gateway/processes.py) shares the ports.
    await serve(config, worker=args.worker)
    return 0


def _supervise(config: Config, args: argparse.Namespace) -> int | None:
    """`intake serve` with more than one process: the supervisor's exit code.
    None: one process, which is the worker itself (no supervisor)."""
    from gateway.processes import process_count, supervise

    count = process_count(config, args.processes)
    if count == 1:
        return None
    options = [] if args.config is None else ["--config", str(args.config)]
    if args.log_level is not None:
        options += ["--log-level", args.log_level]
    return supervise(config, count, options)


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {number}")
    return number


async def _migrate(config: Config, args: argparse.Namespace) -> int:
    from storage.migrate import current_revision, upgrade

    engine = _engine(config)
    try:
        before = await current_revision(engine)
        await upgrade(engine)
        after = await current_revision(engine)
    finally:
        await engine.dispose()
    # Says whether anything was done: an operator runs it to find out.
    if before == after:
        print(f"database already at revision {after}; nothing to do")
    else:
        print(f"database migrated from revision {before or 'none (empty)'} to {after}")
    return 0


async def _postfix_maps(config: Config, args: argparse.Namespace) -> int:
    from gateway.postfix_maps import DEFAULT_DIRECTORY, lmtp_nexthop, postfix_maps

    try:
        nexthop = lmtp_nexthop(config, args.lmtp)
    except ValueError as exc:
        print(f"intake: {exc}", file=sys.stderr)
        return 2
    maps = postfix_maps(config, nexthop)
    if args.output is None:
        print("# main.cf\n" + maps.main_cf(DEFAULT_DIRECTORY), end="")
        for name, text in maps.files().items():
            print(f"\n# {DEFAULT_DIRECTORY / name}\n{text}", end="")
        return 0
    try:
        directory = await asyncio.to_thread(maps.write, Path(args.output))
    except OSError as exc:
        print(f"intake: cannot write {args.output}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    print(maps.main_cf(directory), end="")
    return 0


async def _check_config(config: Config, args: argparse.Namespace) -> int:
    # main() loaded it: every table is checked by now, and any problem reported.
    queues = ", ".join(q.name for q in config.queue)
    addresses = config.intake.addresses + ["@" + d for d in config.intake.domains]
    print(f"{config.source}: ok (queues: {queues}; addresses: {', '.join(addresses)}; "
          f"{len(config.rules.rules)} rules, {len(config.rules.components)} components, "
          f"{len(config.webhooks)} webhooks)")
    return 0


async def _health(config: Config, args: argparse.Namespace) -> int:
    """What is wrong, as a Nagios-style check: one line (or --json), and the exit
    code 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (gateway/health_report.py)."""
    from gateway.health_report import Severity, build_report

    listeners = [("smtp", _reachable(config.smtp_address))]
    if config.lmtp_address:
        listeners.append(("lmtp", _reachable(config.lmtp_address)))
    engine = _engine(config)
    try:
        report = await build_report(config=config, engine=engine, listeners=listeners)
    except Exception as exc:  # noqa: BLE001 - a check that cannot run says UNKNOWN
        print(f"INTAKE UNKNOWN - the check failed: {type(exc).__name__}: {exc}")
        return int(Severity.UNKNOWN)
    finally:
        await engine.dispose()
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.nagios())
    return int(report.severity)


async def _mailboxes(config: Config, args: argparse.Namespace) -> int:
    """`intake mailboxes`: every [[mailbox]] and how its fetching goes; `intake
    mailboxes test NAME`: log in and look (gateway/mailbox/check.py)."""
    if args.action == "test":
        return await _test_mailbox(config, args.name)
    if args.name is not None:
        print("intake mailboxes: a name goes with `test` only", file=sys.stderr)
        return 2
    engine = _engine(config)
    try:
        rows = await _mailbox_rows(engine, config.mailbox)
    finally:
        await engine.dispose()
    if args.json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
    else:
        _print_mailboxes(rows)
    return 0


async def _test_mailbox(config: Config, name: str | None) -> int:
    """Exit 0 when every check passed, 1 when one failed, 2 for an unknown name."""
    from gateway.mailbox.check import check_mailbox

    section = next((m for m in config.mailbox if m.name == name), None)
    if section is None:
        known = ", ".join(m.name for m in config.mailbox) or "none configured"
        print(f"intake mailboxes test: unknown mailbox {name!r} (configured: {known})",
              file=sys.stderr)
        return 2
    engine = _engine(config)
    try:
        result = await check_mailbox(engine, section)
    finally:
        await engine.dispose()
    for line in result.lines:
        print(_printable(line, 500))  # a server's words among them
    return 0 if result.ok else 1


async def _mailbox_rows(engine: Any, sections: list[MailboxSection]) -> list[dict[str, Any]]:
    """Each configured mailbox with its row's state (none yet: never fetched)."""
    from storage.engine import utcnow
    from storage.monitoring import mailbox_figures

    found = await mailbox_figures(engine, [m.name for m in sections])
    now = utcnow()
    rows = []
    for section in sections:
        host, port = section.address
        state = found.get(section.name)
        held = state is not None and state.held(now)
        rows.append({
            "name": section.name, "host": host, "port": port, "tls": section.tls,
            "user": section.user, "mode": section.mode, "after": section.after,
            "move_to": section.move_to, "folders": list(section.folders),
            # A holder that died left `connected` set; its lease has run out since.
            "connected": bool(state and state.connected and held),
            "holder": state.holder if state and held else None,
            "last_fetch_at": _iso(state.last_fetch_at if state else None),
            "last_pass_at": _iso(state.last_pass_at if state else None),
            "failing_since": _iso(state.failing_since if state else None),
            "behind": state.behind if state else 0,
            "fetched": state.fetched if state else 0,
            "last_error": state.last_error if state else None})
    return rows


def _iso(moment: Any) -> str | None:
    return None if moment is None else moment.isoformat(timespec="seconds")


def _printable(value: str, limit: int) -> str:
    """A server's text on a terminal: no control sequences, one line, cut at `limit`."""
    import re

    value = re.sub(r"[\x00-\x1f\x7f-\x9f]+", " ", value).strip()
    return value if len(value) <= limit else value[:limit - 1] + "…"


def _print_mailboxes(rows: list[dict[str, Any]]) -> None:
    shown = _printable  # every text a column shows
    head = ("NAME", "SERVER", "USER", "MODE", "AFTER", "CONNECTED", "HOLDER", "LAST FETCH",
            "BEHIND", "FETCHED", "LAST ERROR")
    table = [head] + [(
        r["name"], f"{r['host']}:{r['port']}", shown(r["user"], 40), r["mode"],
        f"move to {shown(r['move_to'], 30)}" if r["after"] == "move" else r["after"],
        "yes" if r["connected"] else "no", shown(r["holder"] or "-", 40),
        (r["last_fetch_at"] or "never").replace("T", " ").replace("+00:00", "Z"),
        str(r["behind"]), str(r["fetched"]), shown(r["last_error"] or "-", 120))
        for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(head))]
    for line in table:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True))
              .rstrip())
    print(f"{len(rows)} mailbox(es)")


def _reachable(address: tuple[str, int]) -> tuple[str, int]:
    """A listen address as a client reaches it (every address: this host's loopback)."""
    host, port = address
    return {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host), port


def _routing_input(path: str, config: Config) -> Any:
    """Read an .eml file (or a JSON request body) as the rules would see it."""
    from datetime import UTC, datetime

    from gateway.pipeline.building import api_input, email_input
    from parsers.api_request import parse_api_request
    from parsers.mail import parse_email
    from storage.processing import ClaimedItem

    raw = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    json_body = path.endswith(".json") or raw.lstrip()[:1] == b"{"
    item = ClaimedItem(0, "api" if json_body else "smtp", raw, {}, 1, datetime.now(UTC))
    if json_body:
        parsed = parse_api_request(raw)
        if isinstance(parsed, list):
            raise ValueError("; ".join(f"{p.pointer or 'body'}: {p.detail}" for p in parsed))
        return api_input(parsed, item)
    return email_input(parse_email(raw), item)


async def _route(config: Config, args: argparse.Namespace) -> int:
    from routing.api import decide

    rules = config.rules
    try:
        routing_input = await asyncio.to_thread(_routing_input, args.file, config)
    except (OSError, ValueError) as exc:
        print(f"cannot read {args.file}: {exc}", file=sys.stderr)
        return 2
    decision = decide(rules, routing_input)
    if args.json:
        print(json.dumps(decision.to_dict(), indent=2, ensure_ascii=False))
    elif args.explain:
        print(decision.explain())
    else:
        print(f"queue {decision.queue}, priority {decision.priority}, type {decision.type}"
              + (", quarantined" if decision.quarantine else ""))
    return 0


async def _reroute(config: Config, args: argparse.Namespace) -> int:
    from gateway.pipeline.building import REPLY_COLUMNS, api_input, email_input
    from parsers.api_request import parse_api_request
    from parsers.auth_results import spam_from_json, verdicts_from_json
    from parsers.mail import parse_email
    from routing.api import decide
    from storage.actions import open_requests, reroute
    from storage.processing import ClaimedItem

    if not args.references and not args.queue and not args.all_open:
        print("name requests, or use --queue NAME or --all-open", file=sys.stderr)
        return 2
    rules = config.rules
    engine = _engine(config)
    changed = 0
    try:
        rows = await open_requests(engine, args.references or None, args.queue)
        for row in rows:
            item = ClaimedItem(row["item_id"], row["channel"], row["raw"], row["meta"], 1,
                               row["received_at"])
            if row["channel"] == "api":
                parsed = parse_api_request(row["raw"])
                if isinstance(parsed, list):
                    continue
                decision = decide(rules, api_input(parsed, item))
            else:
                # The verdicts of when it came (DNS then, a front MTA's header then).
                flags = row["flags"] or {}
                decision = decide(rules, email_input(
                    parse_email(row["raw"]), item,
                    auth=verdicts_from_json(flags.get("authentication")),
                    spam=spam_from_json(flags.get("spam"))))
            wanted = {column: getattr(decision, name) for name, column in REPLY_COLUMNS.items()}
            changes = {k: v for k, v in wanted.items() if row[k] != v}
            if not changes:
                continue
            changed += 1
            print(f"{row['reference']}: " + ", ".join(
                f"{k} {row[k]} -> {v}" for k, v in changes.items()))
            if not args.dry_run:
                await reroute(engine, row["id"], changes, decision.to_dict(every_rule=False),
                              actor="cli:intake reroute", audit=CLI_AUDIT,
                              reference=row["reference"])
    finally:
        await engine.dispose()
    verb = "would change" if args.dry_run else "changed"
    print(f"{len(rows)} open request(s) checked, {changed} {verb}")
    return 0


async def _quarantine(config: Config, args: argparse.Namespace) -> int:
    from storage.actions import list_by_status, release

    engine = _engine(config)
    try:
        if args.action == "list":
            rows = await list_by_status(engine, "quarantined")
            for row in rows:
                print(f"{row['reference']}\t{row['queue']}\t{row['requester']}\t"
                      f"{row['subject']}")
            print(f"{len(rows)} quarantined request(s)")
            return 0
        failed = 0
        for reference in args.references:
            queue = await release(engine, reference, "cli:intake quarantine release",
                                  audit=CLI_AUDIT)
            if queue is None:
                print(f"{reference}: not quarantined", file=sys.stderr)
                failed += 1
            else:
                print(f"{reference}: released to {queue}")
        return 1 if failed else 0
    finally:
        await engine.dispose()


async def _status_link(config: Config, args: argparse.Namespace) -> int:
    """`intake status-link rotate REFERENCE...`: a new status link for each
    request, mailed to its requester; the old link stops working."""
    from domain.lifecycle import Outcome
    from gateway.delivery.status_links import rotate_link
    from storage.reference import canonical

    engine = _engine(config)
    failed = 0
    try:
        for given in args.references:
            reference = canonical(given) or given
            for _ in range(3):  # changed by someone in between: read it again
                done = await rotate_link(engine, config, reference,
                                         actor="cli:intake status-link", audit=CLI_AUDIT)
                if done.outcome != Outcome.STALE:
                    break
            if done.outcome == Outcome.OK:
                mailed = ("mailed to the requester" if done.mailed
                          else "not mailed (no address we may send to)")
                print(f"{reference}: rotated; the new link was {mailed}")
            else:
                reason = "changing too often, try again" if done.outcome == Outcome.STALE \
                    else "no such request, or it has no status link"
                print(f"{reference}: {reason}", file=sys.stderr)
                failed += 1
    finally:
        await engine.dispose()
    return 1 if failed else 0


async def _tokens(config: Config, args: argparse.Namespace) -> int:
    from storage.migrate import upgrade
    from storage.tokens import create_token, list_tokens, revoke_token

    engine = _engine(config)
    try:
        await upgrade(engine)
        if args.tokens_command == "create":
            unknown = [q for q in args.queue if q not in {x.name for x in config.queue}]
            if unknown:
                print(f"unknown queue: {unknown[0]}", file=sys.stderr)
                return 2
            info, secret = await create_token(engine, name=args.name or args.role,
                                              role=args.role, queues=args.queue,
                                              may_hand_off=not args.no_hand_off,
                                              audit=CLI_AUDIT)
            scope = ", ".join(info.queues) or "all queues"
            hand_off = "" if info.may_hand_off else ", no hand-off to other queues"
            print(f"token {info.id} ({info.name}): role {info.role}, {scope}{hand_off}")
            print("Shown once; store it now. Use it as: Authorization: Bearer <token>")
            print(secret)
        elif args.tokens_command == "list":
            for row in await list_tokens(engine):
                state = "revoked" if row["revoked_at"] else "active"
                print(f"{row['id']}\t{row['name']}\t{row['role']}\t"
                      f"{','.join(row['queues']) or '*'}\t{state}")
        else:
            if not await revoke_token(engine, args.id, audit=CLI_AUDIT):
                print(f"no active token {args.id}", file=sys.stderr)
                return 1
            print(f"token {args.id} revoked")
    finally:
        await engine.dispose()
    return 0


async def _report(config: Config, args: argparse.Namespace) -> int:
    from gateway.report_output import as_csv, as_document, as_table
    from gateway.reports import BadParameter, check_parameters, run_report
    from storage.audit import record
    from storage.engine import utcnow
    from storage.reports import ReportQuery

    try:
        checked = check_parameters(start=args.start, end=args.end, grouping=args.group,
                                   format=args.format)
    except BadParameter as exc:
        print(f"intake report: --{exc.parameter}: {exc.detail}", file=sys.stderr)
        return 2
    query = ReportQuery(start=checked.start, end=checked.end, grouping=checked.grouping,
                        now=utcnow(), queues=args.queue or None)
    engine = _engine(config)
    try:
        rows = await run_report(engine, config.sla, query)
        await record(engine, actor="cli", action="report.download", target="requests",
                     data={"from": checked.start, "to": checked.end,
                           "group": checked.grouping, "format": checked.format,
                           "queues": query.queues})
    finally:
        await engine.dispose()
    if checked.format == "csv":
        sys.stdout.write(as_csv(rows))
    elif checked.format == "json":
        print(json.dumps(as_document(rows, start=checked.start, end=checked.end,
                                     grouping=checked.grouping), indent=2))
    else:
        sys.stdout.write(as_table(rows))
    return 0


async def _reprocess(config: Config, args: argparse.Namespace) -> int:
    from storage.install_key import references
    from storage.processing import requeue_dead

    if not args.all and not args.items:
        print("name inbox items (ids or references) or use --all", file=sys.stderr)
        return 2
    engine = _engine(config)
    try:
        ids: list[int] | None = None
        if not args.all:
            refs = await references(engine)  # this install's, to read references
            ids = []
            for value in args.items:
                item_id = int(value) if value.isdigit() else refs.id_for(value)
                if item_id is None:
                    print(f"not an inbox id or reference: {value}", file=sys.stderr)
                    return 2
                ids.append(item_id)
        count = await requeue_dead(engine, ids, audit=CLI_AUDIT)
    finally:
        await engine.dispose()
    print(f"{count} dead-lettered item(s) queued again; a running `intake serve` takes them")
    return 0


async def _dead_letters(config: Config, args: argparse.Namespace) -> int:
    """Inbox items that failed processing and outbox rows that failed delivery."""
    from storage.outbox import dead_rows, discard_dead, retry_dead
    from storage.processing import dead_items, requeue_dead

    engine = _engine(config)
    try:
        if args.action == "list":
            inbox_rows, outbox_rows = await dead_items(engine), await dead_rows(engine)
            if args.json:
                print(json.dumps({"inbox": inbox_rows, "outbox": outbox_rows}, default=str,
                                 indent=2))
                return 0
            for row in inbox_rows:
                print(f"inbox:{row['id']}\t{row['reference']}\t{row['channel']}\t"
                      f"{row['attempts']}\t{row['last_error']}")
            for row in outbox_rows:
                print(f"outbox:{row['id']}\t{row['reference']}\t{row['kind']}\t"
                      f"{row['attempts']}\t{row['last_error']}")
            print(f"{len(inbox_rows) + len(outbox_rows)} dead-lettered item(s)")
            return 0
        wanted: dict[str, list[int]] = {"inbox": [], "outbox": []}
        for value in args.items:
            kind, _, number = value.rpartition(":")
            if kind not in wanted or not number.isascii() or not number.isdigit():
                print(f"name items as inbox:ID or outbox:ID, not {value!r}", file=sys.stderr)
                return 2
            wanted[kind].append(int(number))
        if not args.items and not args.all:
            print("name items (inbox:ID, outbox:ID) or use --all", file=sys.stderr)
            return 2
        if args.action == "retry":
            count = (await requeue_dead(engine, None if args.all else wanted["inbox"],
                                        audit=CLI_AUDIT)
                     + await retry_dead(engine, None if args.all else wanted["outbox"],
                                        audit=CLI_AUDIT))
            print(f"{count} dead-lettered item(s) queued again")
        else:
            if args.all:
                print("discard needs the items named", file=sys.stderr)
                return 2
            count = await discard_dead(engine, wanted["outbox"], audit=CLI_AUDIT)
            print(f"{count} outbox row(s) discarded (inbox items are kept: reprocess them)")
    finally:
        await engine.dispose()
    return 0


async def _audit(config: Config, args: argparse.Namespace) -> int:
    from gateway.audit_cli import run

    return await run(config, args)


async def _erase(config: Config, args: argparse.Namespace) -> int:
    from gateway.privacy_cli import erase

    engine = _engine(config)
    try:
        return await erase(engine, args)
    finally:
        await engine.dispose()


async def _export(config: Config, args: argparse.Namespace) -> int:
    from gateway.privacy_cli import export

    engine = _engine(config)
    try:
        return await export(engine, args)
    finally:
        await engine.dispose()


async def _parse(config: Config, args: argparse.Namespace) -> int:
    from parsers.json_shape import to_json
    from parsers.mail import parse_email

    try:
        source = sys.stdin.buffer.read if args.file == "-" else Path(args.file).read_bytes
        raw = await asyncio.to_thread(source)
    except OSError as exc:
        print(f"cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return 2
    record = to_json(parse_email(raw))
    if args.json:
        print(json.dumps(record, indent=2, ensure_ascii=False, sort_keys=False))
        return 0
    sender = record["from"] or {}
    print(f"From:        {sender.get('name') or ''} <{sender.get('address') or ''}>")
    print(f"Subject:     {record['subject']}")
    print(f"Message-ID:  {record['message_id']}")
    flags = [name for name in ("auto_reply", "list") if record[name]]
    flags += ["bounce"] if record["bounce"] else []
    print(f"Automatic:   {', '.join(flags) or 'no'}")
    print(f"Attachments: {len(record['attachments'])}")
    print(f"Defects:     {'; '.join(record['defects']) or 'none'}")
    print("\n" + record["new_text"])
    return 0


class _Subcommand(argparse.ArgumentParser):
    """A subcommand's parser (nested ones too): it takes --config as well, so
    `intake check-config --config x` works. SUPPRESS: without it, the value
    given before the subcommand stands."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.add_argument("--config", default=argparse.SUPPRESS,
                          help="TOML config file (also accepted before the subcommand)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="intake", description="Request intake gateway")
    parser.add_argument("--config", help="TOML config file (default: $INTAKE_CONFIG, "
                        "else the embedded default)")
    parser.add_argument("--log-level", default=None, metavar="LEVEL",
                        help=f"{', '.join(LEVELS)} (default: [log] level, else info)")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Subcommand)
    serve = sub.add_parser("serve", help="run SMTP/LMTP, HTTP and the workers")
    serve.add_argument("--processes", type=_positive, metavar="N",
                       help="worker processes sharing the ports (default: [process] count, "
                            "else one per core on PostgreSQL, one on SQLite)")
    # Given by the supervisor to the processes it starts: worker N of several.
    serve.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    sub.add_parser("migrate", help="bring the database schema up to date")
    sub.add_parser("check-config", help="validate the configuration and exit")
    tokens = sub.add_parser("tokens", help="API bearer tokens")
    tokens_sub = tokens.add_subparsers(dest="tokens_command", required=True)
    create = tokens_sub.add_parser("create", help="create a token; printed once, last line")
    create.add_argument("--role", required=True, choices=["admin", "agent", "intake"])
    create.add_argument("--queue", action="append", default=[],
                        help="limit to this queue (repeatable)")
    create.add_argument("--name", help="a label for the token")
    create.add_argument("--no-hand-off", action="store_true",
                        help="may not move requests to queues outside its scope")
    tokens_sub.add_parser("list", help="list tokens (never their secrets)")
    revoke = tokens_sub.add_parser("revoke", help="revoke a token by id")
    revoke.add_argument("id", type=int)
    reprocess = sub.add_parser("reprocess", help="run dead-lettered inbox items again")
    reprocess.add_argument("items", nargs="*", help="inbox ids or references")
    reprocess.add_argument("--all", action="store_true", help="every dead-lettered item")
    parse = sub.add_parser("parse", help="parse an email file and print what was read")
    parse.add_argument("file", help="an .eml file, or - for standard input")
    parse.add_argument("--json", action="store_true", help="the whole record as JSON")
    route = sub.add_parser("route", help="classify and route a mail or JSON body; stores nothing")
    route.add_argument("file", help="an .eml file or a JSON request body (- for stdin)")
    route.add_argument("--explain", action="store_true",
                       help="classification, every rule as hit or miss with why, the decision")
    route.add_argument("--json", action="store_true", help="the decision as JSON")
    reroute = sub.add_parser("reroute", help="apply the current rules to open requests")
    reroute.add_argument("references", nargs="*", help="requests to re-route")
    reroute.add_argument("--queue", help="every open request in this queue")
    reroute.add_argument("--all-open", action="store_true", help="every open request")
    reroute.add_argument("--dry-run", action="store_true", help="show, change nothing")
    quarantine = sub.add_parser("quarantine", help="requests held for review")
    quarantine.add_argument("action", choices=["list", "release"])
    quarantine.add_argument("references", nargs="*")
    status_link = sub.add_parser("status-link", help="a request's status link: `rotate` "
                                 "replaces it and mails the new one to the requester")
    status_link.add_argument("action", choices=["rotate"])
    status_link.add_argument("references", nargs="+", metavar="REFERENCE")
    dead = sub.add_parser("dead-letters",
                          help="items that failed every attempt: list, retry, discard")
    dead.add_argument("action", nargs="?", choices=["list", "retry", "discard"],
                      default="list")
    dead.add_argument("items", nargs="*", help="inbox:ID or outbox:ID")
    dead.add_argument("--all", action="store_true", help="retry every dead-lettered item")
    dead.add_argument("--json", action="store_true")
    add_audit_parser(sub)  # intake audit
    add_retention_parsers(sub)  # intake retention, backup, restore
    report = sub.add_parser("report", help="the desk's figures for a period, per group")
    report.add_argument("--from", dest="start", required=True, metavar="WHEN",
                        help="a date (from its start, UTC) or an RFC 3339 date-time")
    report.add_argument("--to", dest="end", required=True, metavar="WHEN",
                        help="a date (to its end, UTC) or an RFC 3339 date-time (exclusive)")
    report.add_argument("--group", default=None, metavar="BY",
                        help="queue (default), priority, type, channel, component, agent, "
                        "day or week")
    report.add_argument("--format", default=None, metavar="FORMAT",
                        help="table (default), csv or json")
    report.add_argument("--queue", action="append", default=[],
                        help="only this queue (repeatable)")
    health = sub.add_parser("health", help="what is wrong, for Nagios-style checks: exit 0 "
                            "OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN")
    health.add_argument("--json", action="store_true")
    mailboxes = sub.add_parser("mailboxes", help="the IMAP mailboxes and how fetching goes; "
                               "`test NAME`: log in and look, fetch nothing")
    mailboxes.add_argument("action", nargs="?", choices=["list", "test"], default="list")
    mailboxes.add_argument("name", nargs="?", help="the mailbox to test")
    mailboxes.add_argument("--json", action="store_true")
    erase = sub.add_parser("erase", help="erase every trace of one person (right to erasure)")
    erase.add_argument("--requester", required=True, metavar="EMAIL",
                       help="the person's email address")
    erase.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    export = sub.add_parser("export", help="one person's requests, mails and files as a zip "
                            "(right of access)")
    export.add_argument("--requester", required=True, metavar="EMAIL",
                        help="the person's email address")
    export.add_argument("--output", required=True, metavar="FILE", help="the zip to write")
    maps = sub.add_parser("postfix-maps",
                          help="Postfix tables relaying our addresses to the LMTP listener")
    maps.add_argument("--output", metavar="DIR",
                      help="write relay_domains, transport and relay_recipients here and "
                      "print the main.cf lines (default: print everything)")
    maps.add_argument("--lmtp", metavar="HOST:PORT",
                      help="where Postfix reaches the LMTP listener (default: smtp.lmtp_listen)")
    return parser


COMMANDS: dict[str, Command] = {
    "serve": _serve, "migrate": _migrate, "check-config": _check_config, "tokens": _tokens,
    "reprocess": _reprocess, "dead-letters": _dead_letters, "parse": _parse,
    "route": _route, "reroute": _reroute, "quarantine": _quarantine,
    "postfix-maps": _postfix_maps, "report": _report, "health": _health,
    "mailboxes": _mailboxes,
    "audit": _audit,
    "retention": run_retention, "backup": run_backup, "restore": run_restore,
    "erase": _erase, "export": _export, "status-link": _status_link,
}
# The commands that open the database: its location is checked before they run.
DATABASE_COMMANDS = frozenset({"serve", "migrate", "tokens", "reprocess", "dead-letters",
                               "reroute", "quarantine", "report", "health", "mailboxes", "audit",
                               "retention", "backup", "erase", "export", "status-link"})
DATABASE_CREATING_COMMANDS = frozenset({"serve", "migrate"})


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.log_level is not None:
        try:
            parse_level(args.log_level)
        except ValueError as exc:
            print(f"intake: --log-level: {exc}", file=sys.stderr)
            return 2
    configure(args.log_level or "info")  # until the config's [log] is read
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        code = _exit_code(exc)
        return NAGIOS_UNKNOWN if args.command == "health" else code
    # --log-level wins over [log] level; [log] format decides text or JSON lines.
    configure(args.log_level or config.log.level, config.log.format)
    try:
        import uvloop  # optional: a faster event loop when installed

        run: Callable[[Any], int] = uvloop.run
    except ImportError:
        run = asyncio.run
    try:
        if args.command in DATABASE_COMMANDS:
            # Only these two create the database; the others would read an empty one.
            check_location(config.database.url,
                           create=args.command in DATABASE_CREATING_COMMANDS)
        if args.command == "serve":
            check_temporary_directory()
            if args.worker is None:
                supervised = _supervise(config, args)
                if supervised is not None:
                    return supervised
        return run(COMMANDS[args.command](config, args))
    except GatewayError as exc:
        return _exit_code(exc, database=_shown(config.database.url))
    except Exception as exc:
        if not is_storage_fault(exc):
            raise  # a bug: its traceback is what its reader needs
        # A storage fault that no layer translated (migrations open the database
        # directly): the database is down or unreachable, which may pass.
        return _exit_code(unavailable(exc), database=_shown(config.database.url))


# sysexits.h: configuration error, and "temporary failure, try again later".
EX_CONFIG, EX_TEMPFAIL = 2, 75
# `intake health` cannot check without its configuration: Nagios's UNKNOWN.
NAGIOS_UNKNOWN = 3


def _shown(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def _exit_code(exc: GatewayError, *, database: str | None = None) -> int:
    """The CLI edge's one mapping of errors to what is printed and the exit code.
    `database`: named when the database is what is unavailable."""
    if isinstance(exc, UnwritableLocation):
        # Not a wrong setting as such (a read-only file system, a missing
        # directory), but retrying will not help until someone acts: EX_CONFIG.
        print(f"intake: {exc}", file=sys.stderr)
        return EX_CONFIG
    if isinstance(exc, ConfigError):
        # One problem a line (InvalidConfigError, InvalidRulesError list them all).
        for problem in str(exc).splitlines() or [""]:
            print(f"intake: configuration error: {problem}", file=sys.stderr)
        return EX_CONFIG
    if exc.temporary:
        where = f"database {database}: " if database and isinstance(exc, StorageUnavailable) \
            else ""
        print(f"intake: temporarily unavailable, try again later: {where}{exc}",
              file=sys.stderr)
        return EX_TEMPFAIL
    print(f"intake: {exc}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
