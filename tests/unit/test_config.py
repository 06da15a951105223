from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest

from domain.errors import ConfigError
from gateway.config import (
    DEFAULT_DATABASE_URL,
    DEFAULT_FORM,
    InvalidConfigError,
    build_config,
    load_config,
)
from gateway.config.loader import remade
from gateway.rules_in_force import RulesHolder


def test_config__embedded_default() -> None:
    config = load_config(None, env={})
    assert config.database.url == DEFAULT_DATABASE_URL
    assert config.smtp_address == ("127.0.0.1", 2525)
    assert config.http_address == ("127.0.0.1", 8080)
    assert [q.name for q in config.queue] == ["general"]
    assert config.accepts("support@localhost") and config.accepts("SUPPORT@LOCALHOST")
    assert not config.accepts("other@localhost")
    assert config.lmtp_address is None


def test_config__environment_overrides(tmp_path: Path) -> None:
    file = tmp_path / "c.toml"
    file.write_text('[smtp]\nlisten = "0.0.0.0:25"\n[database]\nurl = "sqlite+aiosqlite:///a.db"\n')
    env = {"INTAKE_CONFIG": str(file), "INTAKE_SMTP_LISTEN": "127.0.0.1:2626",
           "INTAKE_HTTP_LISTEN": "[::1]:9000",
           "INTAKE_DATABASE_URL": "postgresql+asyncpg://u@db/intake",
           "INTAKE_LMTP_LISTEN": "127.0.0.1:24"}
    config = load_config(None, env=env)
    assert config.source == str(file)
    assert config.smtp_address == ("127.0.0.1", 2626)
    assert config.http_address == ("::1", 9000)
    assert config.lmtp_address == ("127.0.0.1", 24)
    assert config.database.url == "postgresql+asyncpg://u@db/intake"


def test_config__domains_accept_any_local_part() -> None:
    config = build_config({"intake": {"addresses": [], "domains": ["@Help.Example"]}}, "t", {})
    assert config.accepts("anyone@help.example")
    assert not config.accepts("anyone@sub.help.example")


@pytest.mark.parametrize(("data", "key"), [
    ({"intake": {"max_recipients": 0}}, "intake.max_recipients"),
    ({"http": {"listen": "8080"}}, "http.listen"),
    ({"smtp": {"listen": "host:99999"}}, "smtp.listen"),
    ({"database": {"url": "mysql://x"}}, "database.url"),
    ({"queue": []}, "queue"),
    ({"queue": [{"name": "has space"}]}, "queue[0].name"),
    ({"pipeline": {"workers": -1}}, "pipeline.workers"),
    ({"nonsense": {}}, "nonsense"),
])
def test_config__errors_name_the_key(data: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        build_config(data, "/etc/intake.toml", {})
    assert str(info.value).startswith(f"/etc/intake.toml: key {key}")


def test_config__later_sections_pass_through() -> None:
    config = build_config({"rule": [{"name": "x"}], "component": []}, "t", {})
    assert config.default_queue == "general"


def test_config__public_url() -> None:
    assert build_config({}, "t", {}).public_url == "http://127.0.0.1:8080"
    config = build_config({"http": {"public_url": "https://desk.example/"}}, "t", {})
    assert config.public_url == "https://desk.example"


@pytest.mark.parametrize("listen", ["0.0.0.0:8080", "[::]:8080"])
def test_config__wildcard_listen_needs_a_public_url(listen: str) -> None:
    """Links customers get must never read http://0.0.0.0:8080."""
    with pytest.raises(InvalidConfigError, match="key http: .*public_url is required"):
        build_config({"http": {"listen": listen}}, "t", {})
    env = {"INTAKE_HTTP_LISTEN": listen, "INTAKE_PUBLIC_URL": "https://desk.example"}
    assert build_config({}, "t", env).public_url == "https://desk.example"


EVERYTHING_WRONG = """\
[http]
listen = "8080"

[[queue]]
name = "general"

[[rule]]
name = "bad regex"
when = { subject.matches = "(unclosed" }
then = { queue = "general" }

[[form]]
id = "help"
field = [{ name = "a", kind = "radio" }, { name = "_form_token" }]

[[webhook]]
name = "pager"
url = "ftp://hooks.example/"
events = ["*"]
secret = "s"

[[sla]]
name = "standard"
first_response = "soon"
"""


def test_config__every_problem_of_every_section_at_once(tmp_path: Path) -> None:
    file = tmp_path / "intake.toml"
    file.write_text(EVERYTHING_WRONG)
    with pytest.raises(InvalidConfigError) as info:
        load_config(file, env={})
    problems = info.value.problems
    assert str(info.value).splitlines() == list(problems)  # one problem a line
    expected = [
        f"{file}: key http.listen: ",
        f"{file}:9: bad regex: bad regular expression",
        f"{file}: key form[0].field[0].kind: must be one of",
        f"{file}: key form[0].field[1].name: '_form_token'",
        f"{file}: key webhook[0].url: must be http or https",
        f"{file}: key sla[0].first_response: 'soon'",
    ]
    for start in expected:
        assert any(p.startswith(start) for p in problems), (start, problems)
    assert len(problems) == len(expected)


def test_config__unknown_sections_all_named() -> None:
    with pytest.raises(InvalidConfigError) as info:
        build_config({"databse": {}, "rules": [], "http": {"listen": "x"}}, "t", {})
    assert info.value.problems[:2] == ("t: key databse: unknown section",
                                       "t: key rules: unknown section")
    assert info.value.problems[2].startswith("t: key http.listen")


def test_config__holds_what_each_reader_made() -> None:
    config = build_config({
        "queue": [{"name": "general"}, {"name": "billing"}],
        "rule": [{"name": "bills", "when": {"subject": {"contains": "invoice"}},
                  "then": {"queue": "billing"}}],
        "sla": [{"name": "standard", "first_response": "8h"}],
        "escalation": [{"name": "late", "when": {"breached": "first_response"},
                        "then": {"queue": "billing"}}],
        "form": [DEFAULT_FORM],
        "webhook": [{"name": "pager", "url": "https://hooks.example/", "events": ["*"],
                     "secret_env": "PAGER_KEY"}],
    }, "t", {"PAGER_KEY": "k"})
    assert [r.name for r in config.rules.rules] == ["bills"]
    assert config.sla is not None and [p.name for p in config.sla.policies] == ["standard"]
    assert [e.name for e in config.escalations] == ["late"]
    assert list(config.forms) == ["support"]
    assert [(w.name, w.secret) for w in config.webhooks] == [("pager", "k")]
    # Dumps hold the gateway's tables only, and read back to the same sections.
    data = json.loads(config.model_dump_json(exclude={"source"}))
    assert set(data) == {"intake", "database", "smtp", "http", "pipeline", "threading",
                         "outbound", "broker", "log", "process", "metrics", "health",
                         "queue", "retention", "mailbox", "sender_auth", "desk"}
    assert build_config(data, "t", {}).queue == config.queue


def test_config__broken_queues_are_not_checked_against() -> None:
    with pytest.raises(InvalidConfigError) as info:
        build_config({"queue": [], "form": [{"id": "f", "queue": "x",
                                              "field": [{"name": "a"}]}]}, "t", {})
    assert info.value.problems == ("t: key queue: Value error, at least one [[queue]] is needed",)


RULES = """\
[[queue]]
name = "general"

[[queue]]
name = "ops"

[[rule]]
name = "printers"
when = { subject.contains = "printer" }
then = { queue = "ops" }
"""


def test_rules_holder__reload_with_errors_keeps_the_old_rules(tmp_path: Path) -> None:
    file = tmp_path / "intake.toml"
    file.write_text(RULES)
    holder = RulesHolder.load(load_config(file, env={}))
    rules, queues = holder.rules, holder.queues
    assert holder.status()["last_reload"] is None

    file.write_text(RULES.replace('"ops" }', '"nowhere" }') + '[http]\nlisten = "x"\n'
                    '[[sla]]\nname = "s"\nresolution = "never"\n')
    result = holder.reload()
    assert not result.ok and not result.changed
    assert len(result.errors) == 3
    assert any(e.startswith(f"{file}:10: printers: unknown queue 'nowhere'")
               for e in result.errors)
    assert any(e.startswith(f"{file}: key http.listen") for e in result.errors)
    assert any(e.startswith(f"{file}: key sla[0].resolution") for e in result.errors)
    assert holder.rules is rules and holder.queues == queues
    status = holder.status()
    assert status["rules"] == 1 and status["last_reload"] == {
        "at": result.at, "ok": False, "errors": list(result.errors), "changed": False}

    file.write_text(RULES.replace('name = "ops"', 'name = "printing"')
                    .replace('"ops" }', '"printing" }'))
    result = holder.reload()
    assert result.ok and result.changed
    assert holder.queues == ["general", "printing"]
    assert holder.rules.rules[0].then.queue == "printing"


def test_config__reopen_window_per_queue() -> None:
    config = build_config({"queue": [{"name": "general"},
                                     {"name": "billing", "reopen_days": 0}]}, "t", {})
    assert [(q.name, q.reopen_days) for q in config.queue] == [("general", 14), ("billing", 0)]
    with pytest.raises(InvalidConfigError) as info:
        build_config({"queue": [{"name": "general", "reopen_days": -1}]}, "t", {})
    assert info.value.problems[0].startswith("t: key queue[0].reopen_days")


def test_config__recipe_makes_the_same_config_again_and_after_a_reload(tmp_path: Path) -> None:
    file = tmp_path / "intake.toml"
    file.write_text(RULES + '[outbound]\nfrom_address = "desk@help.example"\n')
    holder = RulesHolder.load(load_config(file, env={"INTAKE_PUBLIC_URL": "https://desk.example"}))
    first = holder.config
    again = remade(pickle.loads(pickle.dumps(first.recipe)))
    assert again.model_dump() == first.model_dump()
    assert again.http.public_url == "https://desk.example"  # the environment's override
    assert [r.then.queue for r in again.rules.rules] == ["ops"]

    # A reload takes the rules of the new text; the rest stays as started.
    file.write_text(RULES.replace('name = "ops"', 'name = "printing"')
                    .replace('"ops" }', '"printing" }')
                    + '[outbound]\nfrom_address = "other@help.example"\n')
    assert holder.reload().ok
    reloaded_config = remade(holder.config.recipe)
    assert reloaded_config.model_dump() == holder.config.model_dump()
    assert holder.config.outbound.from_address == "desk@help.example"  # needs a restart
    assert [q.name for q in reloaded_config.queue] == ["general", "printing"]
    assert [r.then.queue for r in reloaded_config.rules.rules] == ["printing"]
    assert reloaded_config.digest == holder.config.digest != first.digest

    # A copy changed by hand is no longer what its recipe makes.
    changed = holder.config.model_copy(update={"pipeline": holder.config.pipeline})
    assert changed.recipe == () and holder.config.recipe != ()
