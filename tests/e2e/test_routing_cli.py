"""The routing commands and SIGHUP reload, as an operator runs them."""

from __future__ import annotations

import asyncio
import json
import signal
import smtplib
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from storage import queries
from tests.e2e.test_cli import intake
from tests.e2e.test_routing import RULES
from tests.helpers import wait_for
from tests.process import ServeProcess

OUTAGE = (b"From: Carol <carol@example.com>\r\nTo: support@localhost\r\n"
          b"Subject: Portal down\r\nMessage-ID: <cli1@example.com>\r\n\r\nNobody can log in.\r\n")


def config_file(tmp_path: Path, db_url: str, extra: str = "") -> Path:
    path = tmp_path / "intake.toml"
    path.write_text(RULES.replace("[intake]", f'[database]\nurl = "{db_url}"\n\n[intake]', 1)
                    + extra)
    return path


def test_check_config__rule_errors_name_file_line_and_rule(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(RULES + '''
[[rule]]
name = "catch-all"
stop = true
then = { queue = "general" }

[[rule]]
name = "never reached"
when = { subject.contains = "x" }
then = { queue = "ops" }

[[rule]]
name = "bad regex"
when = { subject.matches = "(unclosed" }
then = { queue = "nowhere" }
''')
    result = intake("check-config", config=bad)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    text = bad.read_text().splitlines()
    for rule in ("never reached", "bad regex"):
        line = next(x for x in lines if rule in x)
        number = int(line.split(f"{bad}:")[1].split(":")[0])
        assert f'name = "{rule}"' in "\n".join(text[number - 3:number + 2]), line
    assert any("unknown queue 'nowhere'" in x for x in lines)
    assert any("can never" in x or "unreachable" in x or "never be reached" in x
               for x in lines if "never reached" in x)


def test_check_config__valid_rules(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text(RULES)
    result = intake("check-config", config=good)
    assert result.returncode == 0, result.stderr
    assert "5 rules, 1 components, 0 webhooks" in result.stdout


def test_route__explain_prints_hits_misses_and_decision(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(RULES)
    eml = tmp_path / "m.eml"
    eml.write_bytes(OUTAGE)
    result = intake("route", str(eml), "--explain", config=cfg)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "queue        ops" in out and "priority     P1" in out
    assert "HIT         outage: subject matches" in out
    assert "MISS        billing address" in out
    decided = json.loads(intake("route", str(eml), "--json", config=cfg).stdout)
    assert decided["matched"] == ["outage"] and decided["stopped_by"] == "outage"
    body = tmp_path / "b.json"
    body.write_text(json.dumps({"requester": {"email": "a@spam.example"}, "subject": "hi",
                                "body": "x"}))
    quarantined = intake("route", str(body), config=cfg)
    assert "queue review" in quarantined.stdout and "quarantined" in quarantined.stdout


async def test_reroute__applies_current_rules_and_records_it(
        db_url: str, engine: AsyncEngine, tmp_path: Path) -> None:
    path = config_file(tmp_path, db_url)
    server = ServeProcess(path, tmp_path / "serve.log")
    server.start()
    try:
        def send() -> str:
            with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=10) as client:
                client.ehlo()
                client.mail("carol@example.com")
                client.rcpt("support@localhost")
                data = OUTAGE.replace(b"Portal down", b"Printer jam")
                return client.data(data.replace(b"Nobody can log in.", b"Jammed."))[1] \
                    .split()[-1].decode()

        ref = await asyncio.to_thread(send)

        async def landed() -> bool:
            found = await queries.get_request(engine, ref)
            return bool(found and found["status"] == "new")

        await wait_for(landed)
        assert (await queries.get_request(engine, ref))["queue"] == "general"  # type: ignore[index]

        # New rule, applied to what is already open; then the running server reloads on SIGHUP.
        path.write_text(path.read_text() + '''
[[rule]]
name = "printers"
when = { subject.contains = "printer" }
then = { queue = "ops", priority = "P2" }
''')
        dry = intake("reroute", "--all-open", "--dry-run", config=path)
        assert f"{ref}: queue general -> ops" in dry.stdout and "would change" in dry.stdout
        assert (await queries.get_request(engine, ref))["queue"] == "general"  # type: ignore[index]
        done = intake("reroute", ref, config=path)
        assert done.returncode == 0 and "1 changed" in done.stdout
        request = await queries.get_request(engine, ref)
        assert request is not None
        assert (request["queue"], request["priority"]) == ("ops", "P2")
        event = request["timeline"][-1]
        assert event["kind"] == "rerouted" and event["actor"] == "cli:intake reroute"
        assert event["data"]["changes"] == {"queue": "ops", "priority": "P2"}

        server.signal(signal.SIGHUP)
        await asyncio.sleep(0.5)
        assert "rules reloaded" in server.log_text()
    finally:
        server.signal(signal.SIGTERM)
        server.wait()


def test_check_config__service_level_errors_name_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(RULES + '''
[[sla]]
name = "standard"
first_response = "soon"

[[escalation]]
name = "x"
when = { breached = "first_response" }
then = { queue = "nowhere" }
''')
    result = intake("check-config", config=bad)
    assert result.returncode == 2
    assert f"{bad}: key sla[0].first_response" in result.stderr
    assert f"{bad}: key escalation[0].then.queue" in result.stderr
