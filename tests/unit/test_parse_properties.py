"""Property tests: any bytes, and corpus messages mutated at random, parse without error, fast."""

from __future__ import annotations

import time
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from parsers.json_shape import to_json
from parsers.mail import parse_email
from tests.corpus import corpus_dir

_SECONDS = 1.0

_FRAGMENTS = [
    b"\r\n",
    b"\n",
    b"\r",
    b"\x00",
    b"--",
    b"boundary=",
    b"Content-Type: multipart/mixed; ",
    b"Content-Transfer-Encoding: base64\r\n",
    b"=?utf-8?B?",
    b"?=",
    b"=?iso-2022-jp?Q?",
    b"\x1b$B",
    b"begin 644 x\r\n",
    b"end\r\n",
    b"> ",
    b"On Mon, X wrote:\r\n",
    b"<html>",
    b"<blockquote>",
    b"charset=",
    b"filename*0*=",
    b"'",
    b'"',
    b";",
    b":",
    b"\xff\xfe",
]


def _check(raw: bytes) -> None:
    started = time.process_time()  # CPU time: the machine is shared
    parsed = parse_email(raw)
    to_json(parsed)
    assert time.process_time() - started < _SECONDS
    # parse_email catches its own failures; one showing up here is still a bug.
    assert not [d for d in parsed.defects if d.startswith("parser error")]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4096))
def test_properties__arbitrary_bytes(raw: bytes) -> None:
    _check(raw)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(_FRAGMENTS), st.binary(max_size=40)), max_size=120))
def test_properties__mime_like_fragments(pieces: list[bytes]) -> None:
    _check(b"".join(pieces))


def _corpus_messages() -> list[bytes]:
    folder = corpus_dir() / "mime" / "raw"
    if not folder.is_dir():
        return [b"From: a@example.com\r\nSubject: x\r\n\r\nhello\r\n"]
    return [path.read_bytes() for path in sorted(Path(folder).glob("*.box"))]


_MESSAGES = _corpus_messages()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(range(len(_MESSAGES))),
    st.lists(st.tuples(st.floats(0, 1), st.integers(0, 3), st.binary(max_size=16)), max_size=8),
)
def test_properties__mutated_corpus_messages(
    index: int, edits: list[tuple[float, int, bytes]]
) -> None:
    raw = bytearray(_MESSAGES[index])
    for where, kind, data in edits:
        position = int(where * len(raw))
        if kind == 0:
            raw[position:position] = data  # insert
        elif kind == 1:
            del raw[position : position + len(data) * 50]  # cut a stretch
        elif kind == 2:
            raw[position : position + len(data)] = data  # overwrite
        else:
            raw[position:position] = raw[position : position + 2000]  # duplicate a stretch
    _check(bytes(raw))
