"""The client's address behind trusted proxies: X-Forwarded-For read from the
right, believed only as far as the hops that wrote it are trusted."""

from __future__ import annotations

import pytest

from domain.errors import ConfigError
from gateway.config import build_config
from gateway.http.forwarded import MAX_HOPS, forwarded_client
from gateway.proxies import TrustedProxies, parse_address

PROXIES = TrustedProxies(["10.0.0.0/8", "2001:db8:1::/48", "192.0.2.1"])


@pytest.mark.parametrize(("peer", "fields", "client"), [
    # Not from a proxy: the header is the client's own word, ignored.
    ("203.0.113.9", ["198.51.100.1"], "203.0.113.9"),
    # One proxy: the entry it appended.
    ("10.0.0.5", ["198.51.100.1"], "198.51.100.1"),
    # A client's forged entries stay to the left of the one the proxy wrote.
    ("10.0.0.5", ["1.1.1.1, 127.0.0.1, 198.51.100.1"], "198.51.100.1"),
    # Two proxies: past both, the right-most untrusted.
    ("10.0.0.5", ["198.51.100.1, 10.1.2.3"], "198.51.100.1"),
    ("192.0.2.1", ["203.0.113.4, 10.9.9.9"], "203.0.113.4"),
    # Several fields are one list, in order.
    ("10.0.0.5", ["6.6.6.6", "198.51.100.1, 10.0.0.7"], "198.51.100.1"),
    # From a proxy with no header (its health check): the proxy.
    ("10.0.0.5", [], "10.0.0.5"),
    ("10.0.0.5", [""], "10.0.0.5"),
    # Garbage stops the walk at the trusted hop that passed it on.
    ("10.0.0.5", ["198.51.100.1, unknown"], "10.0.0.5"),
    ("10.0.0.5", ["198.51.100.1, <script>, 10.0.0.6"], "10.0.0.6"),
    ("10.0.0.5", ["198.51.100.1:4711"], "10.0.0.5"),  # a port: not an address
    ("10.0.0.5", ["fe80::1%eth0"], "10.0.0.5"),        # a zone: neither
    ("10.0.0.5", ["1" * 10_000], "10.0.0.5"),
    ("10.0.0.5", ["\x00, \r\n"], "10.0.0.5"),
    # Every hop trusted: the left-most, the furthest we can see.
    ("10.0.0.5", ["10.0.0.1, 10.0.0.2"], "10.0.0.1"),
    # IPv6: written out, brackets allowed; a mapped IPv4 is the IPv4 host.
    ("2001:db8:1::2", ["2001:DB8:FFFF::0001"], "2001:db8:ffff::1"),
    ("10.0.0.5", ["[2001:db8:ffff::1]"], "2001:db8:ffff::1"),
    ("::ffff:10.0.0.5", ["198.51.100.1"], "198.51.100.1"),
    ("10.0.0.5", ["::ffff:198.51.100.1"], "198.51.100.1"),
    ("10.0.0.5", [" 198.51.100.1 ,10.0.0.8 "], "198.51.100.1"),
    # No peer address (a Unix socket): nothing to trust.
    (None, ["198.51.100.1"], None),
])
def test_forwarded_client(peer: str | None, fields: list[str], client: str | None) -> None:
    assert forwarded_client(peer, fields, PROXIES) == client


def test_forwarded_client__many_hops_read_no_further_than_max_hops() -> None:
    trusted_hops = ", ".join(f"10.0.0.{n}" for n in range(1, MAX_HOPS + 5))
    # A chain longer than any real one, of trusted addresses, is read MAX_HOPS deep.
    assert forwarded_client("10.0.0.250", ["198.51.100.1, " + trusted_hops], PROXIES) \
        == f"10.0.0.{MAX_HOPS + 5 - MAX_HOPS}"
    # Many fields, each with many entries, likewise; the client is found when near.
    fields = ["9.9.9.9, " * 5000 + "9.9.9.9"] * 100 + ["198.51.100.1, 10.0.0.1"]
    assert forwarded_client("10.0.0.250", fields, PROXIES) == "198.51.100.1"


def test_forwarded_client__no_proxies_trusts_nobody() -> None:
    assert forwarded_client("10.0.0.5", ["198.51.100.1"], TrustedProxies()) == "10.0.0.5"
    assert not TrustedProxies()


@pytest.mark.parametrize(("host", "trusted"), [
    ("10.255.0.1", True), ("11.0.0.1", False), ("192.0.2.1", True), ("192.0.2.2", False),
    ("2001:db8:1:ffff::1", True), ("2001:db8:2::1", False),
    ("::ffff:10.0.0.1", True),  # a dual-stack socket's view of an IPv4 proxy
    ("localhost", False), ("", False), (None, False), ("10.0.0.1/8", False),
])
def test_trusted_proxies(host: str | None, trusted: bool) -> None:
    assert PROXIES.trusts(host) is trusted


@pytest.mark.parametrize(("text", "address"), [
    ("198.51.100.1", "198.51.100.1"), ("[::1]", "::1"), ("::1", "::1"),
    ("01.2.3.4", None), ("1.2.3", None), ("[1.2.3.4]:80", None), ("", None), ("[]", None),
])
def test_parse_address(text: str, address: str | None) -> None:
    parsed = parse_address(text)
    assert (str(parsed) if parsed is not None else None) == address


def test_config__proxies_are_checked_networks() -> None:
    config = build_config({"smtp": {"proxy_protocol_from": ["127.0.0.1", "10.1.2.3/8"]},
                           "http": {"trusted_proxies": ["::1", "2001:db8::/32"]}},
                          "<test>", {})
    assert config.smtp.proxy_protocol_from == ["127.0.0.1/32", "10.0.0.0/8"]
    assert config.http.trusted_proxies == ["::1/128", "2001:db8::/32"]
    assert build_config({}, "<test>", {}).http.trusted_proxies == []
    with pytest.raises(ConfigError, match="http.trusted_proxies"):
        build_config({"http": {"trusted_proxies": ["haproxy"]}}, "<test>", {})
    with pytest.raises(ConfigError, match="smtp.proxy_protocol_from"):
        build_config({"smtp": {"proxy_protocol_from": ["10.0.0.0/33"]}}, "<test>", {})
