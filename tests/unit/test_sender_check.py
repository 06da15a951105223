"""What sender authentication's verdicts make of the sender, for threading
(placement.sender_check) and for the acknowledgement (lifecycle)."""

from __future__ import annotations

import pytest

from domain import lifecycle
from gateway.pipeline.placement import refusal, sender_check
from parsers.auth_results import Verdicts
from parsers.mail import parse_email
from storage.records import SenderCheck

PASS = Verdicts(source="trusted", dmarc="pass", from_domain="example.com")
FORGED = Verdicts(source="trusted", dmarc="fail", dmarc_policy="reject",
                  from_domain="example.com")


def mail(from_line: str) -> bytes:
    return (f"{from_line}\r\nTo: support@localhost\r\nSubject: x\r\n\r\nbody\r\n").encode()


@pytest.mark.parametrize(("from_line", "verdicts", "expected"), [
    ("From: Alice <Alice@Example.com>", PASS, SenderCheck.VERIFIED),
    ("From: Alice <alice@example.com>", None, SenderCheck.UNKNOWN),
    ("From: Alice <alice@example.com>", Verdicts(source="verified"), SenderCheck.UNKNOWN),
    # DMARC passed for another domain than the From read here: it speaks of
    # someone else, and this From is kept out like a forged one.
    ("From: Alice <alice@example.com>", Verdicts(source="trusted", dmarc="pass",
                                                 from_domain="evil.example"),
     SenderCheck.FAILED),
    # Two From addresses (RFC 7489 6.6.1), however written: the parser reads the
    # first, DMARC vouches for none or the other.
    ("From: alice@example.com, me@evil.example", Verdicts(source="verified",
                                                          dmarc="permerror"),
     SenderCheck.FAILED),
    ("From: alice@example.com <me@evil.example>", Verdicts(
        source="trusted", dmarc="pass", from_domain="evil.example"), SenderCheck.FAILED),
    ("From: <alice@example.com>me@evil.example", Verdicts(source="verified",
                                                          dmarc="permerror"),
     SenderCheck.FAILED),
    ("From: alice@example.com; me@evil.example", Verdicts(source="verified",
                                                          dmarc="permerror"),
     SenderCheck.FAILED),
    ("From: alice@example.com\r\nFrom: me@evil.example", Verdicts(
        source="verified", dmarc="permerror"), SenderCheck.FAILED),
    # An internationalized From: the results name its A-labels (IDNA 2008).
    ("From: Jörg <joerg@bücher.example>", Verdicts(
        source="verified", dmarc="pass", from_domain="xn--bcher-kva.example"),
     SenderCheck.VERIFIED),
    ("From: Jörg <joerg@faß.example>", Verdicts(
        source="verified", dmarc="pass", from_domain="fass.example"), SenderCheck.FAILED),
    # Unchecked (sender_auth off): as before, an address goes as far as it goes.
    ("From: alice@example.com, me@evil.example", None, SenderCheck.UNKNOWN),
    ("From: Alice <alice@example.com>", FORGED, SenderCheck.FAILED),
    ("From: Alice\r\nReply-To: alice@example.com", PASS, SenderCheck.NOT_FROM),
    ("From: Alice\r\nReply-To: alice@example.com", FORGED, SenderCheck.FAILED),
    # p=none asks for nothing: a failure is no forgery to act on.
    ("From: Alice <alice@example.com>", Verdicts(source="trusted", dmarc="fail",
                                                 dmarc_policy="none"), SenderCheck.UNKNOWN),
])
def test_sender_check__from_the_verdicts(from_line: str, verdicts: Verdicts | None,
                                         expected: SenderCheck) -> None:
    assert sender_check(parse_email(mail(from_line)), verdicts) == expected


def test_refusal__failed_sender_kept_out_even_as_participant_or_ours() -> None:
    assert refusal("alice@example.com", takes_part=True, ours=True,
                   check=SenderCheck.FAILED) == "alice@example.com failed sender authentication"
    assert refusal("alice@example.com", takes_part=True, ours=False,
                   check=SenderCheck.VERIFIED) is None


def test_acknowledgement_veto__forged_from_never_answered() -> None:
    traits = lifecycle.MailTraits(sender="alice@example.com", has_sender=True,
                                  own_outbound=False, ours=False, bounce=False,
                                  auto_reply=False, list_mail=False, forged_from=True)
    assert lifecycle.acknowledgement_veto(traits) == lifecycle.FORGED_FROM
    ack = lifecycle.acknowledgement(wanted=True, quarantined=True,
                                    veto=lifecycle.acknowledgement_veto(traits), template=None)
    assert not ack.send and ack.reason == lifecycle.FORGED_FROM
