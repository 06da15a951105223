"""DKIM body hashes computed in slices (gateway/sender_auth/body_hash.py) are
dkimpy's, byte for byte: compared with dkimpy's own canonicalization on
generated bodies, with slices small enough that every boundary case falls on
a cut."""

from __future__ import annotations

import hashlib
import re

import pytest
from dkim import rfc822_parse
from dkim.canonicalization import Relaxed, Simple
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.sender_auth import body_hash as module
from gateway.sender_auth.body_hash import body_hash, split_message

# Pieces that make every case: line breaks of each kind, runs of white space,
# trailing white space, empty lines, a body without a final break.
_PIECES = st.sampled_from([b"a", b"xyz", b" ", b"\t", b"  \t ", b"\r", b"\n", b"\r\n",
                           b"\r\n\r\n", b" \r\n", b"\r\r\n"])
_BODIES = st.lists(_PIECES, max_size=60).map(b"".join)


def dkimpy(body: bytes, relaxed: bool, length: int | None = None) -> bytes:
    normal = b"\r\n".join(re.split(b"\r?\n", body))  # as dkimpy's parser leaves it
    canonical = (Relaxed if relaxed else Simple).canonicalize_body(normal)
    return hashlib.sha256(canonical if length is None else canonical[:length]).digest()


@settings(max_examples=400, deadline=None)
@given(body=_BODIES, relaxed=st.booleans(), slice_size=st.integers(1, 12),
       length=st.none() | st.integers(0, 80))
def test_the_same_as_dkimpy(body: bytes, relaxed: bool, slice_size: int,
                            length: int | None) -> None:
    saved = module.SLICE
    module.SLICE = slice_size
    try:
        assert body_hash(body, relaxed, hashlib.sha256, length) == dkimpy(body, relaxed, length)
        prefix = b"X: y\r\n\r\n"
        assert body_hash(prefix + body, relaxed, hashlib.sha256, length, len(prefix)) == (
            dkimpy(body, relaxed, length))
    finally:
        module.SLICE = saved


@pytest.mark.parametrize("raw", [
    b"From: a\r\nTo: b\r\n\r\nbody\r\n", b"From: a\n\nbody\n", b"\r\nbody only\r\n",
    b"From: a\r\n", b"From: a", b"From: a\r\n\nbody\r\n\r\n", b"From: a\n\r\nbody",
    b"From: a\r\n folded\r\n\r\n\r\nbody", b"", b"From: a\r\r\nX: b\r\n\r\nbody",
])
def test_the_header_section_ends_where_dkimpy_ends_it(raw: bytes) -> None:
    parts = split_message(raw, 1000)
    assert parts is not None
    head, start = parts
    body = raw[start:]
    headers, dkimpy_body = rfc822_parse(raw)
    assert rfc822_parse(head + b"\r\n") == (headers, b"")
    assert b"\r\n".join(re.split(b"\r?\n", body)) == dkimpy_body


def test_a_header_section_past_the_bound() -> None:
    assert split_message(b"X: " + b"a" * 2000 + b"\r\n\r\nbody", 1000) is None
    assert split_message(b"X: " + b"a" * 2000, 1000) is None
    assert split_message(b"X: a\r\n\r\n" + b"b" * 5000, 1000) is not None
