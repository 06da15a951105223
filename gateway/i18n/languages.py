"""Which language to write in, and reading Accept-Language (RFC 9110 12.5.4).

The header comes from anyone: it is read within bounds (its first
`MAX_HEADER` characters, `MAX_RANGES` ranges), each range must look like one
(`de`, `pt-BR`, `*`) and each weight like a qvalue, and whatever does not is
skipped rather than refused: a bad header never stops a page.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from gateway.i18n.catalogues import available
from gateway.i18n.codes import DEFAULT, normalise, primary

MAX_HEADER = 1024
MAX_RANGES = 32
_RANGE = re.compile(r"\*|[A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8}){0,7}")
_QVALUE = re.compile(r"(?:0(?:\.\d{0,3})?|1(?:\.0{0,3})?)")
# Below this, the classifier's guess is not trusted to choose a language.
MIN_DETECTED_SCORE = 0.5


def parse_accept_language(header: str | None) -> list[tuple[str, float]]:
    """The ranges of an Accept-Language header, best first (equal weights keep
    their order), with their weights; q=0 ranges included (they exclude)."""
    if not header:
        return []
    text = header[:MAX_HEADER]
    ranges: list[tuple[str, float, int]] = []
    for position, item in enumerate(text.split(",")[:MAX_RANGES]):
        name, *params = (p.strip() for p in item.split(";"))
        if not _RANGE.fullmatch(name):
            continue
        weight = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                value = value.strip()
                weight = float(value) if _QVALUE.fullmatch(value) else -1.0
        if weight < 0:
            continue  # a weight that is not a qvalue: the range is not understood
        ranges.append((name, weight, position))
    ranges.sort(key=lambda r: (-r[1], r[2]))
    return [(name, weight) for name, weight, _ in ranges]


def match(code: str | None, languages: Iterable[str]) -> str | None:
    """The language among `languages` that serves `code`: the same, else the
    language without its region (`pt` for `pt-BR`), else for a bare language
    one of its regional catalogues (`pt-BR` for `pt`)."""
    wanted = normalise(code)
    if wanted is None:
        return None
    have = set(languages)
    if wanted in have:
        return wanted
    if primary(wanted) in have:
        return primary(wanted)
    regional = sorted(c for c in have if primary(c) == wanted)
    return regional[0] if regional else None


def choose(*, detected: str | None = None, accept_language: str | None = None,
           queue: str | None = None, desk: str | None = None) -> str:
    """The language to write in: the request's detected language, then the
    form's or page's Accept-Language (its best match with a catalogue), then the
    queue's default, then the desk's; each only when there is a catalogue for
    it; else English. A `*` in Accept-Language takes the queue's or desk's."""
    have = available()
    found = match(detected, have)
    if found is not None:
        return found
    ranked = parse_accept_language(accept_language)
    refused = {m for name, weight in ranked if weight == 0 and name != "*"
               if (m := match(name, have)) is not None}
    defaults = [m for m in (match(queue, have), match(desk, have), DEFAULT) if m is not None]
    for name, weight in ranked:
        if weight == 0:
            continue
        if name == "*":
            # Any language will do: ours, unless that one was refused outright.
            return next((d for d in defaults if d not in refused), defaults[0])
        found = match(name, have)
        if found is not None and found not in refused:
            return found
    return defaults[0]


def detected(value: Any, score: Any = 1.0, source: Any = None) -> str | None:
    """The classifier's language guess as a language to write in: None when it
    had too little text (`und`, source `default`) or is unsure."""
    if not isinstance(value, str) or source == "default":
        return None
    if not isinstance(score, int | float) or score < MIN_DETECTED_SCORE:
        return None
    return normalise(value) if value != "und" else None


def from_timeline(timeline: Iterable[Mapping[str, Any]]) -> tuple[str | None, str | None]:
    """A stored request's detected language (its `classified` entry) and the
    Accept-Language its form was sent with (its `received` entry), as stored
    (storage.queries.get_request's `timeline`); None for what is not there."""
    language = accept = None
    for entry in timeline:
        data = entry.get("data") if isinstance(entry, Mapping) else None
        if not isinstance(data, Mapping):
            continue
        kind = entry.get("kind")
        if kind == "classified" and language is None:
            classification = data.get("classification")
            guess = (classification.get("language")
                     if isinstance(classification, Mapping) else None)
            if isinstance(guess, Mapping):
                language = detected(guess.get("value"), guess.get("score"),
                                    guess.get("source"))
        elif kind == "received" and accept is None:
            value = data.get("accept_language")
            accept = value if isinstance(value, str) else None
    return language, accept
