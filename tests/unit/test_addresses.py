"""One address we may send to: exactly one addr-spec, checked (parsers/addresses.py)."""

from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from parsers.addresses import MAX_ADDRESS, AddressError, Mailbox, mailbox_or_none, parse_address

# Each of these names more than one mailbox, hides one, or is not an addr-spec at all.
REFUSED = [
    "victim@example.com,all-staff",                       # the reported injection
    "all-staff,victim@example.com",
    "victim@example.com, all-staff@example.com",
    "victim@example.com;all-staff@example.com",
    "Victim <victim@example.com>",                        # a display name
    "<victim@example.com>",                               # angle brackets
    "<victim@example.com>,<all@example.com>",
    "staff: victim@example.com, all@example.com;",        # group syntax
    "staff:;",
    '"victim,all"@example.com',                           # quoted local part with a comma
    '"victim@example.com"@example.com',
    '"a b"@example.com',
    "victim@example.com (all@example.com)",               # comments
    "victim(comment)@example.com",
    "victim@(comment)example.com",
    "victim@example.com\r\nBcc: all@example.com",         # CR/LF
    "victim@example.com\nall@example.com",
    "victim@example.com\r",
    "vic\x00tim@example.com",                             # NUL and other controls
    "victim@exam\x00ple.com",
    "victim\x7f@example.com",
    "victim\u200b@example.com",                           # invisible and bidi controls
    "victim\u202e@example.com",
    "victim@example.com\u2028",
    "victim@all@example.com",                             # @ twice
    "@example.com", "victim@", "victim", "", "@",
    "victim@example.com.",                                # a trailing dot
    "victim@.example.com", "victim@example..com", ".victim@example.com",
    "victim.@example.com", "vic..tim@example.com",
    "vic tim@example.com", " victim@example.com", "victim@example.com ",  # whitespace
    "victim@example.com\t", "victim\u00a0@example.com", "victim@example.com\u3000",
    "x" * 65 + "@example.com",                            # local part over 64 (RFC 5321 4.5.3.1.1)
    "a@" + ("b" * 63 + ".") * 4 + "com",                  # domain over 255 (4.5.3.1.2)
    "x" * 64 + "@" + ("b" * 61 + ".") * 3 + "example",    # address over 254 (4.5.3.1.3)
    "a@" + "b" * 64 + ".com",                             # a DNS label over 63
    "victim@[127.0.0.1]", "victim@[IPv6:::1]",             # domain literals
    "victim@127.0.0.1", "victim@localhost", "victim@intranet",  # no public domain
    "victim@relay.local", "victim@x.test", "victim@x.invalid", "victim@x.onion",
    "victim@-example.com", "victim@example-.com", "victim@exa_mple.com",
    "victim%evil.example@example.com",                    # the percent hack routes on
    "evil.example!victim@example.com",                    # and so do bang paths
    "@relay.example:victim@example.com",                  # a source route
    "victim@xn--zz.example",                              # not a real A-label
    "=?utf-8?q?victim=40example.com?=",                   # an encoded word
    "victim@example.com\\",
    "victim\\@example.com",
]

ACCEPTED = [
    ("ann@example.com", "ann@example.com"),
    ("Ann@Example.COM", "ann@example.com"),               # stored in lower case, as before
    ("ann.lee+desk@mail.example.co.uk", "ann.lee+desk@mail.example.co.uk"),
    ("o'brien@example.ie", "o'brien@example.ie"),
    ("a/b=c{d}~e@example.org", "a/b=c{d}~e@example.org"),
    ("ann@bücher.example", "ann@xn--bcher-kva.example"),   # IDN: A-labels on the wire
    ("ann@xn--bcher-kva.example", "ann@xn--bcher-kva.example"),
    ("ann@BÜCHER.example", "ann@xn--bcher-kva.example"),
    ("jürgen@example.de", "jürgen@example.de"),           # RFC 6531 (needs SMTPUTF8)
    ("x" * 64 + "@example.com", "x" * 64 + "@example.com"),
    ("a@b.c", "a@b.c"),
]


@pytest.mark.parametrize("text", REFUSED)
def test_parse_address__refuses_all_but_one_plain_addr_spec(text: str) -> None:
    with pytest.raises(AddressError) as raised:
        parse_address(text)
    assert raised.value.reason  # says why, for the person who typed it


@pytest.mark.parametrize(("text", "expected"), ACCEPTED)
def test_parse_address__accepts_and_normalises(text: str, expected: str) -> None:
    mailbox = parse_address(text)
    assert mailbox.addr_spec == expected == str(mailbox)
    assert parse_address(mailbox.addr_spec) == mailbox  # the canonical form is stable


def test_parse_address__smtputf8_only_for_a_non_ascii_local_part() -> None:
    assert parse_address("jürgen@example.de").smtputf8
    assert not parse_address("ann@bücher.example").smtputf8


def test_parse_address__not_a_string() -> None:
    for value in (None, 1, b"ann@example.com", ["ann@example.com"]):
        with pytest.raises(AddressError):
            parse_address(value)  # type: ignore[arg-type]


def test_mailbox_or_none__none_for_anything_but_one_address() -> None:
    assert mailbox_or_none("Ann@Example.com") == Mailbox(local="ann", domain="example.com")
    assert mailbox_or_none('"a,b"@example.com') is None
    assert mailbox_or_none(None) is None


def test_parse_address__lengths_are_octets() -> None:
    with pytest.raises(AddressError):
        parse_address("ü" * 33 + "@example.com")  # 33 characters, 66 octets
    assert parse_address("ü" * 32 + "@example.com").smtputf8


def test_parse_address__huge_input_is_refused_at_once() -> None:
    started = time.perf_counter()
    for text in ("a" * 1_000_000 + "@example.com", "a@" + "b." * 500_000 + "com",
                 "a@" + "xn--" + "a" * 1_000_000 + ".com", "@" * 1_000_000):
        with pytest.raises(AddressError):
            parse_address(text)
    assert time.perf_counter() - started < 1.0  # well under: each is a length check


@given(st.text(max_size=300))
def test_parse_address__any_text_is_one_valid_addr_spec_or_refused(text: str) -> None:
    try:
        mailbox = parse_address(text)
    except AddressError:
        return
    spec = mailbox.addr_spec
    assert spec.count("@") == 1 and len(spec.encode()) <= MAX_ADDRESS
    assert not any(c in spec for c in ' ,;:<>()[]"\\\r\n\t\x00%!')
    assert parse_address(spec) == mailbox


@given(st.lists(st.from_regex(r"[a-z0-9]{1,10}@[a-z]{1,10}\.example", fullmatch=True),
                min_size=2, max_size=4),
       st.sampled_from([",", ", ", ";", " ", "\r\n ", ",\t"]))
def test_parse_address__a_list_of_addresses_is_never_one(parts: list[str], joiner: str) -> None:
    with pytest.raises(AddressError):
        parse_address(joiner.join(parts))
