"""Who sent a message, as sender authentication tells: the verdicts record.

The verdicts come from one of two places (the listener's `sender_auth`):
checked by the gateway itself (gateway/sender_auth/, "verified"), or read from
the `Authentication-Results` header of a trusted front MTA ("trusted"). Either
way they are stored with the message, shown on the timeline and in the API,
and read by rules as `auth.*` fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

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
