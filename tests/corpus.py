"""Where the shared public email corpus lives, for tests and benchmarks.

The corpus is read by path, never copied into the project: INTAKE_CORPUS_DIR,
else ../shared/corpus beside the checkout. Outside CI a missing corpus skips
the tests that need it (with the reason shown); in CI it fails them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def corpus_dir() -> Path:
    return Path(os.environ.get("INTAKE_CORPUS_DIR", ROOT.parent / "shared" / "corpus"))


def require_corpus() -> Path:
    """The corpus folder, or skip (fail in CI) when it is not there."""
    path = corpus_dir()
    if not (path / "README.md").exists():
        message = f"email corpus not found at {path} (set INTAKE_CORPUS_DIR)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path
