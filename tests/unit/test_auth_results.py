"""Authentication-Results and spam headers of a trusted front MTA (parsers/auth_results.py).

Believed: only headers with a trusted authserv-id standing above the second
Received (where the front MTA puts them), each method from the topmost one
that reports it. Everything else is recorded as not believed. The header
texts are written for the project in the styles of OpenDMARC/OpenDKIM under
Postfix, Gmail, Microsoft 365 and rspamd.
"""

from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from parsers import auth_results
from parsers.auth_results import (
    ARC_RESULTS,
    DKIM_RESULTS,
    DMARC_POLICIES,
    DMARC_RESULTS,
    MAX_DOMAIN_CHARS,
    MAX_ID_CHARS,
    MAX_IGNORED,
    SPF_RESULTS,
    UNREADABLE,
    SpamVerdict,
    Verdicts,
    authentication_results,
    describe,
    ignored_results,
    spam_from_json,
    verdicts_from_json,
)
from routing import fields

MX = "mx.help.example"
FRONT = (f"Received: from mail.example.com (mail.example.com [203.0.113.5])\r\n"
         f"\tby {MX} (Postfix) with ESMTPS id 4Q1x2y; Mon, 30 Nov 2026 09:00:01 +0000")
SENDERS_HOP = ("Received: from [192.0.2.7] (laptop.example.com [192.0.2.7])\r\n"
               "\tby mail.example.com with ESMTPSA id 77; Mon, 30 Nov 2026 09:00:00 +0000")
MESSAGE = ("From: Alice <alice@example.com>\r\nTo: support@localhost\r\n"
           "Subject: Printer\r\nMessage-ID: <a1@example.com>\r\n\r\nIt burns.\r\n")


def mail(*headers: str) -> bytes:
    return ("\r\n".join(headers) + "\r\n" + MESSAGE).encode()


def read(raw: bytes, ids: tuple[str, ...] = (MX,), spam: bool = False
         ) -> tuple[Verdicts, SpamVerdict | None]:
    return authentication_results(raw, ids, spam_headers=spam)


# --- where a header stands ---------------------------------------------------


def test_trusted_id_at_the_top__believed() -> None:
    verdicts, _ = read(mail(
        FRONT,
        f"Authentication-Results: {MX}; dmarc=pass (p=reject dis=none) header.from=example.com",
        SENDERS_HOP))
    assert verdicts.source == "trusted" and verdicts.authserv_id == MX
    assert (verdicts.dmarc, verdicts.dmarc_policy, verdicts.from_domain) == (
        "pass", "reject", "example.com")
    assert verdicts.ignored == () and not verdicts.forged_from


def test_results_above_the_front_mtas_received__believed() -> None:
    # Exim's add_header :at_start: puts the results above its Received.
    verdicts, _ = read(mail(f"Authentication-Results: {MX}; spf=fail smtp.mailfrom=x.example",
                            FRONT, SENDERS_HOP))
    assert verdicts.spf == "fail" and verdicts.spf_domain == "x.example"


def test_same_id_below_the_second_received__ignored_and_recorded() -> None:
    verdicts, _ = read(mail(
        FRONT, SENDERS_HOP,
        f"Authentication-Results: {MX}; dmarc=pass header.from=example.com; "
        f"spf=pass smtp.mailfrom=example.com; dkim=pass header.d=example.com; arc=pass"))
    assert (verdicts.dmarc, verdicts.spf, verdicts.dkim, verdicts.arc) == (
        "none", "none", "none", "none")
    assert verdicts.authserv_id is None and verdicts.ignored == (MX,)
    assert verdicts.dkim_domains == () and verdicts.from_domain is None


def test_untrusted_id__ignored_and_recorded() -> None:
    verdicts, _ = read(mail(
        FRONT, "Authentication-Results: mx.evil.example; dmarc=pass header.from=example.com",
        f"Authentication-Results: {MX}; dmarc=fail header.from=example.com"))
    assert verdicts.dmarc == "fail"
    assert verdicts.ignored == ("mx.evil.example",)


def test_sender_without_received__topmost_result_per_method_wins() -> None:
    # The sender wrote no Received: their forged header stands in the top
    # block, but below the front MTA's, which reports dmarc and spf.
    verdicts, _ = read(mail(
        FRONT,
        f"Authentication-Results: {MX}; dmarc=fail (p=reject dis=reject) header.from=example.com;"
        " spf=softfail smtp.mailfrom=evil.example",
        f"Authentication-Results: {MX}; dmarc=pass header.from=example.com; "
        "spf=pass smtp.mailfrom=example.com; dkim=pass header.d=example.com"))
    assert (verdicts.dmarc, verdicts.dmarc_policy, verdicts.spf) == ("fail", "reject", "softfail")
    assert verdicts.forged_from
    # A method the front MTA did not report comes from the next header: the
    # operator's front MTA must report what the rules rely on (dmarc does).
    assert verdicts.dkim == "pass"


def test_no_results_at_all__unauthenticated_verdicts() -> None:
    verdicts, spam = read(mail(FRONT, SENDERS_HOP), spam=True)
    assert verdicts == Verdicts(source="trusted")
    assert spam is None


def test_several_trusted_ids__each_believed() -> None:
    verdicts, _ = read(mail(
        "Authentication-Results: filter.help.example; arc=pass",
        FRONT, f"Authentication-Results: {MX}; dmarc=pass header.from=example.com"),
        ids=(MX, "filter.help.example"))
    assert (verdicts.arc, verdicts.dmarc) == ("pass", "pass")
    assert verdicts.authserv_id == "filter.help.example"


# --- styles of real front MTAs ---------------------------------------------


def test_postfix_with_opendkim_opendmarc_policyd_spf() -> None:
    verdicts, _ = read(mail(
        FRONT,
        f"Authentication-Results: {MX}; dmarc=fail (p=reject dis=none)\r\n"
        "\theader.from=example.com",
        f"Authentication-Results: {MX};\r\n\tdkim=fail reason=\"signature verification "
        "failed\" (2048-bit key; unprotected) header.d=example.com header.i=@example.com\r\n"
        "\theader.a=rsa-sha256 header.s=s2026 header.b=AbCdEf12",
        f"Authentication-Results: {MX}; spf=fail (sender IP is 198.51.100.9)\r\n"
        "\tsmtp.mailfrom=bounce@evil.example smtp.helo=mail.evil.example",
        "Received-SPF: Fail (mailfrom) identity=mailfrom; client-ip=198.51.100.9",
        SENDERS_HOP))
    assert (verdicts.dmarc, verdicts.dmarc_policy, verdicts.from_domain) == (
        "fail", "reject", "example.com")
    assert (verdicts.dkim, verdicts.dkim_domains) == ("fail", ())
    assert (verdicts.spf, verdicts.spf_domain) == ("fail", "evil.example")
    assert verdicts.forged_from and verdicts.ignored == ()


def test_gmail_style__folded_comments_upper_case_policy_several_signatures() -> None:
    raw = mail(
        "Received: from mail.example.com (mail.example.com. [203.0.113.5])\r\n"
        "        by mx.google.com with ESMTPS id a1si2; Mon, 30 Nov 2026 01:00:00 -0800 (PST)",
        "Authentication-Results: mx.google.com;\r\n"
        "       dkim=pass header.i=@example.com header.s=20230601 header.b=AbCd1234;\r\n"
        "       dkim=pass header.i=@esp.example header.s=k1 header.b=ZyXw9876;\r\n"
        "       spf=pass (google.com: domain of bounce@esp.example designates 203.0.113.5 "
        "as permitted sender) smtp.mailfrom=bounce@esp.example;\r\n"
        "       dmarc=pass (p=REJECT sp=NONE dis=NONE) header.from=example.com",
        SENDERS_HOP)
    verdicts, _ = read(raw, ids=("mx.google.com",))
    assert verdicts.dkim == "pass" and verdicts.dkim_domains == ("example.com", "esp.example")
    assert (verdicts.spf, verdicts.spf_domain) == ("pass", "esp.example")
    assert (verdicts.dmarc, verdicts.dmarc_policy) == ("pass", "reject")


def test_microsoft_style_without_authserv_id__never_believed() -> None:
    verdicts, _ = read(mail(
        FRONT,
        "Authentication-Results: spf=pass (sender IP is 203.0.113.5)\r\n"
        " smtp.mailfrom=example.com; dkim=pass (signature was verified)\r\n"
        " header.d=example.com;dmarc=pass action=none\r\n"
        " header.from=example.com;compauth=pass reason=100"), ids=(MX,))
    assert verdicts.dmarc == "none" and verdicts.ignored == (UNREADABLE,)


def test_rspamd_style__policy_in_trailing_comment() -> None:
    verdicts, _ = read(mail(
        FRONT,
        f"Authentication-Results: {MX};\r\n\tdkim=none;\r\n"
        "\tdmarc=fail reason=\"No valid SPF, No valid DKIM\" header.from=example.com "
        "(policy=quarantine);\r\n\tspf=fail (mx: domain of x@evil.example does not designate "
        "198.51.100.9 as permitted sender) smtp.mailfrom=x@evil.example"))
    assert (verdicts.dmarc, verdicts.dmarc_policy) == ("fail", "quarantine")
    assert verdicts.forged_from


def test_registered_policy_property__read() -> None:
    verdicts, _ = read(mail(
        FRONT, f"Authentication-Results: {MX}; dmarc=fail "
        "policy.published-domain-policy=quarantine header.from=example.com"))
    assert verdicts.dmarc_policy == "quarantine" and verdicts.forged_from


def test_dmarc_fail_with_policy_none__not_forged() -> None:
    verdicts, _ = read(mail(FRONT, f"Authentication-Results: {MX}; dmarc=fail (p=none "
                                   "dis=none) header.from=example.com"))
    assert verdicts.dmarc == "fail" and verdicts.dmarc_policy == "none"
    assert not verdicts.forged_from


@pytest.mark.parametrize(("written", "read_as"), [
    ("spf=hardfail", ("fail", "none", "none")),
    ("spf=PASS", ("pass", "none", "none")),
    ("dmarc=bogus", ("none", "none", "permerror")),
    ("dkim=invalid", ("none", "permerror", "none")),
    ("dkim=softfail", ("none", "permerror", "none")),
])
def test_result_values__known_ones_only(written: str, read_as: tuple[str, str, str]) -> None:
    verdicts, _ = read(mail(FRONT, f"Authentication-Results: {MX}; {written}"))
    assert (verdicts.spf, verdicts.dkim, verdicts.dmarc) == read_as


# --- hostile and broken headers ----------------------------------------------


@pytest.mark.parametrize("value", [
    f"{MX}; dmarc=",
    f"{MX}; dmarc pass header.from=example.com",
    f"{MX}; " + "(" * 2000 + ")" * 2000 + " dmarc=pass",  # authres recurses: RecursionError
    f"{MX} dmarc=pass",
    f"{MX}; dmarc=pass; \x00\x01",
    "",
    "; dmarc=pass",
])
def test_malformed_trusted_header__ignored_never_a_crash(value: str) -> None:
    verdicts, _ = read(mail(FRONT, f"Authentication-Results: {value}"))
    assert verdicts.dmarc != "pass"
    assert len(verdicts.ignored) == 1


def test_long_header__cut_at_a_semicolon_and_still_read() -> None:
    filler = "; ".join(f"x-{n}=pass" for n in range(400))
    verdicts, _ = read(mail(FRONT, f"Authentication-Results: {MX}; dmarc=fail (p=reject) "
                                   f"header.from=example.com; {filler}"))
    assert verdicts.dmarc == "fail" and verdicts.authserv_id == MX


def test_many_headers__bounded_work_and_record() -> None:
    forged = [f"Authentication-Results: host{n}.evil.example; dmarc=pass" for n in range(500)]
    trusted_forgeries = [f"Authentication-Results: {MX}; dkim=pass header.d=d{n}.example "
                         + "(" * 30 + ")" * 30 for n in range(500)]
    raw = mail(FRONT, *trusted_forgeries, *forged)
    started = time.perf_counter()
    verdicts, _ = read(raw)
    assert time.perf_counter() - started < 2.0
    assert len(verdicts.ignored) <= MAX_IGNORED
    assert verdicts.dkim_domains == ("d0.example",)  # the topmost reporting dkim


def test_long_authserv_id_and_domains__bounded() -> None:
    verdicts, _ = read(mail(
        FRONT, f"Authentication-Results: {'a' * 300}.example; dmarc=pass",
        f"Authentication-Results: {MX}; dmarc=pass header.from={'b' * 300}.example; "
        f"dkim=pass header.d=\"we ird\"; spf=pass smtp.mailfrom=x@{'c' * 60}.example"))
    assert verdicts.ignored == (UNREADABLE,)
    assert verdicts.from_domain is None  # too long to be a domain
    assert verdicts.dkim == "pass" and verdicts.dkim_domains == ()
    assert verdicts.spf_domain == "c" * 60 + ".example"


def test_verify_mode__every_header_recorded_not_believed() -> None:
    raw = mail(FRONT, f"Authentication-Results: {MX}; dmarc=pass",
               "Authentication-Results: mx.evil.example; dmarc=pass", SENDERS_HOP,
               f"Authentication-Results: {MX}; dkim=pass", "Authentication-Results: ;;;")
    assert ignored_results(raw) == (MX, "mx.evil.example", UNREADABLE)


# --- spam headers ------------------------------------------------------------


@pytest.mark.parametrize(("header", "expected"), [
    ("X-Spam-Status: Yes, score=7.1 required=5.0 tests=BAYES_99,URIBL_BLACK autolearn=no",
     SpamVerdict(score=7.1, flag=True, filter="spamassassin")),
    ("X-Spam-Status: No, score=-0.2 required=5.0 tests=DKIM_SIGNED",
     SpamVerdict(score=-0.2, flag=False, filter="spamassassin")),
    ("X-Spam-Status: Yes, hits=12 required=5", SpamVerdict(score=12, flag=True,
                                                         filter="spamassassin")),
    ("X-Spam-Status: Yes, score=1e999 required=5", SpamVerdict(score=None, flag=True,
                                                             filter="spamassassin")),
    ("X-Spam-Score: 7.1", SpamVerdict(score=7.1, flag=None, filter="spamassassin")),
    ("X-Spam-Flag: YES", SpamVerdict(score=None, flag=True, filter="spamassassin")),
    ("X-Rspamd-Score: 7.40", SpamVerdict(score=7.4, flag=None, filter="rspamd")),
    ("X-Spamd-Result: default: True [7.40 / 15.00];\r\n\tBAYES_SPAM(5.10)[99.9%];\r\n"
     "\tR_SPF_FAIL(1.00)[-all]", SpamVerdict(score=7.4, flag=True, filter="rspamd")),
    ("X-Spamd-Result: default: False [-1.20 / 15.00]; DMARC_POLICY_ALLOW(-0.50)",
     SpamVerdict(score=-1.2, flag=False, filter="rspamd")),
    ("X-Spam: Yes", SpamVerdict(score=None, flag=True, filter="rspamd")),
])
def test_spam_headers__both_filters(header: str, expected: SpamVerdict) -> None:
    _, spam = read(mail(FRONT, header, SENDERS_HOP), spam=True)
    assert spam == expected


def test_spam_headers__topmost_wins_and_only_the_top_block() -> None:
    _, spam = read(mail(FRONT, "X-Spam-Flag: YES", "X-Spam-Score: 9.5", "X-Spam-Flag: NO",
                        SENDERS_HOP, "X-Spam-Score: -100"), spam=True)
    assert spam == SpamVerdict(score=9.5, flag=True, filter="spamassassin")
    _, below = read(mail(FRONT, SENDERS_HOP, "X-Spam-Status: No, score=-50",
                         "X-Spam-Flag: NO"), spam=True)
    assert below is None


def test_spam_headers__read_only_when_asked() -> None:
    assert read(mail(FRONT, "X-Spam-Flag: YES"), spam=False)[1] is None


@pytest.mark.parametrize("value", ["NaN", "inf", "1e999", "99999999", "--3", "", "seven"])
def test_spam_score__garbage_is_no_score(value: str) -> None:
    _, spam = read(mail(FRONT, f"X-Spam-Score: {value}"), spam=True)
    assert spam is None


# --- words and storage -------------------------------------------------------


def test_describe__says_the_verdicts() -> None:
    verdicts, spam = read(mail(
        FRONT, f"Authentication-Results: {MX}; dmarc=fail (p=reject) header.from=example.com; "
        "spf=pass smtp.mailfrom=evil.example", "X-Spam-Score: 7.5", SENDERS_HOP,
        f"Authentication-Results: {MX}; dmarc=pass"), spam=True)
    words = describe(verdicts, spam)
    assert words.startswith(f"{MX} (trusted) says dmarc=fail (policy reject) for example.com")
    assert "From is forged" in words and "to be rejected" in words
    assert f"not believed: {MX}" in words and "score 7.5" in words


def test_stored_json__read_back_equal_and_hostile_values_dropped() -> None:
    verdicts, spam = read(mail(FRONT, f"Authentication-Results: {MX}; dmarc=fail (p=reject) "
                                      "header.from=example.com; dkim=pass header.d=e.example",
                               "X-Spam-Flag: YES", SENDERS_HOP,
                               "Authentication-Results: evil.example; none"), spam=True)
    assert spam is not None
    assert verdicts_from_json(verdicts.as_json()) == verdicts
    assert spam_from_json(spam.as_json()) == spam
    hostile = {"source": "verified", "dmarc": "pass!", "dkim_domains": [1, "x" * 999],
               "dmarc_policy": "drop", "ignored": "x"}
    back = verdicts_from_json(hostile)
    assert back is not None and back.dmarc == "none" and back.dmarc_policy is None
    assert back.dkim_domains == ("x" * MAX_DOMAIN_CHARS,) and back.ignored == ()
    assert verdicts_from_json({"source": "me"}) is None and verdicts_from_json([]) is None
    assert spam_from_json({"score": True, "flag": "yes"}) == SpamVerdict()


def test_result_lists__routing_keeps_the_same_copies() -> None:
    assert fields.SPF_RESULTS == SPF_RESULTS and fields.DKIM_RESULTS == DKIM_RESULTS
    assert fields.DMARC_RESULTS == DMARC_RESULTS and fields.ARC_RESULTS == ARC_RESULTS
    assert fields.DMARC_POLICIES == DMARC_POLICIES


# --- properties --------------------------------------------------------------

_FRAGMENTS = [MX, "mx.evil.example", "; ", ";", "dmarc=", "dkim=", "spf=", "arc=", "pass",
              "fail", "none", "(", ")", "(p=reject dis=none)", " header.from=", " header.d=",
              " smtp.mailfrom=", "@", "example.com", '"', "\\", "=", "policy.", "\r\n\t",
              "\x00", "é", "reason=", "/1", " 1 "]
_NAMES = ["Authentication-Results", "Received", "X-Spam-Status", "X-Spam-Score",
          "X-Spam-Flag", "X-Rspamd-Score", "X-Spamd-Result", "X-Spam", "From", "Subject"]
_values = st.lists(st.one_of(st.sampled_from(_FRAGMENTS), st.text(max_size=8)),
                   max_size=30).map("".join)
_fields = st.lists(st.tuples(st.sampled_from(_NAMES), _values), max_size=40)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_fields, st.booleans())
def test_property__any_header_section_reads_within_bounds(
        headers: list[tuple[str, str]], spam_headers: bool) -> None:
    raw = "".join(f"{name}: {value.replace(chr(13), ' ').replace(chr(10), ' ')}\r\n"
                  for name, value in headers).encode("utf-8", "surrogatepass") + b"\r\nbody\r\n"
    started = time.perf_counter()
    verdicts, spam = authentication_results(raw, (MX,), spam_headers=spam_headers)
    ignored = ignored_results(raw)
    assert time.perf_counter() - started < 1.0
    assert verdicts.spf in SPF_RESULTS and verdicts.dkim in DKIM_RESULTS
    assert verdicts.dmarc in DMARC_RESULTS and verdicts.arc in ARC_RESULTS
    assert verdicts.dmarc_policy in (*DMARC_POLICIES, None)
    assert verdicts.authserv_id in (MX, None)
    for recorded in (verdicts.ignored, ignored):
        assert len(recorded) <= MAX_IGNORED
        assert all(0 < len(i) <= MAX_ID_CHARS for i in recorded)
    for domain in (verdicts.from_domain, verdicts.spf_domain, *verdicts.dkim_domains):
        assert domain is None or 0 < len(domain) <= MAX_DOMAIN_CHARS
    if spam is not None:
        assert spam_headers and spam.filter in ("spamassassin", "rspamd")
        assert spam.score is None or abs(spam.score) <= auth_results.MAX_SPAM_SCORE
    assert verdicts_from_json(verdicts.as_json()) == verdicts
