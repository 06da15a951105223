"""Who sent a message, as sender authentication tells: the verdicts record.

The verdicts come from one of two places (the listener's `sender_auth`):
checked by the gateway itself (gateway/sender_auth/, "verified"), or read from
the `Authentication-Results` header of a trusted front MTA ("trusted"). Either
way they are stored with the message, shown on the timeline and in the API,
and read by rules as `auth.*` fields.

`authentication_results` reads a trusted front MTA's headers (and its spam
filter's, `spam_headers`) with the `authres` library; `ignored_results` lists
the headers the verify mode does not believe; `describe` says the verdicts in
words; `verdicts_from_json` reads back what a message's flags stored. Pure.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import authres  # type: ignore[import-untyped]
import authres.arc  # type: ignore[import-untyped]
import authres.dmarc  # type: ignore[import-untyped]

from parsers.header_block import split_entity
from parsers.limits import MAX_HEADER_BLOCK_BYTES

# RFC 8601 2.7 result values, as far as the gateway tells them apart.
SPF_RESULTS = ("pass", "fail", "softfail", "neutral", "none", "temperror", "permerror")
DKIM_RESULTS = ("pass", "fail", "policy", "neutral", "none", "temperror", "permerror")
DMARC_RESULTS = ("pass", "fail", "none", "temperror", "permerror")
ARC_RESULTS = ("pass", "fail", "none")
DMARC_POLICIES = ("none", "quarantine", "reject")


@dataclass(frozen=True, slots=True, kw_only=True)
class Verdicts:
    """One message's sender authentication."""

    source: str                      # "verified" (here) or "trusted" (a front MTA's)
    spf: str = "none"
    spf_domain: str | None = None    # the MAIL FROM domain checked (HELO's when empty)
    dkim: str = "none"               # pass when any signature passes
    dkim_domains: tuple[str, ...] = ()  # d= of the signatures that passed
    dmarc: str = "none"
    dmarc_policy: str | None = None  # the From domain's policy (sp= for a subdomain)
    from_domain: str | None = None   # RFC5322.From's domain, the one DMARC is about
    arc: str = "none"
    authserv_id: str | None = None   # "trusted": whose header it was
    # authserv-ids of Authentication-Results headers not believed (RFC 8601 5).
    ignored: tuple[str, ...] = field(default_factory=tuple)

    @property
    def forged_from(self) -> bool:
        """From fails DMARC of a domain that asks for mail failing it to be
        quarantined or rejected: its sender is not who it claims to be."""
        return self.dmarc == "fail" and self.dmarc_policy in ("quarantine", "reject")

    def as_json(self) -> dict[str, Any]:
        return {"source": self.source, "spf": self.spf, "spf_domain": self.spf_domain,
                "dkim": self.dkim, "dkim_domains": list(self.dkim_domains),
                "dmarc": self.dmarc, "dmarc_policy": self.dmarc_policy,
                "from_domain": self.from_domain, "arc": self.arc,
                "authserv_id": self.authserv_id, "ignored": list(self.ignored)}


@dataclass(frozen=True, slots=True, kw_only=True)
class SpamVerdict:
    """A trusted front filter's opinion (SpamAssassin or rspamd headers)."""

    score: float | None = None
    flag: bool | None = None  # the filter called it spam
    filter: str = ""          # "spamassassin" or "rspamd"

    def as_json(self) -> dict[str, Any]:
        return {"score": self.score, "flag": self.flag, "filter": self.filter}


# --- reading a front MTA's headers ("trust") ----------------------------------
#
# RFC 8601 section 5: an Authentication-Results header is believed only from a
# host the operator names (its authserv-id) and only where that host put it. The
# front MTA adds its Received and its results at the top of the header section;
# the sender writes everything below, including headers that claim the trusted
# id. So only the headers above the second Received count, and within those,
# each method is read from the topmost header that reports it: a sender who
# wrote no Received of their own still lands below the front MTA's results.

AUTH_RESULTS = "authentication-results"
RECEIVED = "received"
MAX_HEADERS_READ = 20   # Authentication-Results headers looked at, top down
MAX_TRUSTED_PARSED = 5  # of those, parsed in full (a front MTA writes one to three)
MAX_HEADER_CHARS = 2048  # one header is cut (at a ";") to this: authres is quadratic
MAX_IGNORED = 10
MAX_ID_CHARS = 100
MAX_DOMAINS = 10
MAX_DOMAIN_CHARS = 253
UNREADABLE = "(unreadable)"  # an ignored header without a readable authserv-id
MAX_SPAM_SCORE = 10_000.0

SPAM_HEADERS = {
    # name: (filter, what it tells)
    "x-spam-status": ("spamassassin", "status"),
    "x-spam-score": ("spamassassin", "score"),
    "x-spam-flag": ("spamassassin", "flag"),
    "x-rspamd-score": ("rspamd", "score"),
    "x-spamd-result": ("rspamd", "result"),
    "x-spam": ("rspamd", "flag"),
}

_CONTEXT = authres.FeatureContext(authres.dmarc, authres.arc)
_METHODS = ("spf", "dkim", "dmarc", "arc")
_ALLOWED = {"spf": SPF_RESULTS, "dkim": DKIM_RESULTS, "dmarc": DMARC_RESULTS,
            "arc": ARC_RESULTS}
# Older spellings (RFC 5451 "hardfail", RFC 6376's early "invalid").
_ALIASES = {"hardfail": "fail", "invalid": "permerror"}
_ID = re.compile(rf"[a-z0-9._-]{{1,{MAX_ID_CHARS}}}")
# The authserv-id as written first in the value, after any comment.
_LEADING_ID = re.compile(
    rf"\s*(?:\([^()]{{0,200}}\)\s*)*([^\s;()]{{1,{MAX_ID_CHARS}}})(?=[\s;(]|$)")
# OpenDMARC and Gmail: "dmarc=fail (p=reject dis=none)"; rspamd "(policy=reject)".
_DMARC_CLAUSE = re.compile(r"(?i)(?:^|;)\s*dmarc\s*=\s*[a-z]+([^;]*)")
_POLICY_WORD = re.compile(r"(?i)(?<![\w.-])(?:p|policy)\s*=\s*(none|quarantine|reject)\b")
_NUMBER = r"[-+]?\d{1,6}(?:\.\d{1,6})?"
_LEADING_NUMBER = re.compile(rf"\s*({_NUMBER})(?=[\s/,;(]|$)")
_SA_STATUS = re.compile(
    rf"(?i)\s*(yes|no)\b(?:.{{0,200}}?\b(?:score|hits)\s*=\s*({_NUMBER})(?=[\s,;]|$))?")
_SPAMD_RESULT = re.compile(rf"(?i)\s*[\w-]{{1,64}}\s*:\s*(true|false)\s*\[\s*({_NUMBER})\s*/")
_YES_NO = re.compile(r"(?i)\s*(yes|no)\b")


def authentication_results(raw: bytes, authserv_ids: Collection[str], *,
                           spam_headers: bool = False
                           ) -> tuple[Verdicts, SpamVerdict | None]:
    """The trusted front MTA's verdicts on a message (`raw`, as received), and
    its filter's spam verdict when `spam_headers`. Never raises: a header that
    cannot be read is not believed, and its authserv-id is recorded as ignored."""
    fields = _fields(raw)
    top = _top_block(fields)
    trusted = frozenset(authserv_ids)
    believed: list[tuple[Any, str]] = []  # parsed header, its (cut) text
    ignored: list[str] = []
    for index, value in _results_headers(fields):
        authserv_id = _leading_id(value)
        if (index < top and authserv_id in trusted
                and len(believed) < MAX_TRUSTED_PARSED):
            parsed = _parse(value)
            if parsed is not None and parsed.authserv_id in trusted:
                believed.append((parsed, value))
                continue
        ignored.append(authserv_id)
    verdicts = _verdicts(believed, _kept(ignored))
    return verdicts, (_spam(fields[:top]) if spam_headers else None)


def ignored_results(raw: bytes) -> tuple[str, ...]:
    """The authserv-ids of every Authentication-Results header of `raw`: none is
    believed when the gateway checks the sender itself ("verify")."""
    return _kept([_leading_id(value) for _, value in _results_headers(_fields(raw))])


def merged_ignored(first: Sequence[str], second: Sequence[str]) -> tuple[str, ...]:
    """Two lists of ignored authserv-ids as one, within the bound."""
    return _kept([*first, *second])


def _fields(raw: bytes) -> tuple[tuple[str, bytes], ...]:
    # The header section only: a 25 MB body is not copied to read it.
    return split_entity(raw[: MAX_HEADER_BLOCK_BYTES + 4]).fields


def _top_block(fields: Sequence[tuple[str, bytes]]) -> int:
    """How many fields stand above the second Received (all, with fewer)."""
    seen = 0
    for index, (name, _) in enumerate(fields):
        if name == RECEIVED:
            seen += 1
            if seen == 2:
                return index
    return len(fields)


def _results_headers(fields: Sequence[tuple[str, bytes]]) -> list[tuple[int, str]]:
    """The first MAX_HEADERS_READ Authentication-Results headers, by position,
    as ASCII text (a byte beyond it is replaced) cut at a ";" to the bound."""
    found: list[tuple[int, str]] = []
    for index, (name, value) in enumerate(fields):
        if name != AUTH_RESULTS:
            continue
        text = value[:MAX_HEADER_CHARS + 1].decode("ascii", "replace")
        if len(text) > MAX_HEADER_CHARS:
            text = text[:MAX_HEADER_CHARS].rpartition(";")[0]
        found.append((index, text))
        if len(found) == MAX_HEADERS_READ:
            break
    return found


def _leading_id(value: str) -> str:
    match = _LEADING_ID.match(value)
    name = match.group(1).lower() if match else ""
    return name if _ID.fullmatch(name) and "=" not in name else UNREADABLE


def _parse(value: str) -> Any:
    """authres's reading of one header value, or None when it cannot read it."""
    try:
        return _CONTEXT.parse_value(value)
    except Exception:  # noqa: BLE001 - authres raises its own errors, and RecursionError
        return None


def _kept(ids: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(ids))[:MAX_IGNORED]


def _verdicts(believed: Sequence[tuple[Any, str]], ignored: tuple[str, ...]) -> Verdicts:
    chosen: dict[str, tuple[list[Any], str]] = {}
    for header, text in believed:  # top down: the topmost header reporting a method wins
        for method in _METHODS:
            results = [r for r in header.results if str(r.method).lower() == method]
            if results and method not in chosen:
                chosen[method] = (results, text)
    spf, spf_domain = "none", None
    if "spf" in chosen:
        result = chosen["spf"][0][0]
        spf = _result(result, "spf")
        mailfrom = _property(result, "smtp", "mailfrom")
        spf_domain = _domain(mailfrom) if mailfrom else _domain(_property(result, "smtp", "helo"))
    dkim, dkim_domains = "none", tuple[str, ...]()
    if "dkim" in chosen:
        results = chosen["dkim"][0]
        values = [_result(r, "dkim") for r in results]
        dkim = "pass" if "pass" in values else values[0]
        domains = (_domain(_property(r, "header", "d") or _property(r, "header", "i"))
                   for r, v in zip(results, values, strict=True) if v == "pass")
        dkim_domains = tuple(dict.fromkeys(d for d in domains if d))[:MAX_DOMAINS]
    dmarc, policy, from_domain = "none", None, None
    if "dmarc" in chosen:
        results, text = chosen["dmarc"]
        dmarc = _result(results[0], "dmarc")
        from_domain = _domain(_property(results[0], "header", "from"))
        policy = _dmarc_policy(results[0], text)
    arc = _result(chosen["arc"][0][0], "arc") if "arc" in chosen else "none"
    return Verdicts(source="trusted", spf=spf, spf_domain=spf_domain, dkim=dkim,
                    dkim_domains=dkim_domains, dmarc=dmarc, dmarc_policy=policy,
                    from_domain=from_domain, arc=arc,
                    authserv_id=str(believed[0][0].authserv_id) if believed else None,
                    ignored=ignored)


def _result(result: Any, method: str) -> str:
    """A result as one of the method's known values; an unknown one is an error."""
    value = str(result.result or "").lower()
    value = _ALIASES.get(value, value)
    allowed = _ALLOWED[method]
    if value in allowed:
        return value
    return "permerror" if "permerror" in allowed else "none"


def _property(result: Any, ptype: str, name: str) -> str | None:
    for prop in result.properties or ():
        if str(prop.type).lower() == ptype and str(prop.name).lower() == name:
            return str(prop.value) if prop.value is not None else None
    return None


def _domain(value: str | None) -> str | None:
    """A domain (or the domain of an address) as recorded: lower case, bounded,
    one printable word, or None."""
    if not value:
        return None
    domain = value.strip().strip('"').rpartition("@")[2].strip().rstrip(".").lower()
    if not domain or len(domain) > MAX_DOMAIN_CHARS or not domain.isprintable() or any(
            c.isspace() or c in ';()<>[]",\\' for c in domain):
        return None
    return domain


def _dmarc_policy(result: Any, text: str) -> str | None:
    """The From domain's published policy: the registered property
    `policy.published-domain-policy`, else a `p=` or `policy=` in the comment
    of the dmarc clause (OpenDMARC, Gmail, rspamd), which authres drops."""
    stated = _property(result, "policy", "published-domain-policy")
    if stated and stated.lower() in DMARC_POLICIES:
        return stated.lower()
    clause = _DMARC_CLAUSE.search(text)
    found = _POLICY_WORD.search(clause.group(1)) if clause else None
    return found.group(1).lower() if found else None


def _spam(fields: Sequence[tuple[str, bytes]]) -> SpamVerdict | None:
    """The front filter's verdict from the top block: score and flag each from
    the topmost header that tells it."""
    score: float | None = None
    flag: bool | None = None
    source = ""
    for name, raw in fields:
        if name not in SPAM_HEADERS:
            continue
        filter_name, kind = SPAM_HEADERS[name]
        value = raw[:512].decode("ascii", "replace")
        said_flag, said_score = _spam_value(kind, value)
        if said_score is not None and score is None:
            score, source = said_score, filter_name
        if said_flag is not None and flag is None:
            flag = said_flag
            source = source or filter_name
    if score is None and flag is None:
        return None
    return SpamVerdict(score=score, flag=flag, filter=source)


def _spam_value(kind: str, value: str) -> tuple[bool | None, float | None]:
    """What one spam header says: (flag, score), each None when it does not say."""
    if kind == "score":
        match = _LEADING_NUMBER.match(value)
        return None, _score(match.group(1)) if match else None
    if kind == "flag":
        match = _YES_NO.match(value)
        return (match.group(1).lower() == "yes" if match else None), None
    pattern = _SA_STATUS if kind == "status" else _SPAMD_RESULT
    match = pattern.match(value)
    if match is None:
        return None, None
    flag = match.group(1).lower() in ("yes", "true")
    return flag, _score(match.group(2)) if match.group(2) else None


def _score(text: str) -> float | None:
    try:
        score = float(text)
    except ValueError:
        return None
    return score if math.isfinite(score) and abs(score) <= MAX_SPAM_SCORE else None


# --- in words, and back from storage -------------------------------------------


def describe(verdicts: Verdicts, spam: SpamVerdict | None = None) -> str:
    """The verdicts as the timeline says them, in one line."""
    if verdicts.source == "trusted":
        head = (f"{verdicts.authserv_id} (trusted) says" if verdicts.authserv_id else
                "no Authentication-Results of a trusted front MTA at the top of the header:")
    else:
        head = "checked here:"
    dmarc = f"dmarc={verdicts.dmarc}"
    if verdicts.dmarc_policy:
        dmarc += f" (policy {verdicts.dmarc_policy})"
    if verdicts.from_domain:
        dmarc += f" for {verdicts.from_domain}"
    spf = f"spf={verdicts.spf}" + (f" for {verdicts.spf_domain}" if verdicts.spf_domain else "")
    dkim = f"dkim={verdicts.dkim}" + (
        f" by {', '.join(verdicts.dkim_domains)}" if verdicts.dkim_domains else "")
    parts = [f"{head} {dmarc}, {spf}, {dkim}, arc={verdicts.arc}"]
    if verdicts.forged_from:
        parts.append("From is forged: it fails DMARC of a domain that asks for such mail "
                     f"to be {'rejected' if verdicts.dmarc_policy == 'reject' else 'quarantined'}")
    if verdicts.ignored:
        parts.append("Authentication-Results not believed: " + ", ".join(verdicts.ignored))
    if spam is not None:
        said = [] if spam.score is None else [f"score {spam.score:g}"]
        if spam.flag is not None:
            said.append("flagged as spam" if spam.flag else "not flagged")
        parts.append(f"spam filter ({spam.filter or 'unknown'}): {', '.join(said)}")
    return "; ".join(parts)


def verdicts_from_json(data: object) -> Verdicts | None:
    """Verdicts as `Verdicts.as_json` stored them (a message's flags), or None
    when `data` is not such a record."""
    if not isinstance(data, dict) or data.get("source") not in ("verified", "trusted"):
        return None

    def one_of(key: str, allowed: tuple[str, ...], default: str = "none") -> str:
        value = data.get(key)
        return value if isinstance(value, str) and value in allowed else default

    def text(key: str) -> str | None:
        value = data.get(key)
        return value[:MAX_DOMAIN_CHARS] if isinstance(value, str) and value else None

    def words(key: str, limit: int) -> tuple[str, ...]:
        value = data.get(key)
        items = value if isinstance(value, list) else []
        return tuple(v[:MAX_DOMAIN_CHARS] for v in items if isinstance(v, str))[:limit]

    policy = data.get("dmarc_policy")
    return Verdicts(source=str(data["source"]), spf=one_of("spf", SPF_RESULTS),
                    spf_domain=text("spf_domain"), dkim=one_of("dkim", DKIM_RESULTS),
                    dkim_domains=words("dkim_domains", MAX_DOMAINS),
                    dmarc=one_of("dmarc", DMARC_RESULTS),
                    dmarc_policy=policy if policy in DMARC_POLICIES else None,
                    from_domain=text("from_domain"), arc=one_of("arc", ARC_RESULTS),
                    authserv_id=text("authserv_id"), ignored=words("ignored", MAX_IGNORED))


def spam_from_json(data: object) -> SpamVerdict | None:
    """A spam verdict as `SpamVerdict.as_json` stored it, or None."""
    if not isinstance(data, dict):
        return None
    score, flag, name = data.get("score"), data.get("flag"), data.get("filter")
    number = (float(score) if isinstance(score, int | float) and not isinstance(score, bool)
              and math.isfinite(score) else None)
    return SpamVerdict(score=number, flag=flag if isinstance(flag, bool) else None,
                       filter=name if isinstance(name, str) else "")
