"""Outbound mail templates, read and checked with the rest of the configuration.

Every template (the `outbound.templates` folder, then the built-in ones) is
read into memory and compiled once, when the config is loaded: at start-up,
`intake check-config` and each reload. Each is then checked two ways with
Jinja2's StrictUndefined: the names it uses must be ones we give it
(`jinja2.meta`, which sees every branch), and it must render against sample
values, once with every value filled and once with the optional ones empty.
A template with a mistake is a config error, so a reload that breaks one keeps
the old set, and the files are not read again between reloads.

Templates speak the customer's language: `{% trans %}` blocks and `_()` are
translated from the message catalogues (gateway/i18n), and a desk may write a
template per language, `acknowledgement.de.txt` beside `acknowledgement.txt`.
For a German customer the choice is: the rule's template in German, else as it
is (its `{% trans %}` parts in German), then the same for the queue's, then the
acknowledgement's (the folder's before the built-in one).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import (
    DictLoader,
    Environment,
    StrictUndefined,
    Template,
    TemplateError,
    TemplateNotFound,
    TemplateSyntaxError,
    meta,
    select_autoescape,
)

from gateway.i18n import DEFAULT, available, normalise, prepare, template_functions
from gateway.i18n.codes import primary
from gateway.i18n.templating import NAMES as I18N_NAMES

BUILT_IN = Path(__file__).parents[1] / "delivery" / "templates"
SUFFIX = ".txt"
# The largest template file read (a template is a page of text, not a dump).
MAX_TEMPLATE_BYTES = 256 * 1024

# What each kind of template is given. Notification templates (agents'
# mails) are the ones whose name starts with "notification"; every other one
# is an acknowledgement. Optional values are empty in the second sample.
ACKNOWLEDGEMENT_SAMPLE: dict[str, Any] = {
    "name": "Alice Example", "subject": "Printer on fire", "reference": "7PY9-9T9S",
    "tag": "[#7PY9-9T9S]", "status_url": "https://desk.example.com/v1/status/sample",
    "queue": "general", "signature": "The support team",
    "received_at": "5 January 2026, 09:00 UTC",
}
NOTIFICATION_SAMPLE: dict[str, Any] = {
    "agent": "Bea Agent", "queue": "general", "signature": "The support team",
    "events": [{"kind": "new_request", "label": "New request", "reference": "7PY9-9T9S",
                "subject": "Printer on fire",
                "queue": "general", "priority": "P2", "at": "2026-01-05T09:00:00+00:00",
                "detail": "", "url": "https://desk.example.com/v1/requests/7PY9-9T9S"}],
}
OPTIONAL = ("name", "signature", "agent")
EVENT_OPTIONAL = ("subject", "priority", "detail")


def sample_for(name: str) -> dict[str, Any]:
    return dict(NOTIFICATION_SAMPLE if name.startswith("notification") else
                ACKNOWLEDGEMENT_SAMPLE)


def _emptied(values: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {k: ("" if k in OPTIONAL else v) for k, v in values.items()}
    if "events" in out:
        out["events"] = [{k: ("" if k in EVENT_OPTIONAL else v) for k, v in e.items()}
                         for e in out["events"]]
    return out


def _split(file: str) -> tuple[str, str | None]:
    """`acknowledgement.de.txt` as ("acknowledgement", "de"); a name without a
    language part as (name, None)."""
    stem = file.removesuffix(SUFFIX)
    base, dot, last = stem.rpartition(".")
    code = normalise(last) if dot and base else None
    # Only a plain code counts ("de", "pt_BR"): a queue may be called "eu.x1".
    return (base, code) if code is not None and last.replace("_", "-").lower() == \
        code.lower() else (stem, None)


@dataclass(frozen=True, slots=True)
class TemplateSet:
    """The templates in force, compiled; `names` without the `.txt` (and
    without a language part: `acknowledgement.de.txt` is `acknowledgement`)."""

    sources: Mapping[str, str] = field(default_factory=dict)
    _env: Environment = field(init=False, repr=False, compare=False)
    _variants: dict[tuple[str, str], str] = field(init=False, repr=False, compare=False)
    _compiled: dict[str, Template] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        env = Environment(loader=DictLoader(dict(self.sources)), undefined=StrictUndefined,
                          autoescape=select_autoescape(enabled_extensions=("html",)),
                          keep_trailing_newline=True, auto_reload=False)
        object.__setattr__(self, "_env", prepare(env))
        variants = {}
        for file in self.sources:
            if file.endswith(SUFFIX):
                base, code = _split(file)
                if code is not None:
                    variants[(base, code)] = file.removesuffix(SUFFIX)
        object.__setattr__(self, "_variants", variants)
        object.__setattr__(self, "_compiled", {})

    @property
    def names(self) -> frozenset[str]:
        stems = {n.removesuffix(SUFFIX) for n in self.sources if n.endswith(SUFFIX)}
        return frozenset(stems | {base for base, _ in self._variants})

    def has(self, name: str) -> bool:
        return f"{name}{SUFFIX}" in self.sources

    def render_named(self, template: str, /, language: str | None = None,
                     **values: object) -> str:
        """One template by its file name (without `.txt`), written in `language`."""
        return self._template(f"{template}{SUFFIX}").render(
            **values, **template_functions(language))

    def _template(self, file: str) -> Template:
        """The compiled template, its globals in one dict: jinja2 copies a
        template's globals into every render's context, and its own ChainMap of
        them copies slowly (a fifth of rendering an acknowledgement)."""
        found = self._compiled.get(file)
        if found is None:
            found = self._env.get_template(file)
            found.globals = dict(found.globals)
            self._compiled[file] = found
        return found

    def _in_language(self, name: str, language: str) -> str | None:
        """The file that serves `name` in `language`: its own for the language,
        else for the language without its region, else the one for all."""
        for code in dict.fromkeys((language, primary(language))):
            if (name, code) in self._variants:
                return self._variants[(name, code)]
        return name if self.has(name) else None

    def render(self, template: str | None, *, queue: str | None = None,
               language: str | None = None, **values: object) -> str:
        """The rule's template, else the queue's, else the default acknowledgement,
        each in `language` when there is one for it, written in `language`.
        Raises jinja2's TemplateError when it cannot be rendered."""
        code = normalise(language) or DEFAULT
        names = [*([template] if template else []), *([queue] if queue else []),
                 "acknowledgement"]
        for candidate in names:
            found = self._in_language(candidate, code)
            if found is not None:
                return self.render_named(found, code, queue=queue or "", **values)
        raise TemplateNotFound(template or "acknowledgement")

    def problems(self) -> list[str]:
        """Every template that does not compile, uses a name it is not given, or
        does not render against the samples (in every language there is a
        catalogue for): `FILE: what`, one a line."""
        found: list[str] = []
        languages = sorted(available())
        for file, source in sorted(self.sources.items()):
            name, own = _split(file)
            sample = sample_for(name)
            try:
                unknown = sorted(meta.find_undeclared_variables(self._env.parse(source))
                                 - set(sample) - I18N_NAMES)
                if unknown:
                    found.append(f"{file}: unknown name(s) {', '.join(unknown)}; a template "
                                 f"is given {', '.join(sorted(sample))}")
                    continue
                template = self._env.get_template(file)
                for values in (sample, _emptied(sample)):
                    template.render(**values, **template_functions(own))
                for language in ([] if own else languages):
                    template.render(**sample, **template_functions(language))
            except TemplateSyntaxError as exc:
                found.append(f"{file} line {exc.lineno}: {exc.message}")
            except TemplateError as exc:
                found.append(f"{file}: does not render: {exc.message or type(exc).__name__}")
            except Exception as exc:  # noqa: BLE001 - a filter failing on the sample
                found.append(f"{file}: does not render: {type(exc).__name__}: {exc}")
        return found


def _read_folder(folder: Path, problems: list[str]) -> dict[str, str]:
    sources: dict[str, str] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or not path.is_file():
            continue
        try:
            if path.stat().st_size > MAX_TEMPLATE_BYTES:
                problems.append(f"{path.name}: larger than {MAX_TEMPLATE_BYTES} bytes")
                continue
            sources[path.name] = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(f"{path.name}: cannot read: {exc}")
    return sources


@lru_cache(maxsize=1)
def built_in() -> TemplateSet:
    """The built-in templates alone (a Config made without the loader)."""
    return read_templates(None)[0]


def read_templates(folder: str | None) -> tuple[TemplateSet, list[str]]:
    """The built-in templates overlaid by the folder's, and every problem
    (`what`, for the loader to place under `outbound.templates`)."""
    problems: list[str] = []
    sources = _read_folder(BUILT_IN, problems)
    if folder:
        path = Path(folder)
        if not path.is_dir():
            problems.append(f"folder {folder!r} does not exist or is not a folder")
        else:
            sources |= _read_folder(path, problems)
    templates = TemplateSet(sources)
    problems += templates.problems()
    return templates, problems
