"""Time the reply parsers of a git revision against the working tree's, in one run.

    .venv/bin/python benchmarks/reply_cost.py [--rev HEAD] [--seconds N]

The revision's parsers/reply_*.py, signatures.py and html_quotes.py are read with
``git show`` into a temporary package (the working tree is not touched), and
parse_email runs over the corpus (mime/raw and the .eml of replies/) with one
set and then the other, interleaved, so machine load hits both alike; then
reply_text alone over the corpus' plain-text reply inputs. Target: at most 1.10x.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import parsers.html_quotes as new_html  # noqa: E402
import parsers.mail as mail  # noqa: E402
import parsers.reply_text as new_reply  # noqa: E402
from benchmarks.parse_throughput import _messages, _one_round  # noqa: E402
from tests.corpus import corpus_dir  # noqa: E402

_SWAPPED = ("reply_headers", "reply_quotes", "reply_text", "signatures", "html_quotes")
_OPTIONAL = ("reply_phrases",)
_MAIL_NAMES = (
    "text_and_reply",
    "reply_text",
    "without_signature",
)  # a revision may or may not have it


def _revision_modules(rev: str, folder: Path) -> tuple[ModuleType, ModuleType]:
    """The revision's html_quotes and reply_text, importable as ``old_parsers``."""
    package = folder / "old_parsers"
    package.mkdir()
    (package / "__init__.py").write_text("")
    names = _SWAPPED + _OPTIONAL
    for name in names:
        shown = subprocess.run(
            ["git", "-C", str(ROOT), "show", f"{rev}:parsers/{name}.py"],
            capture_output=True,
            text=True,
        )
        if shown.returncode != 0:
            if name in _OPTIONAL:
                continue
            raise SystemExit(f"{rev} has no parsers/{name}.py")
        source = shown.stdout
        for other in names:
            source = source.replace(f"from parsers.{other} ", f"from old_parsers.{other} ")
        (package / f"{name}.py").write_text(source)
    sys.path.insert(0, str(folder))
    return (
        importlib.import_module("old_parsers.html_quotes"),
        importlib.import_module("old_parsers.reply_text"),
    )


def _reply_inputs(corpus: Path) -> list[str]:
    texts = []
    for name in ("talon", "email_reply_parser"):
        for row in (corpus / "replies" / name / "expected.jsonl").read_text().splitlines():
            value = json.loads(row).get("input")
            if isinstance(value, str) and not value.lstrip().startswith("<"):
                texts.append(value)
    return texts


def _interleaved(
    runs: dict[str, Callable[[], float]], seconds: float
) -> tuple[dict[str, float], int]:
    totals = dict.fromkeys(runs, 0.0)
    rounds = 0
    while sum(totals.values()) < 2 * seconds:
        order = list(runs) if rounds % 2 == 0 else list(reversed(runs))
        for name in order:
            totals[name] += runs[name]()
        rounds += 1
    return totals, rounds


def main() -> int:
    rev = sys.argv[sys.argv.index("--rev") + 1] if "--rev" in sys.argv else "HEAD"
    seconds = float(sys.argv[sys.argv.index("--seconds") + 1]) if "--seconds" in sys.argv else 5.0
    corpus = corpus_dir()
    if not (corpus / "README.md").exists():
        print(f"corpus not found at {corpus} (set INTAKE_CORPUS_DIR)")
        return 2
    with tempfile.TemporaryDirectory() as folder:
        old_html, old_reply = _revision_modules(rev, Path(folder))
    versions = {
        rev: (old_html.text_and_reply, old_reply.reply_text, old_reply.without_signature),
        "tree": (new_html.text_and_reply, new_reply.reply_text, new_reply.without_signature),
    }
    messages = _messages(corpus)
    texts = _reply_inputs(corpus)

    def parse_with(name: str) -> float:
        # parse_email looks these names up in its module at call time.
        for attribute, function in zip(_MAIL_NAMES, versions[name], strict=True):
            setattr(mail, attribute, function)
        return _one_round(mail.parse_email, messages)

    def parse_run(name: str) -> Callable[[], float]:
        return lambda: parse_with(name)

    def reply_run(function: Callable[[str], str]) -> Callable[[], float]:
        def run() -> float:
            started = time.perf_counter()
            for text in texts:
                function(text)
            return time.perf_counter() - started

        return run

    for name in versions:
        parse_with(name)  # warm imports and caches
    started = time.perf_counter()
    totals, rounds = _interleaved({name: parse_run(name) for name in versions}, seconds)
    count = len(messages) * rounds
    for name, total in totals.items():
        print(f"parse_email, reply parsers of {name:5}: {1000 * total / count:.3f} ms/msg")
    ratio = totals["tree"] / totals[rev]
    print(f"{len(messages)} messages x {rounds} rounds: tree/{rev} = {ratio:.3f}")
    funcs = {rev: old_reply.reply_text, "tree": new_reply.reply_text}
    totals, rounds = _interleaved({name: reply_run(f) for name, f in funcs.items()}, seconds)
    count = len(texts) * rounds
    for name, total in totals.items():
        print(f"reply_text alone, {name:5}: {1e6 * total / count:.1f} us/text")
    print(f"{len(texts)} texts x {rounds} rounds: tree/{rev} = {totals['tree'] / totals[rev]:.3f}")
    print(f"measured in {time.perf_counter() - started:.1f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
