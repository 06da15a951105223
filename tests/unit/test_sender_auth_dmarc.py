"""DMARC (gateway/sender_auth/dmarc.py): the record parser and the evaluation
as the pure functions they are, then the verifier's verdicts over a real DNS
server on 127.0.0.1 with messages signed in the test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import pytest

from gateway.config.sections import SenderAuthSection
from gateway.sender_auth import Verifier, dmarc
from gateway.sender_auth.org_domain import org_domain
from parsers.auth_results import Verdicts
from tests.dns_server import TIMEOUT, DnsServer, dkim_key

# -- the pure part -------------------------------------------------------------


def test_parse_record() -> None:
    assert dmarc.parse_record("v=DMARC1; p=reject") == dmarc.Record(p="reject")
    assert dmarc.parse_record(" v = DMARC1 ;p=Quarantine; sp=none; adkim=s; aspf=s; pct=5;"
                              " rua=mailto:d@example.com; future=1") == dmarc.Record(
        p="quarantine", sp="none", adkim="s", aspf="s")


@pytest.mark.parametrize("text", [
    "p=reject; v=DMARC1",             # v= not first
    "v=DMARC1",                       # no p=
    "v=DMARC1; p=block",              # bad p=
    "v=DMARC1; p=none; sp=maybe",
    "v=DMARC1; p=none; adkim=x",
    "v=DMARC1; p=none; p=reject",     # twice
    "v=DMARC1; p",                    # a tag without a value
])
def test_broken_records(text: str) -> None:
    with pytest.raises(dmarc.DmarcError):
        dmarc.parse_record(text)


def test_select_record() -> None:
    assert dmarc.select_record(["unrelated", "v=spf1 -all"]) is None
    assert dmarc.select_record(["other", "v=DMARC1; p=none"]) == dmarc.Record(p="none")
    for texts in (["v=DMARC1; p=none", "v=DMARC1; p=reject"], ["p=reject; v=DMARC1"]):
        with pytest.raises(dmarc.DmarcError):
            dmarc.select_record(texts)


def lookup(records: dict[str, Sequence[str] | None]) -> dmarc.TxtLookup:
    async def txt(name: str) -> Sequence[str] | None:
        return records.get(name, [])
    return txt


async def test_discover() -> None:
    found = await dmarc.discover("a.b.example.com", lookup(
        {"_dmarc.example.com": ["v=DMARC1; p=reject; sp=quarantine"]}), org_domain)
    assert found == dmarc.Found(record=dmarc.Record(p="reject", sp="quarantine"),
                                inherited=True)
    found = await dmarc.discover("example.com", lookup({"_dmarc.example.com": None}),
                                 org_domain)
    assert found == dmarc.Found(error="temperror")
    assert await dmarc.discover("example.com", lookup({}), org_domain) == dmarc.Found()


@pytest.mark.parametrize(("record", "spf", "spf_domain", "dkim", "result"), [
    ("v=DMARC1; p=reject", "pass", "bounce.example.com", (), "pass"),       # relaxed
    ("v=DMARC1; p=reject; aspf=s", "pass", "bounce.example.com", (), "fail"),
    ("v=DMARC1; p=reject; aspf=s", "pass", "example.com", (), "pass"),
    ("v=DMARC1; p=reject", "fail", "example.com", (), "fail"),
    ("v=DMARC1; p=reject", "pass", "example.net", ("mail.example.com",), "pass"),
    ("v=DMARC1; p=reject; adkim=s", "none", None, ("mail.example.com",), "fail"),
    ("v=DMARC1; p=reject", "softfail", "example.com", ("example.org",), "fail"),
])
def test_alignment(record: str, spf: str, spf_domain: str | None, dkim: tuple[str, ...],
                   result: str) -> None:
    found = dmarc.Found(record=dmarc.parse_record(record))
    assert dmarc.evaluate(found, from_domain="example.com", spf=spf, spf_domain=spf_domain,
                          dkim_domains=dkim, org_domain=org_domain) == (result, "reject")


# -- the verifier --------------------------------------------------------------


def message(sender: str = "alice@example.com") -> bytes:
    return (f"From: Alice <{sender}>\r\nTo: support@help.example\r\nSubject: Printer\r\n"
            f"Message-ID: <1@example.com>\r\n\r\nIt burns.\r\n").encode()


@pytest.fixture
async def verifier(dns_server: DnsServer) -> AsyncIterator[Verifier]:
    dns_server.txt("example.com", "v=spf1 ip4:192.0.2.0/24 -all")
    dns_server.txt("example.net", "v=spf1 ip4:198.51.100.0/24 -all")
    dkim_key().publish(dns_server, "s1", "example.com")
    verifier = Verifier(SenderAuthSection(nameservers=[dns_server.address],
                                          timeout_seconds=0.5))
    yield verifier
    await verifier.close()


async def verify(verifier: Verifier, raw: bytes, ip: str = "192.0.2.10",
                 mail_from: str = "alice@example.com") -> Verdicts:
    return await verifier.verify(raw, ip=ip, mail_from=mail_from, helo="mx.example.com")


async def test_pass_by_aligned_spf(dns_server: DnsServer, verifier: Verifier) -> None:
    dns_server.txt("_dmarc.example.com", "v=DMARC1; p=reject")
    verdicts = await verify(verifier, message())
    assert (verdicts.dmarc, verdicts.dmarc_policy, verdicts.from_domain) == (
        "pass", "reject", "example.com")
    assert (verdicts.spf, verdicts.dkim) == ("pass", "none")
    assert not verdicts.forged_from


async def test_pass_by_aligned_dkim(dns_server: DnsServer, verifier: Verifier) -> None:
    dns_server.txt("_dmarc.example.com", "v=DMARC1; p=reject")
    signed = dkim_key().sign(message(), "s1", "example.com")
    # Sent through another domain's servers: SPF passes for example.net, unaligned.
    verdicts = await verify(verifier, signed, ip="198.51.100.7", mail_from="b@example.net")
    assert (verdicts.spf, verdicts.spf_domain, verdicts.dkim) == ("pass", "example.net", "pass")
    assert verdicts.dmarc == "pass"


@pytest.mark.parametrize("policy", ["reject", "quarantine"])
async def test_fail(dns_server: DnsServer, verifier: Verifier, policy: str) -> None:
    dns_server.txt("_dmarc.example.com", f"v=DMARC1; p={policy}; pct=10")
    verdicts = await verify(verifier, message(), ip="198.51.100.7", mail_from="b@example.net")
    assert (verdicts.dmarc, verdicts.dmarc_policy, verdicts.forged_from) == (
        "fail", policy, True)


async def test_fail_with_p_none_is_not_forged(dns_server: DnsServer,
                                              verifier: Verifier) -> None:
    dns_server.txt("_dmarc.example.com", "v=DMARC1; p=none")
    verdicts = await verify(verifier, message(), ip="198.51.100.7", mail_from="b@example.net")
    assert (verdicts.dmarc, verdicts.dmarc_policy, verdicts.forged_from) == (
        "fail", "none", False)


async def test_none_without_a_record(verifier: Verifier) -> None:
    verdicts = await verify(verifier, message(), ip="198.51.100.7", mail_from="b@example.net")
    assert (verdicts.dmarc, verdicts.dmarc_policy) == ("none", None)


async def test_a_subdomain_takes_sp(dns_server: DnsServer, verifier: Verifier) -> None:
    dns_server.txt("_dmarc.example.com", "v=DMARC1; p=reject; sp=quarantine")
    verdicts = await verify(verifier, message("alice@eu.mail.example.com"),
                            ip="198.51.100.7", mail_from="b@example.net")
    assert (verdicts.dmarc, verdicts.dmarc_policy, verdicts.from_domain) == (
        "fail", "quarantine", "eu.mail.example.com")
    assert dns_server.count("_dmarc.eu.mail.example.com") == 1
    # Relaxed alignment: MAIL FROM at the organizational domain passes for the subdomain.
    verdicts = await verify(verifier, message("alice@eu.mail.example.com"))
    assert (verdicts.dmarc, verdicts.dmarc_policy) == ("pass", "quarantine")
    # Its own record wins over the organizational domain's.
    dns_server.txt("_dmarc.us.mail.example.com", "v=DMARC1; p=none")
    verdicts = await verify(verifier, message("alice@us.mail.example.com"),
                            ip="198.51.100.7", mail_from="b@example.net")
    assert verdicts.dmarc_policy == "none"


async def test_temperror(dns_server: DnsServer, verifier: Verifier) -> None:
    dns_server.behave("_dmarc.example.com", TIMEOUT)
    verdicts = await verify(verifier, message())
    assert (verdicts.dmarc, verdicts.spf) == ("temperror", "pass")


async def test_permerror(dns_server: DnsServer, verifier: Verifier) -> None:
    dns_server.txt("_dmarc.example.com", "v=DMARC1; p=bounce")
    assert (await verify(verifier, message())).dmarc == "permerror"
    dns_server.remove("_dmarc.example.com")
    dns_server.txt("_dmarc.example.com", "v=DMARC1; p=reject")
    for head in (b"From: a@example.com, b@example.com\r\n",  # two addresses
                 b"From: a@example.com\r\nFrom: b@example.com\r\n",  # two fields
                 b"From: Alice\r\n",                          # no address
                 b"From: a@exa mple..com\r\n",                # no domain name
                 b""):                                        # no From
        verdicts = await verify(verifier, head + b"Subject: x\r\n\r\nbody\r\n")
        assert (verdicts.dmarc, verdicts.from_domain, verdicts.dmarc_policy) == (
            "permerror", None, None), head


def test_org_domain__private_suffixes_keep_tenants_apart() -> None:
    """Tenants of a shared private suffix are separate organizations: relaxed
    alignment must not let one sign or send for another."""
    assert org_domain("attacker.github.io") == "attacker.github.io"
    assert org_domain("mail.victim.github.io") == "victim.github.io"
    assert org_domain("a.b.example.co.uk") == "example.co.uk"
    assert not dmarc.aligned("attacker.github.io", "victim.github.io", "r", org_domain)
