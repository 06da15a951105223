"""Print the parsers' scores on the shared corpus, per field and overall.

    .venv/bin/python benchmarks/corpus_scores.py [--failures]

The corpus is read from INTAKE_CORPUS_DIR or ../shared/corpus.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.corpus_scoring import SCORERS  # noqa: E402
from tests.corpus import corpus_dir  # noqa: E402

BARS = {
    ("mime", "all"): "bar: >= 70 of 74",
    ("talon", "quotation"): "bar: >= 95%",
    ("email_reply_parser", "pinned"): "bar: >= 8 pinned texts",
}


def main() -> int:
    corpus = corpus_dir()
    if not (corpus / "README.md").exists():
        print(f"corpus not found at {corpus} (set INTAKE_CORPUS_DIR)")
        return 2
    show_failures = "--failures" in sys.argv
    started = time.perf_counter()
    for group, scorer in SCORERS.items():
        for name, score in scorer(corpus).items():
            bar = BARS.get((group, name), "")
            print(f"{group:24} {name:18} {score!s:18} {bar}")
            if show_failures and score.failures:
                for failure in score.failures:
                    print(f"{'':44}- {failure}")
    print(f"scored in {time.perf_counter() - started:.1f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
