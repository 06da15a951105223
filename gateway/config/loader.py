"""The one way a configuration file becomes a `Config`.

The file is read and parsed (tomllib) once. Every top-level table is given to
the reader that checks it (`TABLES`); a table no reader knows is an unknown
section. Every problem of every table is collected and reported together, one
a line: `FILE: key SECTION.KEY: what` for keys, `FILE:LINE: rule: what` for
routing rules. Start-up, `intake check-config` and reloading all come here.
"""

from __future__ import annotations

import copy
import hashlib
import os
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from domain.errors import ConfigError
from gateway import i18n
from gateway.config.model import Config, Recipe
from gateway.config.sections import Sections
from gateway.config.templates import TemplateSet, read_templates
from gateway.config.webhooks import read_webhooks
from parsers.forms import read_forms
from routing.api import RuleSet, compile_rules, read_routing
from routing.sla import SlaConfig, SlaConfigError, load_sla_config
from routing.sla.escalation import Escalation, EscalationConfigError, load_escalations

# Every top-level table, by the reader that checks it; any other is an unknown section.
_ROUTING = ("routing", "component", "classifier", "rule")  # routing.api.read_routing
_SERVICE_LEVELS = ("calendar", "sla")  # routing.sla.load_sla_config
TABLES = frozenset((
    *Sections.model_fields,  # pydantic: gateway.config.sections
    *_ROUTING,
    *_SERVICE_LEVELS,
    "escalation",  # routing.sla.escalation.load_escalations
    "form",  # parsers.forms.read_forms
    "webhook",  # gateway.config.webhooks.read_webhooks
))

ENV_OVERRIDES: tuple[tuple[str, tuple[str, str]], ...] = (
    ("INTAKE_DATABASE_URL", ("database", "url")),
    ("INTAKE_SMTP_LISTEN", ("smtp", "listen")),
    ("INTAKE_LMTP_LISTEN", ("smtp", "lmtp_listen")),
    ("INTAKE_TLS_LISTEN", ("smtp", "tls_listen")),
    ("INTAKE_HTTP_LISTEN", ("http", "listen")),
    ("INTAKE_PUBLIC_URL", ("http", "public_url")),
    ("INTAKE_SMTP_RELAY", ("outbound", "relay")),
    ("INTAKE_FORM_SECRET", ("http", "form_secret")),
    ("INTAKE_LOG_FORMAT", ("log", "format")),
)

# With no config file: one support form, so a new install can be tried in a browser.
DEFAULT_FORM: dict[str, Any] = {
    "id": "support", "title": "Contact support",
    "intro": "Tell us what you need. We answer by email and give you a reference.",
    "field": [
        {"name": "name", "label": "Your name", "max_length": 200},
        {"name": "email", "label": "Your email address", "kind": "email", "required": True,
         "max_length": 320},
        {"name": "subject", "label": "Subject", "required": True, "max_length": 200},
        {"name": "message", "label": "How can we help?", "kind": "textarea",
         "required": True},
        {"name": "attachments", "label": "Attachments", "kind": "file",
         "hint": "Up to 3 files: images, PDF or plain text, 10 MB each."},
    ],
}


class InvalidConfigError(ConfigError):
    """The configuration has problems; `problems` lists every one, one a line."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(self.problems))


def load_config(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Read the config named by `path` or INTAKE_CONFIG; none means the embedded default."""
    env = os.environ if env is None else env
    chosen = path or env.get("INTAKE_CONFIG")
    if not chosen:
        return build_config({"form": [DEFAULT_FORM]}, "<embedded default>", env)
    file = Path(chosen)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read: {exc.strerror}") from None
    return config_from_text(text, str(file), env)


def config_from_text(text: str, source: str, env: Mapping[str, str]) -> Config:
    """A config file's text, parsed once and checked whole; `InvalidConfigError`
    lists every problem."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidConfigError([f"{source}: invalid TOML: {exc}"]) from None
    return build_config(data, source, env, text=text)


def build_config(data: Mapping[str, Any], source: str, env: Mapping[str, str], *,
                 text: str = "") -> Config:
    """Check parsed config data, with environment overrides applied. `text` is what it
    was parsed from: rule problems name its lines (line 0 without it)."""
    problems: list[str] = []
    merged = _with_overrides(data, env)
    problems += [f"{source}: key {name}: unknown section" for name in merged
                 if name not in TABLES]
    sections, queues = _sections(merged, source, problems)
    rules, issues = read_routing(merged, text, source, queues)
    problems += [str(issue) for issue in issues]
    sla, escalations = _service_levels(merged, source, queues, problems)
    forms, form_problems = read_forms(merged.get("form", []),
                                      None if queues is None else set(queues))
    webhooks, webhook_problems = read_webhooks(merged.get("webhook", []), env)
    problems += [f"{source}: key {p}" for p in (*form_problems, *webhook_problems)]
    templates = _templates(sections, rules, escalations, source, problems)
    if problems or sections is None or rules is None:
        raise InvalidConfigError(problems)
    # The desk's catalogues go into force with a whole valid config, not before.
    if found := i18n.use_folder(sections.desk.locales):
        raise InvalidConfigError([f"{source}: key desk.locales: {p}" for p in found])
    compile_rules(rules)  # now, so the first message does not wait for it
    return Config(**dict(sections), source=source,
                  digest=hashlib.sha256(text.encode()).hexdigest(), rules=rules, sla=sla,
                  escalations=escalations, forms=forms, webhooks=webhooks,
                  templates=templates,
                  recipe=((copy.deepcopy(dict(data)), source, dict(env), text),))


# What a reload takes over from the new file; listeners, database and the rest stay.
RELOADED = ("queue", "rules", "sla", "escalations", "templates", "digest")


def reloaded(config: Config, new: Config) -> Config:
    """`config` with the reloadable parts of `new` (a reload of its file) in force."""
    return config.model_copy(update={**{name: getattr(new, name) for name in RELOADED},
                                     "recipe": (*config.recipe[:1], *new.recipe)
                                     if config.recipe and new.recipe else ()})


def remade(recipe: tuple[Recipe, ...]) -> Config:
    """The config a recipe (`Config.recipe`) describes, made again."""
    start, *reloads = recipe
    config = build_config(start[0], start[1], start[2], text=start[3])
    for data, source, env, text in reloads:
        config = reloaded(config, build_config(data, source, env, text=text))
    return config


def _templates(sections: Sections | None, rules: RuleSet | None,
               escalations: tuple[Escalation, ...], source: str,
               problems: list[str]) -> TemplateSet:
    """Every template read, compiled and rendered against sample values, and
    every template name that rules and escalations give checked against them."""
    folder = sections.outbound.templates if sections is not None else None
    templates, found = read_templates(folder)
    problems += [f"{source}: key outbound.templates: {p}" for p in found]
    known = templates.names | {"default"}  # "default": the queue's, else acknowledgement
    named: list[tuple[str, str | None]] = []
    if rules is not None:
        named.append(("routing.template", rules.settings.template))
        named += [(f"rule[{r.name}].then.template", r.then.template) for r in rules.rules]
    named += [(f"escalation[{e.name}].then.template", getattr(e, "template", None))
              for e in escalations]
    problems += [f"{source}: key {where}: unknown template {name!r} (no {name}.txt in "
                 f"outbound.templates or the built-in ones)"
                 for where, name in named if name is not None and name not in known]
    return templates


def _with_overrides(data: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    merged = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}
    for variable, (section, key) in ENV_OVERRIDES:
        if env.get(variable):
            table = merged.setdefault(section, {})
            if isinstance(table, dict):  # else pydantic says the section must be a table
                table[key] = env[variable]
    return merged


def _sections(merged: Mapping[str, Any], source: str,
              problems: list[str]) -> tuple[Sections | None, list[str] | None]:
    """The gateway's sections, and the queue names the other readers check
    against (None when the queues themselves are wrong: nothing to check)."""
    given = {name: merged[name] for name in Sections.model_fields if name in merged}
    try:
        sections = Sections.model_validate(given)
    except ValidationError as exc:
        errors = exc.errors()
        problems += [f"{source}: key {_location(e['loc'])}: {e['msg']}" for e in errors]
        if any(e["loc"][:1] == ("queue",) for e in errors):
            return None, None
        queues = given.get("queue")
        if queues is None:
            return None, [q.name for q in Sections().queue]
        return None, [q["name"] for q in queues]
    return sections, [q.name for q in sections.queue]


def _service_levels(merged: Mapping[str, Any], source: str, queues: list[str] | None,
                    problems: list[str]) -> tuple[SlaConfig | None, tuple[Escalation, ...]]:
    """`[[calendar]]` and `[[sla]]` (None without `[[sla]]`), and `[[escalation]]`."""
    sla: SlaConfig | None = None
    if any(name in merged for name in _SERVICE_LEVELS):  # calendars are checked even unused
        try:
            checked = load_sla_config(merged)
            sla = checked if merged.get("sla") else None
        except SlaConfigError as exc:
            problems += [f"{source}: key {issue}" for issue in exc.issues]
    escalations: tuple[Escalation, ...] = ()
    try:
        escalations = load_escalations(merged, queues)
    except EscalationConfigError as exc:
        problems += [f"{source}: key {issue}" for issue in exc.issues]
    return sla, escalations


def _location(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts[-1:] = [f"{parts[-1]}[{item}]"] if parts else [f"[{item}]"]
        else:
            parts.append(item)
    return ".".join(parts) or "(top level)"
