"""Time parse_email over the corpus against the bare stdlib parse, in the same run.

    .venv/bin/python benchmarks/parse_throughput.py [--seconds N]

Both parsers take turns over the same messages (mime/raw and the .eml of
replies/) for about N seconds each (default 5), so machine load hits both
alike. Target: the full parse costs at most 2x the bare
email.message_from_bytes(raw, policy=email.policy.default).
"""

from __future__ import annotations

import email
import email.policy
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from parsers.mail import parse_email  # noqa: E402
from tests.corpus import corpus_dir  # noqa: E402


def _bare(raw: bytes) -> object:
    return email.message_from_bytes(raw, policy=email.policy.default)


def _messages(corpus: Path) -> list[bytes]:
    paths = sorted((corpus / "mime" / "raw").glob("*.box"))
    paths += sorted((corpus / "replies").rglob("*.eml"))
    return [path.read_bytes() for path in paths]


def _one_round(parse: Callable[[bytes], object], messages: list[bytes]) -> float:
    started = time.perf_counter()
    for raw in messages:
        parse(raw)
    return time.perf_counter() - started


def main() -> int:
    seconds = float(sys.argv[sys.argv.index("--seconds") + 1]) if "--seconds" in sys.argv else 5.0
    corpus = corpus_dir()
    if not (corpus / "README.md").exists():
        print(f"corpus not found at {corpus} (set INTAKE_CORPUS_DIR)")
        return 2
    messages = _messages(corpus)
    size = sum(map(len, messages))
    _one_round(parse_email, messages)  # warm imports and caches
    totals = {"bare": 0.0, "full": 0.0}
    rounds = 0
    while totals["full"] + totals["bare"] < 2 * seconds:
        # Interleaved rounds: both see the same background load.
        totals["bare"] += _one_round(_bare, messages)
        totals["full"] += _one_round(parse_email, messages)
        rounds += 1
    count = len(messages) * rounds
    bare_rate = count / totals["bare"]
    full_rate = count / totals["full"]
    print(f"{len(messages)} messages ({size / 1e6:.1f} MB) x {rounds} rounds")
    print(
        f"bare email.message_from_bytes(policy=default): {bare_rate:8.0f} msgs/s "
        f"({1000 / bare_rate:.2f} ms/msg)"
    )
    print(
        f"full parsers.mail.parse_email:                 {full_rate:8.0f} msgs/s "
        f"({1000 / full_rate:.2f} ms/msg)"
    )
    ratio = totals["full"] / totals["bare"]
    print(f"cost ratio full/bare: {ratio:.2f}x (target <= 2.00x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
