"""Fuzzing the MIME parser: mutated corpus messages never raise and never take long.

Hypothesis takes real messages from the public corpus and damages them the ways
broken and hostile mail does: flipped and inserted bytes, cut and repeated
spans, splices of two messages, boundary and header lines dropped in anywhere,
line endings swapped. `parse_email` must return a record for every one of them,
within a CPU-time bound per input. CI runs a bounded number of examples;
`INTAKE_FUZZ_EXAMPLES=20000` runs a longer session by hand.
"""

from __future__ import annotations

import os
import time
from functools import cache
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from parsers.mail import parse_email
from parsers.records import ParsedEmail
from tests.corpus import require_corpus

EXAMPLES = int(os.environ.get("INTAKE_FUZZ_EXAMPLES", "1000"))
# CPU seconds one input may take: the corpus's largest message parses in well
# under 0.1 s, so this is a wide margin on a shared machine, not a tight timing.
SECONDS_PER_INPUT = 2.0
# Lines hostile mail is made of, dropped in at random places.
FRAGMENTS = (
    b"\r\n--", b"--boundary\r\n", b"\r\n\r\n", b"Content-Type: multipart/mixed; boundary=",
    b"Content-Transfer-Encoding: base64\r\n", b"Content-Transfer-Encoding: quoted-printable",
    b"=?utf-8?b?", b"=?iso-2022-jp?q?=1B$B", b"?=", b"Content-Type: message/rfc822\r\n\r\n",
    b"begin 644 x.bin\r\n", b"filename*0*=utf-8''", b"\x00", b"\xff\xfe", b"\r", b"\n",
    b"=\r\n", b"Subject: ", b"From: <@>,,\"\r\n", b"Content-Type: text/plain; charset=x-\xff",
)


@cache
def _messages() -> tuple[bytes, ...]:
    folder = require_corpus() / "mime" / "raw"
    return tuple(path.read_bytes() for path in sorted(Path(folder).glob("*.box")))


@st.composite
def _mutated(draw: st.DrawFn) -> bytes:
    messages = _messages()
    data = bytearray(draw(st.sampled_from(messages)))
    for _ in range(draw(st.integers(1, 8))):
        at = draw(st.integers(0, len(data)))
        match draw(st.sampled_from(("flip", "insert", "cut", "repeat", "splice",
                                    "fragment", "endings", "truncate"))):
            case "flip" if data:
                data[min(at, len(data) - 1)] ^= 1 << draw(st.integers(0, 7))
            case "insert":
                data[at:at] = draw(st.binary(min_size=1, max_size=64))
            case "cut":
                del data[at:at + draw(st.integers(1, 4096))]
            case "repeat":
                span = bytes(data[at:at + draw(st.integers(1, 512))])
                data[at:at] = span * draw(st.integers(1, 50))
            case "splice":
                other = draw(st.sampled_from(messages))
                start = draw(st.integers(0, len(other)))
                data[at:] = other[start:]
            case "fragment":
                data[at:at] = draw(st.sampled_from(FRAGMENTS))
            case "endings":
                data = bytearray(bytes(data).replace(b"\r\n", draw(st.sampled_from(
                    (b"\n", b"\r", b"\n\r", b"\r\r\n")))))
            case "truncate":
                del data[at:]
    return bytes(data)


@pytest.fixture(scope="module", autouse=True)
def corpus_present() -> None:
    _messages()  # skips, or fails in CI, without the corpus


@settings(max_examples=EXAMPLES, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(raw=_mutated())
def test_mime_fuzz__mutated_corpus_parses_in_bounded_time(raw: bytes) -> None:
    started = time.process_time()
    parsed = parse_email(raw)
    elapsed = time.process_time() - started
    assert isinstance(parsed, ParsedEmail)
    assert isinstance(parsed.subject, str) and isinstance(parsed.text, str)
    assert elapsed < SECONDS_PER_INPUT, f"{elapsed:.2f}s for {len(raw)} bytes"
