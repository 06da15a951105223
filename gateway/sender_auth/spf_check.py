"""SPF (RFC 7208) with pyspf, its DNS answered by replay on miss (lookups.py).

pyspf looks every name up through its module-level `spf.DNSLookup(name,
qtype, strict, timeout)`, the hook its own test suite replaces. We replace it
once with a dispatcher: inside a check (a context variable names the
message's `Lookups`) it answers from that session and raises `Miss` for a
question not answered yet; anywhere else it is pyspf's own. pyspf catches
only its TempError and PermError around lookups (and everything around the
exp= explanation, which we never fetch), so Miss reaches us.

A run of pyspf is pure computation (microseconds), so it runs on the event
loop; the waiting is done by the resolver between runs. RFC 7208's limits
(10 mechanisms that look up, 10 MX or PTR names each, 2 void lookups) are
pyspf's; `MAX_LOOKUPS` bounds the distinct questions one message may ask.
"""

from __future__ import annotations

import contextvars
from typing import Any

import spf

from gateway.sender_auth import names
from gateway.sender_auth.lookups import Lookups, Miss
from gateway.sender_auth.resolver import ERROR, OVER_LIMIT, OVERSIZE

# 10 look-up mechanisms, their MX/A names, two void answers: RFC 7208's own
# worst cases are well past 40, real records well under it.
MAX_LOOKUPS = 40
RESULTS = frozenset({"pass", "fail", "softfail", "neutral", "none", "temperror", "permerror"})

_session: contextvars.ContextVar[Lookups | None] = contextvars.ContextVar(
    "sender_auth_spf_lookups", default=None)
_library_lookup = spf.DNSLookup


def _dns_lookup(name: str, qtype: str, strict: Any = True,
                timeout: Any = None) -> list[tuple[tuple[str, str], Any]]:
    lookups = _session.get()
    if lookups is None:  # someone else's pyspf call: the library's own resolver
        return _library_lookup(name, qtype, strict, timeout)  # type: ignore[no-any-return]
    answer = lookups.cached(name, qtype)
    if answer.status == ERROR:
        raise spf.TempError(f"DNS {qtype} lookup failed")
    if answer.status == OVERSIZE:
        raise spf.PermError(f"DNS {qtype} answer too large")
    if answer.status == OVER_LIMIT:
        raise spf.PermError("too many DNS lookups")
    return [((name, qtype), record) for record in answer.records]


spf.DNSLookup = _dns_lookup


class _Query(spf.query):  # type: ignore[misc]
    def get_explanation(self, spec: str) -> None:
        """exp= explains a fail in the SMTP reply; we send none, so no look-up."""
        return None


def identity(mail_from: str | None, helo: str | None) -> tuple[str, str] | None:
    """(sender, domain) SPF checks: MAIL FROM's, or postmaster@HELO for a
    bounce (RFC 7208 2.4); None when that domain is no multi-label name."""
    if mail_from:
        local, _, host = mail_from.rpartition("@")
        # pyspf splits at the first "@"; a quoted local part may hold more.
        local = local.replace("@", ".") or "postmaster"
    else:
        local, host = "postmaster", helo or ""
    domain = names.domain(host)
    if domain is None:
        return None
    return f"{local}@{domain}", domain


async def check_spf(lookups: Lookups, *, ip: str, sender: str,
                    helo: str | None) -> str:
    """The SPF result for `sender` sending from `ip`."""
    result = "permerror"
    for _ in range(MAX_LOOKUPS + 5):  # every run but the last adds an answer
        await lookups.cpu.turn()
        token = _session.set(lookups)
        try:
            result = _Query(i=ip, s=sender, h=helo or "unknown", strict=True).check()[0]
        except Miss:
            pass
        except spf.PermError:  # the constructor's: an address pyspf cannot read
            result = "permerror"
        finally:
            _session.reset(token)
        if not lookups.misses:
            return result if result in RESULTS else "permerror"
        await lookups.fetch_misses()
    return "permerror"
