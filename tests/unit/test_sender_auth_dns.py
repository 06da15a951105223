"""The sender-authentication resolver (gateway/sender_auth/resolver.py) against
a real DNS server on 127.0.0.1: answers, the cache (TTLs, negative answers,
failures, its bound), one lookup per question in flight, timeouts, and
hostile answers staying bounded."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from gateway.config.sections import SenderAuthSection
from gateway.sender_auth.resolver import (
    ERROR,
    MAX_ANSWER_BYTES,
    MAX_RECORDS,
    NODATA,
    NXDOMAIN,
    OK,
    OVERSIZE,
    CachingResolver,
)
from tests.dns_server import SERVFAIL, TIMEOUT, DnsServer

TIMEOUT_SECONDS = 0.5


class Clock:
    """The cache's clock, moved by the test instead of waited for."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make(server: DnsServer | str, clock: Clock, **settings: object) -> CachingResolver:
    address = server.address if isinstance(server, DnsServer) else server
    values: dict[str, object] = {"nameservers": [address], "timeout_seconds": TIMEOUT_SECONDS}
    values.update(settings)
    return CachingResolver(SenderAuthSection.model_validate(values), clock=clock)


async def test_answers_by_type(dns_server: DnsServer, clock: Clock) -> None:
    dns_server.txt("example.com", "v=spf1 -all", "x" * 600)
    dns_server.a("mail.example.com", "192.0.2.1")
    dns_server.aaaa("mail.example.com", "2001:db8::1")
    dns_server.mx("example.com", (10, "mail.example.com"))
    dns_server.ptr("1.2.0.192.in-addr.arpa", "mail.example.com")
    resolver = make(dns_server, clock)
    txt = await resolver.lookup("Example.COM.", "TXT")
    assert txt.status == OK
    assert sorted(b"".join(r) for r in txt.records) == [b"v=spf1 -all", b"x" * 600]  # type: ignore[arg-type]
    assert (await resolver.lookup("mail.example.com", "A")).records == ("192.0.2.1",)
    assert (await resolver.lookup("mail.example.com", "AAAA")).records == ("2001:db8::1",)
    assert (await resolver.lookup("example.com", "MX")).records == ((10, "mail.example.com"),)
    assert (await resolver.lookup("1.2.0.192.in-addr.arpa", "PTR")).records == (
        "mail.example.com",)
    assert (await resolver.lookup("nothing.example.com", "TXT")).status == NXDOMAIN
    assert (await resolver.lookup("mail.example.com", "TXT")).status == NODATA
    await resolver.close()


async def test_answers_and_negative_answers_are_cached_by_ttl(dns_server: DnsServer,
                                                              clock: Clock) -> None:
    dns_server.txt("example.com", "v=spf1 -all", ttl=60)
    dns_server.negative_ttl = 30
    resolver = make(dns_server, clock)
    for _ in range(3):
        assert (await resolver.lookup("example.com", "TXT")).status == OK
        assert (await resolver.lookup("nx.example.com", "TXT")).status == NXDOMAIN
    assert dns_server.count("example.com") == 1
    assert dns_server.count("nx.example.com") == 1
    clock.now += 31  # the negative answer's SOA minimum is over, the answer's TTL is not
    await resolver.lookup("example.com", "TXT")
    await resolver.lookup("nx.example.com", "TXT")
    assert (dns_server.count("example.com"), dns_server.count("nx.example.com")) == (1, 2)
    clock.now += 30
    await resolver.lookup("example.com", "TXT")
    assert dns_server.count("example.com") == 2
    await resolver.close()


async def test_ttls_are_capped(dns_server: DnsServer, clock: Clock) -> None:
    dns_server.txt("example.com", "v=spf1 -all", ttl=86400)
    dns_server.negative_ttl = 86400
    resolver = make(dns_server, clock, max_ttl_seconds=600)
    await resolver.lookup("example.com", "TXT")
    await resolver.lookup("nx.example.com", "TXT")
    clock.now += 301  # negative answers: five minutes at most
    await resolver.lookup("example.com", "TXT")
    await resolver.lookup("nx.example.com", "TXT")
    assert (dns_server.count("example.com"), dns_server.count("nx.example.com")) == (1, 2)
    clock.now += 300  # answers: max_ttl_seconds
    await resolver.lookup("example.com", "TXT")
    assert dns_server.count("example.com") == 2
    await resolver.close()


async def test_failures_are_kept_a_few_seconds_only(dns_server: DnsServer,
                                                    clock: Clock) -> None:
    dns_server.txt("example.com", "v=spf1 -all")
    dns_server.behave("example.com", SERVFAIL)
    resolver = make(dns_server, clock)
    assert (await resolver.lookup("example.com", "TXT")).status == ERROR
    assert (await resolver.lookup("example.com", "TXT")).status == ERROR
    assert dns_server.count("example.com") == 1
    dns_server.behave("example.com", None)
    clock.now += 6
    assert (await resolver.lookup("example.com", "TXT")).status == OK
    assert dns_server.count("example.com") == 2
    await resolver.close()


async def test_the_cache_is_bounded(dns_server: DnsServer, clock: Clock) -> None:
    for i in range(5):
        dns_server.txt(f"d{i}.example.com", "v=spf1 -all")
    resolver = make(dns_server, clock, cache_entries=3)
    for i in range(5):
        await resolver.lookup(f"d{i}.example.com", "TXT")
    await resolver.lookup("d4.example.com", "TXT")  # recent: kept
    await resolver.lookup("d0.example.com", "TXT")  # oldest: gone
    assert dns_server.count("d4.example.com") == 1
    assert dns_server.count("d0.example.com") == 2
    await resolver.close()


async def test_identical_questions_in_flight_share_one_lookup(dns_server: DnsServer,
                                                             clock: Clock) -> None:
    dns_server.txt("example.com", "v=spf1 -all")
    dns_server.delay = 0.2
    resolver = make(dns_server, clock, cache_entries=0)  # no cache: only the sharing
    answers = await asyncio.gather(*(resolver.lookup("example.com", "TXT") for _ in range(20)))
    assert {a.status for a in answers} == {OK}
    assert dns_server.count("example.com") == 1
    await resolver.close()


async def test_a_server_that_does_not_answer_is_a_prompt_error(dns_server: DnsServer,
                                                               clock: Clock) -> None:
    dns_server.behave("example.com", TIMEOUT)
    resolver = make(dns_server, clock)
    started = time.monotonic()
    assert (await resolver.lookup("example.com", "TXT")).status == ERROR
    elapsed = time.monotonic() - started
    assert TIMEOUT_SECONDS * 0.8 < elapsed < TIMEOUT_SECONDS * 2
    await resolver.close()


async def test_an_unreachable_server_is_an_error(clock: Clock) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    resolver = make(f"127.0.0.1:{port}", clock)  # nothing listens there now
    started = time.monotonic()
    assert (await resolver.lookup("example.com", "TXT")).status == ERROR
    assert time.monotonic() - started < TIMEOUT_SECONDS * 2
    await resolver.close()


async def test_large_answers_come_over_tcp(dns_server: DnsServer, clock: Clock) -> None:
    dns_server.txt("example.com", *(f"{i:03d}" + "x" * 250 for i in range(20)))  # ~5 KB
    resolver = make(dns_server, clock)
    answer = await resolver.lookup("example.com", "TXT")
    assert answer.status == OK and len(answer.records) == 20
    assert dns_server.count("example.com") == 2  # UDP truncated, then TCP
    await resolver.close()


async def test_hostile_answers_stay_bounded(dns_server: DnsServer, clock: Clock) -> None:
    # More record data than any SPF, DKIM or DMARC answer has.
    dns_server.txt("huge.example.com", *(f"{i:03d}" + "x" * 1000
                                        for i in range(MAX_ANSWER_BYTES // 1000 + 2)))
    dns_server.a("many.example.com", *(f"192.0.2.{i}" for i in range(MAX_RECORDS + 1)))
    dns_server.cname("loop1.example.com", "loop2.example.com")
    dns_server.cname("loop2.example.com", "loop1.example.com")
    dns_server.cname("alias.example.com", "example.com")
    dns_server.txt("example.com", "v=spf1 -all")
    resolver = make(dns_server, clock)
    assert (await resolver.lookup("huge.example.com", "TXT")).status == OVERSIZE
    assert (await resolver.lookup("many.example.com", "A")).status == OVERSIZE
    assert (await resolver.lookup("loop1.example.com", "TXT")).status == ERROR
    assert (await resolver.lookup("alias.example.com", "TXT")).records == ((b"v=spf1 -all",),)
    # Not names at all: answered without asking anyone.
    before = dns_server.count()
    assert (await resolver.lookup("a..b", "TXT")).status == NXDOMAIN
    assert (await resolver.lookup("x" * 64 + ".example.com", "TXT")).status == NXDOMAIN
    assert dns_server.count() == before
    await resolver.close()
