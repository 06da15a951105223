"""Score the parsers against the shared public corpus (see its README for the rules).

Used by benchmarks/corpus_scores.py (prints) and tests/integration/test_corpus_*.py
(asserts the bars). Reads the corpus by path; never copies it.
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.utils import parseaddr
from pathlib import Path
from typing import Any

from parsers.html_quotes import strip_html_quotes
from parsers.html_text import html_to_text
from parsers.mail import parse_email
from parsers.reply_quotes import strip_quotes
from parsers.reply_text import reply_text
from parsers.signatures import split_signature

MIME_FIELDS = (
    "subject",
    "from_email",
    "from_display_name",
    "attachment_hashes",
    "attachment_names",
)


@dataclass
class Score:
    passed: int = 0
    total: int = 0
    failures: list[str] = field(default_factory=list)

    def add(self, ok: bool, label: str) -> None:
        self.total += 1
        self.passed += ok
        if not ok:
            self.failures.append(label)

    def __str__(self) -> str:
        percent = 100 * self.passed / self.total if self.total else 0.0
        return f"{self.passed}/{self.total} ({percent:.1f}%)"


def _rows(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            if line.strip():
                yield json.loads(line)


def _squash(text: str | None) -> str:
    return " ".join((text or "").split())


def _declares_name(raw_from: str | None) -> bool:
    if not raw_from:
        return False
    name, _ = parseaddr(raw_from)
    return bool(name.strip(" \"'"))


@dataclass(frozen=True)
class MimeView:
    """The five scored fields, as one parser reads a message."""

    subject: str
    from_name: str
    from_address: str
    attachments: frozenset[tuple[str, str | None]]  # (sha256, file name)


def ours(raw: bytes) -> MimeView:
    parsed = parse_email(raw)
    sender = parsed.from_
    return MimeView(
        subject=parsed.subject,
        from_name=sender.name if sender else "",
        from_address=sender.address if sender else "",
        attachments=frozenset((a.sha256, a.filename) for a in parsed.attachments),
    )


def stdlib(raw: bytes) -> MimeView:
    """Python's own parser, used plainly: the baseline the README mentions (about 45)."""
    message = email.message_from_bytes(raw, policy=email.policy.default)

    def header(name: str) -> str:
        try:
            return str(message.get(name) or "")
        except Exception:  # the default policy raises on some broken headers
            return ""

    name, address = parseaddr(header("from"))
    found = set()
    for part in message.walk():
        if part.is_multipart() or not (part.get_filename() or part.is_attachment()):
            continue
        try:
            content = part.get_payload(decode=True) or b""
        except Exception:  # the baseline keeps going where it can
            continue
        found.add((hashlib.sha256(content).hexdigest(), part.get_filename()))
    return MimeView(header("subject"), name, address, frozenset(found))


def score_mime(corpus: Path, view: Callable[[bytes], MimeView] = ours) -> dict[str, Score]:
    """Per-field scores and "all": messages with all five fields right."""
    scores = {name: Score() for name in (*MIME_FIELDS, "all")}
    for row in _rows(corpus / "mime" / "expected.jsonl"):
        expected = row["expected"]
        seen = view((corpus / "mime" / row["file"]).read_bytes())
        checks = {
            "subject": _squash(seen.subject) == _squash(expected.get("subject")),
            "from_email": seen.from_address.lower() == (expected.get("from_email") or "").lower(),
            "from_display_name": not _declares_name(row.get("annot_raw_from_header"))
            or _squash(seen.from_name).strip("\"'")
            == _squash(expected.get("from_display_name")).strip("\"'"),
        }
        wanted = [
            a for a in expected.get("attachments", []) if not a.get("zammad_synthetic_body_copy")
        ]
        hashes = {sha for sha, _ in seen.attachments}
        checks["attachment_hashes"] = all(a["sha256"] in hashes for a in wanted)
        # Several parts may share content: look for the hash and the name together.
        checks["attachment_names"] = all(
            (a["sha256"], a["filename"]) in seen.attachments
            for a in wanted
            if a.get("annot_raw_part_declares_name")
        )
        for name, ok in checks.items():
            scores[name].add(ok, row["file"])
        scores["all"].add(all(checks.values()), row["file"])
    return scores


def _talon_input(corpus: Path, row: dict[str, Any]) -> str:
    if row.get("input") is not None:
        return str(row["input"])
    return (corpus / "replies" / "talon" / row["file"]).read_text("utf-8", errors="replace")


def score_talon(corpus: Path) -> dict[str, Score]:
    """Quotation rows (the bar) and signature rows (reported) of mailgun/talon."""
    quotation, signature = Score(), Score()
    for row in _rows(corpus / "replies" / "talon" / "expected.jsonl"):
        if row.get("config_patched_in_test"):
            continue
        label = row["path"]
        expected = row["expected"]
        if row["task"] == "signature":
            body, sig = split_signature(_talon_input(corpus, row))
            if "text" in expected:
                ok = (body, sig) == (expected["text"], expected["signature"])
            else:
                ok = (sig or "").strip() == expected["signature"].strip()
            signature.add(ok, label)
            continue
        if "properties" in expected:
            parsed = parse_email((corpus / "replies" / "talon" / row["file"]).read_bytes())
            quotation.add(bool(parsed.new_text.strip()) and "From" not in parsed.new_text, label)
            continue
        source = _talon_input(corpus, row)
        if row["file"].endswith(".html"):
            # Our reply is text: compare with the text of talon's reply HTML, spaces aside.
            want = expected.get("reply_text")
            if want is None:
                want = html_to_text(expected["reply_html"])
            got = strip_html_quotes(source)
            quotation.add(re.sub(r"\s+", "", got) == re.sub(r"\s+", "", want), label)
            continue
        got = strip_quotes(source)
        if row["compare"] == "exact_after_strip":
            quotation.add(got.strip() == expected["reply_text"].strip(), label)
        else:
            quotation.add(got == expected["reply_text"], label)
    return {"quotation": quotation, "signature": signature}


def score_email_reply_parser(corpus: Path) -> dict[str, Score]:
    """Pinned visible texts (the bar) and the gem's unasserted reference output (reported)."""
    pinned, reference = Score(), Score()
    base = corpus / "replies" / "email_reply_parser"
    for row in _rows(base / "expected.jsonl"):
        text = (base / row["file"]).read_text("utf-8", errors="replace")
        got = reply_text(text)
        want = row["expected"].get("exact_visible_text")
        if want is not None:
            pinned.add(got == want, row["file"])
        gem = row.get("reference_output_of_gem_at_commit_NOT_asserted", {}).get("visible_text")
        if gem is not None and "truncated" not in str(
            row["reference_output_of_gem_at_commit_NOT_asserted"].get("note", "")
        ):
            reference.add(_squash(got) == _squash(gem), row["file"])
    return {"pinned": pinned, "reference": reference}


SCORERS: dict[str, Callable[[Path], dict[str, Score]]] = {
    "mime": score_mime,
    "mime (stdlib baseline)": lambda corpus: score_mime(corpus, stdlib),
    "talon": score_talon,
    "email_reply_parser": score_email_reply_parser,
}
