"""DKIM and ARC in the verifier (gateway/sender_auth/dkim_check.py,
arc_check.py): messages signed and sealed in the test with dkimpy, keys
published on a real DNS server on 127.0.0.1."""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator

import dkim
import nacl.signing
import pytest

from gateway.config.sections import SenderAuthSection
from gateway.sender_auth import Verifier
from gateway.sender_auth.dkim_check import MAX_SIGNATURES
from parsers.auth_results import Verdicts
from tests.dns_server import SERVFAIL, TIMEOUT, DnsServer, dkim_key

TIMEOUT_SECONDS = 0.5


def message(sender: str = "alice@example.com", body: bytes = b"It burns.\r\n") -> bytes:
    return (f"From: Alice <{sender}>\r\nTo: support@help.example\r\nSubject: Printer\r\n"
            f"Message-ID: <1@example.com>\r\n\r\n").encode() + body


@pytest.fixture
async def verifier(dns_server: DnsServer) -> AsyncIterator[Verifier]:
    verifier = Verifier(SenderAuthSection(nameservers=[dns_server.address],
                                          timeout_seconds=TIMEOUT_SECONDS))
    yield verifier
    await verifier.close()


async def verify(verifier: Verifier, raw: bytes) -> Verdicts:
    return await verifier.verify(raw, ip="192.0.2.10", mail_from="alice@example.com",
                                 helo="mx.example.com")


async def test_pass(dns_server: DnsServer, verifier: Verifier) -> None:
    dkim_key().publish(dns_server, "s1", "example.com")
    verdicts = await verify(verifier, dkim_key().sign(message(), "s1", "example.com"))
    assert (verdicts.dkim, verdicts.dkim_domains) == ("pass", ("example.com",))


async def test_ed25519_pass_and_fail(dns_server: DnsServer, verifier: Verifier) -> None:
    """RFC 8463 signatures (dkimpy with PyNaCl), beside RSA's."""
    key = nacl.signing.SigningKey.generate()
    public = base64.b64encode(bytes(key.verify_key)).decode()
    dns_server.txt("ed._domainkey.example.com", f"v=DKIM1; k=ed25519; p={public}")
    signed = dkim.sign(message(), b"ed", b"example.com", base64.b64encode(bytes(key)),
                       signature_algorithm=b"ed25519-sha256")
    verdicts = await verify(verifier, signed + message())
    assert (verdicts.dkim, verdicts.dkim_domains) == ("pass", ("example.com",))
    changed = (signed + message()).replace(b"It burns.", b"It is fine.")
    assert (await verify(verifier, changed)).dkim == "fail"


async def test_fail_after_the_body_changed(dns_server: DnsServer, verifier: Verifier) -> None:
    dkim_key().publish(dns_server, "s1", "example.com")
    signed = dkim_key().sign(message(), "s1", "example.com")
    verdicts = await verify(verifier, signed.replace(b"It burns.", b"It is fine."))
    assert (verdicts.dkim, verdicts.dkim_domains) == ("fail", ())
    verdicts = await verify(verifier, signed.replace(b"Subject: Printer", b"Subject: Pr1nter"))
    assert verdicts.dkim == "fail"


async def test_none_without_signatures(dns_server: DnsServer, verifier: Verifier) -> None:
    verdicts = await verify(verifier, message())
    assert (verdicts.dkim, verdicts.dkim_domains) == ("none", ())
    assert dns_server.count(rdtype="TXT") == 2  # SPF's and DMARC's: no key looked up


async def test_key_problems(dns_server: DnsServer, verifier: Verifier) -> None:
    signed = dkim_key().sign(message(), "s1", "example.com")
    assert (await verify(verifier, signed)).dkim == "permerror"  # no key
    dns_server.txt("s1._domainkey.example.com", "v=DKIM1; k=rsa; p=bm90IGEga2V5")
    assert (await verify(verifier, signed)).dkim == "permerror"  # not a key


async def test_a_key_that_does_not_answer_is_temperror(dns_server: DnsServer,
                                                       verifier: Verifier) -> None:
    dns_server.behave("s1._domainkey.example.com", TIMEOUT)
    dns_server.behave("s2._domainkey.example.com", SERVFAIL)
    started = time.monotonic()
    verdicts = await verify(verifier, dkim_key().sign(message(), "s1", "example.com"))
    assert verdicts.dkim == "temperror"
    assert time.monotonic() - started < TIMEOUT_SECONDS * 2
    verdicts = await verify(verifier, dkim_key().sign(message(), "s2", "example.com"))
    assert verdicts.dkim == "temperror"


async def test_any_passing_signature_passes(dns_server: DnsServer,
                                            verifier: Verifier) -> None:
    key = dkim_key()
    key.publish(dns_server, "s1", "example.com")
    key.publish(dns_server, "s1", "esp.example.net")
    # Top first: a signature without a key, then two good ones.
    raw = key.sign(key.sign(key.sign(message(), "s1", "example.com"),
                            "s1", "esp.example.net"), "gone", "example.org")
    verdicts = await verify(verifier, raw)
    assert verdicts.dkim == "pass"
    assert verdicts.dkim_domains == ("esp.example.net", "example.com")
    # None passes: the first (topmost) signature's result.
    dns_server.remove("s1._domainkey.esp.example.net")
    dns_server.remove("s1._domainkey.example.com")
    raw = key.sign(message(), "s1", "example.com").replace(b"burns", b"freezes")
    raw = key.sign(raw, "s1", "example.com")
    dns_server.txt("s1._domainkey.example.com", key.record())
    assert (await verify(verifier, raw.replace(b"freezes", b"melts"))).dkim == "fail"


async def test_broken_signature_fields_are_permerror(dns_server: DnsServer,
                                                     verifier: Verifier) -> None:
    for field in (b"DKIM-Signature: ;;;==\x00garbage",
                  b"DKIM-Signature: v=1; a=rsa-sha256; d=example.com; s=s1",  # tags missing
                  b"DKIM-Signature: v=1; a=rsa-sha256; d=exa mple.com; s=s1; h=from; bh=AA==;"
                  b" b=AA==",
                  b"DKIM-Signature: " + b"v=1; " * 5000):
        verdicts = await verify(verifier, field + b"\r\n" + message())
        assert verdicts.dkim == "permerror", field[:60]


async def test_fifty_signatures_are_bounded(dns_server: DnsServer,
                                            verifier: Verifier) -> None:
    raw = message()
    for i in range(50):
        raw = (f"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/simple; d=d{i}.example.com;"
               f" s=s{i}; h=from; bh=AAAA; b=AAAA\r\n").encode() + raw
    started = time.monotonic()
    verdicts = await verify(verifier, raw)
    assert verdicts.dkim == "permerror"
    assert time.monotonic() - started < 2.0
    assert dns_server.count(rdtype="TXT") - 2 == MAX_SIGNATURES  # keys looked up


async def test_a_two_megabyte_message(dns_server: DnsServer, verifier: Verifier) -> None:
    dkim_key().publish(dns_server, "s1", "example.com")
    body = b"".join(b"%07d line of a large attachment, base64 or not\r\n" % i
                    for i in range(40_000))
    assert len(body) > 2_000_000
    signed = dkim_key().sign(message(body=body), "s1", "example.com")
    started = time.monotonic()
    verdicts = await verify(verifier, signed)
    elapsed = time.monotonic() - started
    assert verdicts.dkim == "pass"
    assert elapsed < 3.0, elapsed
    assert (await verify(verifier, signed[:-10] + b"different\r\n")).dkim == "fail"


def forwarded(tamper: bool = False) -> bytes:
    """Signed by example.com, changed by a list at example.net (subject tag,
    footer: the signature breaks), then ARC-sealed by the list."""
    key = dkim_key()
    signed = key.sign(message(), "s1", "example.com")
    changed = (b"Authentication-Results: lists.example.net; dkim=pass header.d=example.com;"
               b" spf=pass smtp.mailfrom=example.com\r\n"
               + signed.replace(b"Subject: Printer", b"Subject: [help] Printer")
               + b"-- \r\nThe help list\r\n")
    sealed = key.seal(changed, "arc", "example.net", "lists.example.net")
    return sealed.replace(b"The help list", b"The other list") if tamper else sealed


async def test_arc(dns_server: DnsServer, verifier: Verifier) -> None:
    key = dkim_key()
    key.publish(dns_server, "s1", "example.com")
    key.publish(dns_server, "arc", "example.net")
    dns_server.txt("example.net", "v=spf1 ip4:198.51.100.0/24 -all")
    dns_server.txt("_dmarc.example.com", "v=DMARC1; p=reject")

    async def through_list(raw: bytes) -> Verdicts:
        return await verifier.verify(raw, ip="198.51.100.7", mail_from="bounces@example.net",
                                     helo="lists.example.net")

    verdicts = await through_list(forwarded())
    assert (verdicts.arc, verdicts.dkim, verdicts.spf) == ("pass", "fail", "pass")
    # ARC does not override DMARC: From still fails its domain's policy.
    assert (verdicts.dmarc, verdicts.dmarc_policy, verdicts.forged_from) == (
        "fail", "reject", True)
    assert (await through_list(forwarded(tamper=True))).arc == "fail"
    assert (await verify(verifier, dkim_key().sign(message(), "s1", "example.com"))
            ).arc == "none"


async def test_arc_chains_are_bounded(dns_server: DnsServer, verifier: Verifier) -> None:
    dkim_key().publish(dns_server, "arc", "example.net")
    raw = forwarded()
    too_long = b"ARC-Seal: i=6; cv=pass; a=rsa-sha256; d=example.net; s=arc; b=AAAA\r\n" + raw
    assert (await verify(verifier, too_long)).arc == "fail"
    garbage = b"ARC-Seal: i=1; \x00\xff;;==\r\nARC-Message-Signature: i=1\r\n" + message()
    assert (await verify(verifier, garbage)).arc == "fail"


async def test_relaxed_simple_and_length(dns_server: DnsServer, verifier: Verifier) -> None:
    key = dkim_key()
    key.publish(dns_server, "s1", "example.com")
    body = b"Line  with\truns   of space \t\r\n\r\nand an empty line.  \r\n\r\n\r\n"
    for canonicalize in ((b"simple", b"simple"), (b"relaxed", b"relaxed"),
                         (b"simple", b"relaxed"), (b"relaxed", b"simple")):
        signed = key.sign(message(body=body), "s1", "example.com", canonicalize)
        assert (await verify(verifier, signed)).dkim == "pass", canonicalize
        respaced = signed.replace(b"runs   of", b"runs of")
        expected = "pass" if canonicalize[1] == b"relaxed" else "fail"
        assert (await verify(verifier, respaced)).dkim == expected, canonicalize
    # l=: what a list appends after the signed length does not break it.
    signed = key.sign(message(body=body), "s1", "example.com", length=True)
    assert (await verify(verifier, signed + b"-- \r\nlist footer\r\n")).dkim == "pass"


async def test_hostile_signature_fields_stay_bounded(dns_server: DnsServer,
                                                     verifier: Verifier) -> None:
    """Signature fields and header sections past signed_message.py's bounds
    are permerror, promptly, though the key is there: white space in b= costs
    dkimpy's checks seconds (about 3 s each for the first two without the
    bounds); a long h= over many fields and a huge header section cost tens of
    milliseconds each, growing with the size."""
    key = dkim_key()
    key.publish(dns_server, "s1", "example.com")
    signed = key.sign(message(), "s1", "example.com")
    field, _, rest = signed.partition(b"\r\nFrom:")
    refolded = field.replace(b" b=", b" b=A" + b"\r\n " * 10_000 + b"!", 1)
    spaced = field.replace(b" b=", b" b=A" + b" " * 30_000 + b"!", 1)
    many = field.replace(b" h=", b" h=" + b"".join(b"x%d:" % i for i in range(1_500)), 1)
    crowd = b"".join(b"X-%d: y\r\n" % i for i in range(900))
    crowded = b"".join(b"X-%d: y\r\n" % i for i in range(5_000))
    for raw in (refolded + b"\r\nFrom:" + rest, spaced + b"\r\nFrom:" + rest,
                (many + b"\r\nFrom:" + rest).replace(b"To:", crowd + b"To:"),
                signed.replace(b"To:", crowded + b"To:"),
                signed.replace(b"To:", b"X-Big: " + b"a  " * 100_000 + b"\r\nTo:")):
        started = time.monotonic()
        verdicts = await verify(verifier, raw)
        elapsed = time.monotonic() - started
        assert verdicts.dkim == "permerror", raw[:80]
        assert elapsed < 1.0, (raw[:80], elapsed)


async def test_a_field_added_above_the_signed_one_is_no_pass(
        dns_server: DnsServer, verifier: Verifier) -> None:
    """A genuine signed mail replayed with a new Subject (a request's tag) and
    In-Reply-To on top: dkimpy verifies the bottom-most instances, the gateway
    reads the top ones, so the signature does not vouch for this message
    (RFC 6376 8.15): dkim=policy, and DMARC has no aligned pass from it."""
    dns_server.txt("_dmarc.example.com", "v=DMARC1; p=reject")
    dkim_key().publish(dns_server, "s1", "example.com")
    signed = dkim_key().sign(message(), "s1", "example.com")
    assert (await verify(verifier, signed)).dkim == "pass"
    replayed = b"Subject: Re: [#AB12-CD34] Printer\r\n" + signed
    verdicts = await verify(verifier, replayed)
    assert (verdicts.dkim, verdicts.dkim_domains, verdicts.dmarc) == ("policy", (), "fail")
