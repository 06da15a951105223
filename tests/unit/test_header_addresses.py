"""Address-list fields: the plain-form path gives the stdlib parser's answer.

`plain_addresses` reads `Name <a@b>`, `<a@b>` and `a@b` without
`email.utils.getaddresses`; whenever it answers, the answer must be the one
getaddresses gives (its empty pairs aside, which `addresses` skips), and it
must hand every other form to getaddresses.
"""

from __future__ import annotations

import re
from email.utils import getaddresses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from parsers.header_values import address_pairs, addresses, plain_addresses
from tests.corpus import require_corpus


def _stdlib(value: str) -> list[tuple[str, str]]:
    return [pair for pair in getaddresses([value]) if pair != ("", "")]


PLAIN = [
    ("Person 1 <person1@example.com>", [("Person 1", "person1@example.com")]),
    ("<a@b.example>", [("", "a@b.example")]),
    ("first.last@example.org", [("", "first.last@example.org")]),
    ("J. Smith <j@x.org>, k@y.org", [("J. Smith", "j@x.org"), ("", "k@y.org")]),
    (" , a@b ,", [("", "a@b")]),
    ("=?utf-8?q?J=C3=B6rg?= <j@x.example>", [("=?utf-8?q?J=C3=B6rg?=", "j@x.example")]),
    ("A\tB  C<a@b>", [("A B C", "a@b")]),
    ("o'neil+tag@example.com", [("", "o'neil+tag@example.com")]),
]

# Forms the plain path must leave to the stdlib parser.
NOT_PLAIN = [
    '"Roe, Jane" <jane@example.com>',   # quoted phrase with a comma
    "jane@example.com (Jane Roe)",       # comment
    "Jane (work) <jane@example.com>",
    "staff: a@b, c@d;",                  # group
    "x@y <a@b>",                         # an address as an unquoted name
    "a@[192.0.2.1]",                     # domain literal
    "a..b@example.com",                  # not a dot-atom
    "Jörg <j@example.com>",              # 8-bit text
    "Jane\r\n <jane@example.com>",       # folded
    "<a@b",                              # unclosed
    "a@b_c.example",                     # not a hostname
]


@pytest.mark.parametrize(("value", "pairs"), PLAIN)
def test_plain_addresses__plain_forms_read_as_the_stdlib_reads_them(
        value: str, pairs: list[tuple[str, str]]) -> None:
    assert plain_addresses(value) == pairs == _stdlib(value)


@pytest.mark.parametrize("value", NOT_PLAIN)
def test_plain_addresses__other_forms_go_to_the_stdlib(value: str) -> None:
    assert plain_addresses(value) is None


def test_addresses__both_paths_give_the_same_field() -> None:
    defects: list[str] = []
    fast = addresses(b"Jane Roe <jane@example.com>, bob@example.com", defects, "To")
    slow = addresses(b'"Jane Roe" <jane@example.com>, bob@example.com', defects, "To")
    assert fast == slow
    assert [(a.name, a.address) for a in fast] == [("Jane Roe", "jane@example.com"),
                                                   ("", "bob@example.com")]
    assert defects == []


_PIECES = ["a", "Bo", "x-y", "o'k", "=?utf-8?q?J=C3=B6rg?=", "1", "@", "<", ">", " ", "\t",
           ",", ".", "..", '"', "(", ")", ":", ";", "[", "]", "\\", "é", "_", "\r\n "]


@settings(max_examples=600, deadline=None)
@given(st.lists(st.sampled_from(_PIECES), max_size=14).map("".join))
def test_plain_addresses__whenever_it_answers_the_stdlib_agrees(value: str) -> None:
    pairs = plain_addresses(value)
    if pairs is not None:
        assert pairs == _stdlib(value)


_ATOM = st.text("abcXYZ019!#$%&'*+/=?^_`{|}~-", min_size=1, max_size=6)
_LABEL = st.text("abc019-", min_size=1, max_size=6)
_ADDR = st.builds(lambda local, dom: f"{'.'.join(local)}@{'.'.join(dom)}",
                  st.lists(_ATOM, min_size=1, max_size=3), st.lists(_LABEL, min_size=1, max_size=3))
_NAME = st.lists(st.text("abcXYZ.019'-=?", min_size=1, max_size=6), min_size=1, max_size=3)
_MAILBOX = st.one_of(
    _ADDR, _ADDR.map(lambda a: f"<{a}>"),
    st.builds(lambda n, gap, a: f"{' '.join(n)}{gap}<{a}>", _NAME, st.sampled_from(["", " ", "\t"]),
              _ADDR))


@settings(max_examples=400, deadline=None)
@given(st.lists(_MAILBOX, min_size=1, max_size=4).map(", ".join))
def test_plain_addresses__generated_plain_lists_take_the_plain_path(value: str) -> None:
    pairs = plain_addresses(value)
    assert pairs is not None
    assert pairs == _stdlib(value)


_FIELD = re.compile(rb"^(?:from|to|cc|reply-to):[ \t]*(.*(?:\r?\n[ \t].*)*)", re.I | re.M)


def test_plain_addresses__agrees_with_the_stdlib_on_the_corpus() -> None:
    values = []
    for path in sorted((require_corpus() / "mime" / "raw").glob("*")):
        head = path.read_bytes().split(b"\n\n", 1)[0].split(b"\r\n\r\n", 1)[0]
        values += [m.group(1).decode("ascii", "replace").rstrip("\r")
                   for m in _FIELD.finditer(head)]
    plain = [v for v in values if plain_addresses(v) is not None]
    assert len(plain) >= 20, "the corpus should hold plain address fields"
    for value in plain:
        assert plain_addresses(value) == _stdlib(value), value


def test_address_pairs__several_fields_as_getaddresses_reads_them() -> None:
    plain = ["Ann <ann@example.com>", "bob@example.com, <cy@example.com>"]
    assert address_pairs(plain) == _stdlib(", ".join(plain)) == [
        ("Ann", "ann@example.com"), ("", "bob@example.com"), ("", "cy@example.com")]
    mixed = ["Ann <ann@example.com>", '"Roe, Bob" <bob@example.com>']
    assert address_pairs(mixed) == getaddresses(mixed)
