"""Each adversarial input of cases.toml parses, within its time, to its expected outcome."""

from __future__ import annotations

import time
import tomllib
from pathlib import Path
from typing import Any

import pytest

from parsers.mail import parse_email
from tests.adversarial import generators

HERE = Path(__file__).parent
CASES: list[dict[str, Any]] = tomllib.loads((HERE / "cases.toml").read_text("utf-8"))["case"]


def _input(case: dict[str, Any]) -> bytes:
    if "file" in case:
        return (HERE / "inputs" / case["file"]).read_bytes()
    recipe = getattr(generators, case["generator"])
    return bytes(recipe(case["size"]))


@pytest.mark.parametrize("case", CASES, ids=[case["name"] for case in CASES])
def test_adversarial__input_outcome(case: dict[str, Any]) -> None:
    raw = _input(case)
    # CPU time, not wall time: the test machine is shared with other work.
    started = time.process_time()
    parsed = parse_email(raw)
    elapsed = time.process_time() - started
    assert elapsed < case["seconds"], f"{elapsed:.2f}s"
    for wanted in case.get("defects", []):
        assert any(wanted in defect for defect in parsed.defects), parsed.defects
    if "subject" in case:
        assert parsed.subject == case["subject"]
    if "text_contains" in case:
        assert case["text_contains"] in parsed.text
    if "new_text" in case:
        assert parsed.new_text == case["new_text"]
    if "attachments" in case:
        assert len(parsed.attachments) == case["attachments"]
    if "max_attachments" in case:
        assert len(parsed.attachments) <= case["max_attachments"]
    if "to_count" in case:
        assert len(parsed.to) == case["to_count"]


def test_adversarial__folder_stays_small() -> None:
    size = sum(path.stat().st_size for path in HERE.rglob("*") if path.is_file())
    assert size < 2 * 1024 * 1024
