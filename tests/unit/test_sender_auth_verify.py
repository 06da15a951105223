"""The verifier as the pipeline calls it (gateway/sender_auth/__init__.py):
all checks together, the shared cache, DNS gone, hostile messages, and the
event loop never held while hundreds of messages are checked at once."""

from __future__ import annotations

import asyncio
import gc
import os
import socket
import time
from collections.abc import AsyncIterator

import pytest

from gateway.config.sections import SenderAuthSection
from gateway.sender_auth import Verifier
from parsers.auth_results import Verdicts
from tests.dns_server import DnsServer, DnsServerProcess, Zone, dkim_key

TIMEOUT_SECONDS = 0.5


def message(sender: str = "alice@example.com") -> bytes:
    return (f"From: Alice <{sender}>\r\nTo: support@help.example\r\nSubject: Printer\r\n"
            f"Message-ID: <1@example.com>\r\n\r\nIt burns.\r\n").encode()


def publish(server: DnsServer, domain: str) -> None:
    server.txt(domain, "v=spf1 ip4:192.0.2.0/24 -all")
    server.txt(f"_dmarc.{domain}", "v=DMARC1; p=reject")
    dkim_key().publish(server, "s1", domain)


@pytest.fixture
async def verifier(dns_server: DnsServer) -> AsyncIterator[Verifier]:
    verifier = Verifier(SenderAuthSection(nameservers=[dns_server.address],
                                          timeout_seconds=TIMEOUT_SECONDS))
    yield verifier
    await verifier.close()


async def verify(verifier: Verifier, raw: bytes, sender: str = "alice@example.com") -> Verdicts:
    return await verifier.verify(raw, ip="192.0.2.10", mail_from=sender, helo="mx.example.com")


async def test_everything_passes(dns_server: DnsServer, verifier: Verifier) -> None:
    publish(dns_server, "example.com")
    verdicts = await verify(verifier, dkim_key().sign(message(), "s1", "example.com"))
    assert verdicts == Verdicts(source="verified", spf="pass", spf_domain="example.com",
                                dkim="pass", dkim_domains=("example.com",), dmarc="pass",
                                dmarc_policy="reject", from_domain="example.com", arc="none")


async def test_a_second_verify_asks_nothing(dns_server: DnsServer, verifier: Verifier) -> None:
    publish(dns_server, "example.com")
    dns_server.txt("example.org", "v=spf1 include:example.com -all")  # and a failing one
    raw = dkim_key().sign(message(), "s1", "example.com")
    first = [await verify(verifier, raw), await verify(verifier, message("b@example.org"),
                                                       "b@example.org")]
    asked = dns_server.count()
    assert asked == 5  # example.com's TXT, key, _dmarc; example.org's TXT, _dmarc
    second = [await verify(verifier, raw), await verify(verifier, message("b@example.org"),
                                                        "b@example.org")]
    assert second == first
    assert dns_server.count() == asked


async def test_dns_unreachable_is_temperror_promptly() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))  # receives and never answers
        for server in (f"127.0.0.1:{port}", f"127.0.0.1:{silent.getsockname()[1]}"):
            verifier = Verifier(SenderAuthSection(nameservers=[server],
                                                  timeout_seconds=TIMEOUT_SECONDS))
            raw = dkim_key().sign(message(), "s1", "example.com")
            started = time.monotonic()
            verdicts = await verify(verifier, raw)
            elapsed = time.monotonic() - started
            await verifier.close()
            assert (verdicts.spf, verdicts.dkim, verdicts.dmarc) == (
                "temperror", "temperror", "temperror"), server
            assert elapsed < TIMEOUT_SECONDS * 2, (server, elapsed)


@pytest.mark.parametrize("raw", [
    b"",
    b"\r\n\r\n",
    b"\x00\xff\xfe" * 1000,
    b" leading fold\r\nFrom: a@example.com\r\n\r\n",
    b"From: =?utf-8?q?=E2=80=AE?= <a@example.com>\r\nDKIM-Signature: \xff\xfe\r\n\r\n",
    os.urandom(4096),
    b"From: a@example.com\r\n" + b"X-Long: " + b"a" * 1_000_000 + b"\r\n\r\nbody\r\n",
    b"From: a@example.com\r\n" + b"X-Many: 1\r\n" * 20_000 + b"\r\nbody\r\n",
])
async def test_hostile_messages_never_raise(dns_server: DnsServer, verifier: Verifier,
                                            raw: bytes) -> None:
    publish(dns_server, "example.com")
    started = time.monotonic()
    verdicts = await verify(verifier, raw)
    assert verdicts.source == "verified"
    assert verdicts.spf == "pass"  # the envelope's check stands whatever the message
    assert verdicts.dkim in ("none", "permerror")
    assert time.monotonic() - started < 3.0


async def test_hostile_envelopes_never_raise(verifier: Verifier) -> None:
    for ip, mail_from, helo in (("", "", ""), ("999.1.1.1", None, None),
                                ("192.0.2.1", "\x00@\x00", "\x00"),
                                ("fe80::1%eth0", "a@" + "b." * 200 + "com", "x" * 1000)):
        verdicts = await verifier.verify(message(), ip=ip, mail_from=mail_from, helo=helo)
        assert verdicts.spf in ("none", "permerror"), (ip, mail_from, helo)


async def test_verify_does_not_block_the_loop() -> None:
    """200 messages of 200 domains, cache cold, every answer 50 ms late: the
    loop's longest stall stays far below the answers' delay.

    The DNS server runs in a process of its own, so no server thread competes
    for this one's GIL; the objects that exist before (pytest's, every imported
    module's) are moved out of the collector's way (gc.freeze, as a server
    does after start-up): a full collection over them takes 100-250 ms in this
    process whatever the code under test does, and it is the code that is
    measured."""
    count = 200
    key = dkim_key()
    zone: Zone = []
    messages = []
    for i in range(count):
        domain = f"d{i}.example.com"
        zone += [(domain, "TXT", "v=spf1 ip4:192.0.2.0/24 -all"),
                 (f"_dmarc.{domain}", "TXT", "v=DMARC1; p=reject"),
                 (f"s1._domainkey.{domain}", "TXT", key.record())]
        messages.append((f"alice@{domain}", key.sign(message(f"alice@{domain}"), "s1", domain)))
    with DnsServerProcess(zone, delay=0.05) as server:
        verifier = Verifier(SenderAuthSection(nameservers=[server.address],
                                              timeout_seconds=2.0))
        loop = asyncio.get_running_loop()
        done = asyncio.Event()
        worst = 0.0

        async def ticker() -> None:
            nonlocal worst
            for _ in range(100_000):  # about 10 minutes of ticks: far past the wait_for below
                if done.is_set():
                    return
                due = loop.time() + 0.005
                await asyncio.sleep(0.005)
                worst = max(worst, loop.time() - due)

        gc.freeze()
        try:
            ticking = asyncio.create_task(ticker())
            started = time.monotonic()
            results = await asyncio.wait_for(asyncio.gather(*(
                verify(verifier, raw, sender) for sender, raw in messages)), timeout=60)
            elapsed = time.monotonic() - started
            done.set()
            await asyncio.wait_for(ticking, timeout=5)
        finally:
            gc.unfreeze()
            await verifier.close()
    print(f"\n{count} verifications, cold cache, 50 ms DNS: {elapsed:.2f} s, "
          f"worst loop lag {worst * 1000:.1f} ms")
    assert {(v.spf, v.dkim, v.dmarc) for v in results} == {("pass", "pass", "pass")}
    assert server.queries == 3 * count
    assert worst < 0.1


async def test_a_large_message_does_not_hold_the_loop(dns_server: DnsServer,
                                                      verifier: Verifier) -> None:
    """A 3 MB message signed with relaxed body canonicalization and ARC-sealed:
    dkimpy would hold the loop for its whole body (about 300 ms; in a worker
    thread, 50 to 150 ms at a time, GIL convoys); hashed in slices on the loop
    (signed_message.py), the loop keeps running."""
    key = dkim_key()
    publish(dns_server, "example.com")
    key.publish(dns_server, "arc", "example.net")
    line = b"A line  of a large\tmessage, with  runs of white space to compress.  \r\n"
    body = line * (3_000_000 // len(line))
    raw = key.sign(message()[: -len(b"It burns.\r\n")] + body, "s1", "example.com",
                   (b"relaxed", b"relaxed"))
    raw = key.seal(b"Authentication-Results: lists.example.net; dkim=pass\r\n" + raw,
                   "arc", "example.net", "lists.example.net")
    await verify(verifier, raw)  # keys in the cache: the CPU is what is measured
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    worst = 0.0

    async def ticker() -> None:
        nonlocal worst
        for _ in range(100_000):  # about 10 minutes of ticks: far past the wait_for below
            if done.is_set():
                return
            due = loop.time() + 0.005
            await asyncio.sleep(0.005)
            worst = max(worst, loop.time() - due)

    gc.freeze()  # as in test_verify_does_not_block_the_loop
    try:
        ticking = asyncio.create_task(ticker())
        started = time.monotonic()
        results = [await asyncio.wait_for(verify(verifier, raw), timeout=30) for _ in range(3)]
        elapsed = (time.monotonic() - started) / 3
        done.set()
        await asyncio.wait_for(ticking, timeout=5)
    finally:
        gc.unfreeze()
    print(f"\n{len(raw) // 1024} KB message: {elapsed * 1000:.0f} ms each, "
          f"worst loop lag {worst * 1000:.1f} ms")
    assert {(v.dkim, v.arc) for v in results} == {("pass", "pass")}
    assert worst < 0.1
