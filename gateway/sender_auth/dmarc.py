"""DMARC (RFC 7489), pure: the record parser and the evaluation take strings;
the TXT lookup and the organizational domain are passed in.

- The policy is the From domain's record at `_dmarc.<domain>`, else its
  organizational domain's, whose `sp=` (else `p=`) then applies (6.6.3).
- pass: SPF passed for a domain aligned with From, or a DKIM signature of an
  aligned domain passed (relaxed: the same organizational domain; strict:
  the same domain; `aspf=` and `adkim=`, relaxed by default). Else fail.
- none: no record; temperror: a lookup failed temporarily; permerror: a
  broken record (several, `v=DMARC1` not first, a bad `p=`, `sp=`, `adkim=`
  or `aspf=`), and (the caller's) a From without exactly one address.
- `pct=` is not applied to the verdict: the policy is recorded as written.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

POLICIES = ("none", "quarantine", "reject")
ALIGNMENTS = ("r", "s")
_VERSION_FIRST = re.compile(r"\s*v\s*=\s*DMARC1\s*(?:;|$)", re.IGNORECASE)
_VERSION_ANYWHERE = re.compile(r"(?:^|;)\s*v\s*=\s*DMARC1\s*(?:;|$)", re.IGNORECASE)

# A TXT lookup: the records' texts ([] for no name or no record), or None when
# the lookup failed temporarily.
TxtLookup = Callable[[str], Awaitable[Sequence[str] | None]]
# A domain's organizational domain (itself when it is one, or a public suffix).
OrgDomain = Callable[[str], str]


class DmarcError(ValueError):
    """A record that says it is DMARC but cannot be read as one."""


@dataclass(frozen=True, slots=True)
class Record:
    p: str
    sp: str | None = None
    adkim: str = "r"
    aspf: str = "r"


@dataclass(frozen=True, slots=True)
class Found:
    """What discovery found: a record (and whether it is the organizational
    domain's), or none, or an error verdict."""

    record: Record | None = None
    inherited: bool = False
    error: str | None = None  # "temperror" or "permerror"


def parse_record(text: str) -> Record:
    tags: dict[str, str] = {}
    for part in text.split(";"):
        if not part.strip():
            continue
        name, sep, value = part.partition("=")
        name = name.strip().lower()
        if not sep or not name:
            raise DmarcError("a tag without a value")
        if name in tags:
            raise DmarcError(f"{name}= twice")
        tags[name] = value.strip()
    if next(iter(tags), None) != "v" or tags["v"].upper() != "DMARC1":
        raise DmarcError("v=DMARC1 is not first")
    policy = tags.get("p", "").lower()
    if policy not in POLICIES:
        raise DmarcError("no valid p=")
    sub = tags.get("sp", "").lower() or None
    if sub is not None and sub not in POLICIES:
        raise DmarcError("bad sp=")
    adkim = tags.get("adkim", "r").lower()
    aspf = tags.get("aspf", "r").lower()
    if adkim not in ALIGNMENTS or aspf not in ALIGNMENTS:
        raise DmarcError("bad adkim= or aspf=")
    return Record(p=policy, sp=sub, adkim=adkim, aspf=aspf)


def select_record(texts: Sequence[str]) -> Record | None:
    """The one DMARC record among a name's TXT records, None without one;
    other TXT records are not ours to judge (6.6.3)."""
    candidates = [text for text in texts if _VERSION_FIRST.match(text)]
    if len(candidates) > 1:
        raise DmarcError("more than one DMARC record")
    if candidates:
        return parse_record(candidates[0])
    if any(_VERSION_ANYWHERE.search(text) for text in texts):
        raise DmarcError("v=DMARC1 is not first")
    return None


async def discover(from_domain: str, txt: TxtLookup, org_domain: OrgDomain) -> Found:
    """The policy record for mail From `from_domain`."""
    for name, inherited in ((from_domain, False), (org_domain(from_domain), True)):
        if inherited and name == from_domain:
            break
        texts = await txt(f"_dmarc.{name}")
        if texts is None:
            return Found(error="temperror")
        try:
            record = select_record(texts)
        except DmarcError:
            return Found(error="permerror")
        if record is not None:
            return Found(record=record, inherited=inherited)
    return Found()


def aligned(domain: str, from_domain: str, mode: str, org_domain: OrgDomain) -> bool:
    if mode == "s":
        return domain == from_domain
    return org_domain(domain) == org_domain(from_domain)


def evaluate(found: Found, *, from_domain: str, spf: str, spf_domain: str | None,
             dkim_domains: Sequence[str], org_domain: OrgDomain) -> tuple[str, str | None]:
    """(the DMARC result, the policy the domain asks for)."""
    if found.error is not None:
        return found.error, None
    record = found.record
    if record is None:
        return "none", None
    policy = record.sp if found.inherited and record.sp else record.p
    spf_aligned = (spf == "pass" and spf_domain is not None
                   and aligned(spf_domain, from_domain, record.aspf, org_domain))
    dkim_aligned = any(aligned(d, from_domain, record.adkim, org_domain) for d in dkim_domains)
    return ("pass" if spf_aligned or dkim_aligned else "fail"), policy
