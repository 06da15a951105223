"""SPF in the verifier (gateway/sender_auth/spf_check.py): pyspf's results
over a real DNS server on 127.0.0.1, its lookups answered by replay on miss."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest

from gateway.config.sections import SenderAuthSection
from gateway.sender_auth import Verifier
from gateway.sender_auth.spf_check import MAX_LOOKUPS
from parsers.auth_results import Verdicts
from tests.dns_server import SERVFAIL, TIMEOUT, DnsServer

TIMEOUT_SECONDS = 0.5
MESSAGE = (b"From: Alice <alice@example.org>\r\nTo: support@help.example\r\n"
           b"Subject: Printer\r\n\r\nIt burns.\r\n")


@pytest.fixture
async def verifier(dns_server: DnsServer) -> AsyncIterator[Verifier]:
    verifier = Verifier(SenderAuthSection(nameservers=[dns_server.address],
                                          timeout_seconds=TIMEOUT_SECONDS))
    yield verifier
    await verifier.close()


async def spf(verifier: Verifier, ip: str | None = "192.0.2.10",
              mail_from: str | None = "alice@example.org",
              helo: str | None = "mx.example.org") -> Verdicts:
    return await verifier.verify(MESSAGE, ip=ip, mail_from=mail_from, helo=helo)


@pytest.mark.parametrize(("record", "result"), [
    ("v=spf1 ip4:192.0.2.0/24 -all", "pass"),
    ("v=spf1 ip4:198.51.100.0/24 -all", "fail"),
    ("v=spf1 ip4:198.51.100.0/24 ~all", "softfail"),
    ("v=spf1 ip4:198.51.100.0/24 ?all", "neutral"),
    ("v=spf1 ip4:198.51.100.0/24", "neutral"),  # no match and no all
    ("v=spf1 ip4:192.0.2.0/33 -all", "permerror"),
    ("v=spf1 frobnicate -all", "permerror"),
    ("google-site-verification=abc", "none"),  # TXT, but no SPF record
])
async def test_results(dns_server: DnsServer, verifier: Verifier, record: str,
                       result: str) -> None:
    dns_server.txt("example.org", record)
    verdicts = await spf(verifier)
    assert (verdicts.spf, verdicts.spf_domain) == (result, "example.org")


async def test_none_without_a_domain(dns_server: DnsServer, verifier: Verifier) -> None:
    assert (await spf(verifier)).spf == "none"  # NXDOMAIN
    # No multi-label domain to check (RFC 7208 4.3): nothing is asked.
    before = dns_server.count()
    assert (await spf(verifier, mail_from="alice@localhost")).spf == "none"
    assert (await spf(verifier, mail_from="", helo="[192.0.2.10]")).spf == "none"
    assert (await spf(verifier, mail_from="", helo=None)).spf == "none"
    assert dns_server.count() == before


async def test_no_client_address_is_none(dns_server: DnsServer, verifier: Verifier) -> None:
    dns_server.txt("example.org", "v=spf1 -all")
    verdicts = await spf(verifier, ip=None)
    assert (verdicts.spf, verdicts.spf_domain) == ("none", None)
    assert dns_server.count() == 1  # only DMARC's question: no SPF lookup


async def test_two_records_are_permerror(dns_server: DnsServer, verifier: Verifier) -> None:
    dns_server.txt("example.org", "v=spf1 -all", "v=spf1 +all")
    assert (await spf(verifier)).spf == "permerror"


async def test_mechanisms_that_look_up(dns_server: DnsServer, verifier: Verifier) -> None:
    # Each answer leads to the next question: TXT, include's TXT, MX, the MX's A.
    dns_server.txt("example.org", "v=spf1 include:_spf.example.org -all")
    dns_server.txt("_spf.example.org", "v=spf1 a:web.example.org mx -all")
    dns_server.a("web.example.org", "203.0.113.5")
    dns_server.mx("_spf.example.org", (10, "mx1.example.org"), (20, "mx2.example.org"))
    dns_server.a("mx1.example.org", "198.51.100.7")
    dns_server.a("mx2.example.org", "192.0.2.10")
    assert (await spf(verifier)).spf == "pass"
    assert (await spf(verifier, ip="203.0.113.5")).spf == "pass"
    assert (await spf(verifier, ip="203.0.113.6")).spf == "fail"


async def test_ipv6_client(dns_server: DnsServer, verifier: Verifier) -> None:
    dns_server.txt("example.org", "v=spf1 ip6:2001:db8:1::/48 a:v6.example.org -all")
    dns_server.aaaa("v6.example.org", "2001:db8:2::25")
    assert (await spf(verifier, ip="2001:db8:1::1")).spf == "pass"
    assert (await spf(verifier, ip="2001:db8:2::25")).spf == "pass"
    assert (await spf(verifier, ip="2001:db8:3::1")).spf == "fail"
    assert (await spf(verifier, ip="192.0.2.10")).spf == "fail"


async def test_a_bounce_checks_helo(dns_server: DnsServer, verifier: Verifier) -> None:
    dns_server.txt("mx.example.org", "v=spf1 a -all")
    dns_server.a("mx.example.org", "192.0.2.10")
    dns_server.txt("example.org", "v=spf1 -all")
    verdicts = await spf(verifier, mail_from="")
    assert (verdicts.spf, verdicts.spf_domain) == ("pass", "mx.example.org")
    verdicts = await spf(verifier, mail_from="", ip="192.0.2.11")
    assert (verdicts.spf, verdicts.spf_domain) == ("fail", "mx.example.org")


async def test_a_server_that_does_not_answer_is_temperror_in_about_the_timeout(
        dns_server: DnsServer, verifier: Verifier) -> None:
    dns_server.behave("example.org", TIMEOUT)
    started = time.monotonic()
    verdicts = await spf(verifier)
    elapsed = time.monotonic() - started
    assert verdicts.spf == "temperror"
    assert elapsed < TIMEOUT_SECONDS * 2, elapsed


async def test_servfail_deeper_down_is_temperror(dns_server: DnsServer,
                                                 verifier: Verifier) -> None:
    dns_server.txt("example.org", "v=spf1 include:_spf.example.org -all")
    dns_server.behave("_spf.example.org", SERVFAIL)
    assert (await spf(verifier)).spf == "temperror"


async def test_lookup_limits_are_permerror_and_bounded(dns_server: DnsServer,
                                                       verifier: Verifier) -> None:
    # Eleven mechanisms that look up: over RFC 7208's ten.
    dns_server.txt("example.org", "v=spf1 " + " ".join(
        f"a:h{i}.example.org" for i in range(11)) + " -all")
    for i in range(11):
        dns_server.a(f"h{i}.example.org", "203.0.113.1")
    assert (await spf(verifier)).spf == "permerror"
    assert dns_server.count() <= MAX_LOOKUPS + 2
    # An include loop.
    dns_server.remove("example.org")
    dns_server.txt("example.org", "v=spf1 include:loop.example.org -all")
    dns_server.txt("loop.example.org", "v=spf1 include:example.org -all")
    assert (await spf(verifier, mail_from="bob@example.org")).spf == "permerror"
    # More than two void lookups (RFC 7208 4.6.4).
    dns_server.txt("void.example.org",
                   "v=spf1 a:n1.example.org a:n2.example.org a:n3.example.org -all")
    assert (await spf(verifier, mail_from="x@void.example.org")).spf == "permerror"


async def test_a_huge_record_is_permerror(dns_server: DnsServer, verifier: Verifier) -> None:
    dns_server.txt("example.org", "v=spf1 -all", *(f"{i:02d}" + "x" * 1000 for i in range(20)))
    assert (await spf(verifier)).spf == "permerror"


async def test_exp_is_not_fetched(dns_server: DnsServer, verifier: Verifier) -> None:
    dns_server.txt("example.org", "v=spf1 ip4:198.51.100.0/24 -all exp=explain.example.org")
    dns_server.txt("explain.example.org", "%{i} is not one of %{d}'s designated mail servers")
    assert (await spf(verifier)).spf == "fail"
    assert dns_server.count("explain.example.org") == 0


async def test_hostile_envelopes(dns_server: DnsServer, verifier: Verifier) -> None:
    dns_server.txt("example.org", "v=spf1 exists:%{l}.%{d}.x.example.org -all")
    dns_server.a("alice.example.org.x.example.org", "127.0.0.2")
    assert (await spf(verifier)).spf == "pass"
    for mail_from in ('"a@b"@example.org', "\u00e4lice@example.org", "@example.org",
                      "x" * 300 + "@example.org", "alice@exa mple.org"):
        verdicts = await spf(verifier, mail_from=mail_from)
        assert verdicts.spf in ("fail", "none", "permerror"), (mail_from, verdicts.spf)
    assert (await spf(verifier, ip="not an address")).spf == "permerror"
    assert (await spf(verifier, ip="::ffff:192.0.2.10", mail_from="alice@example.org")
            ).spf == "pass"
