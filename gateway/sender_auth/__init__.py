"""Sender authentication for mail received directly (a listener's
`sender_auth = "verify"`): SPF, DKIM, ARC and DMARC.

- `resolver`: dnspython's asynchronous resolver behind a bounded cache of
  answers, negative answers and (briefly) failures; a question in flight is
  asked once. `lookups`: one check's budget of questions and its answers,
  and the synchronous answer-only view the libraries look up through
  ("replay on miss": the event loop never waits on DNS).
- `cpu_slice`: the checks' CPU steps share at most a few milliseconds of
  each event-loop turn, however many messages are ready at once.
- `spf_check` (pyspf), `dkim_check` and `arc_check` (dkimpy), `dmarc` (pure,
  RFC 7489), `headers` (the From domain), `org_domain` (the Public Suffix
  List), `names` (a domain from hostile text, checked).

SPF, DKIM, ARC and the DMARC record lookups run at once; DMARC is judged
when they are done. Each check has its deadline and its own bounds; a fault
in one (a library's slip on hostile input) is that check's permerror, logged
at INFO without the message's contents, and leaves the others alone.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Sequence
from typing import TypeVar

from gateway.config.sections import SenderAuthSection
from gateway.sender_auth import dmarc, org_domain
from gateway.sender_auth.arc_check import MAX_SETS, check_arc
from gateway.sender_auth.cpu_slice import CpuSlice
from gateway.sender_auth.dkim_check import MAX_SIGNATURES, DkimOutcome, check_dkim
from gateway.sender_auth.headers import read_fields
from gateway.sender_auth.lookups import Lookups
from gateway.sender_auth.resolver import ERROR, OK, CachingResolver
from gateway.sender_auth.signed_message import Received
from gateway.sender_auth.spf_check import MAX_LOOKUPS, check_spf, identity
from parsers.auth_results import Verdicts

__all__ = ["Verifier"]

log = logging.getLogger("intake.sender_auth")
T = TypeVar("T")

# A check may take this many DNS timeouts in all (an SPF record's chain of
# includes is looked up one after another), and at least MIN_DEADLINE seconds
# (hashing a 25 MB body takes about one), then it is temperror.
DEADLINE_TIMEOUTS = 5
MIN_DEADLINE = 10.0
# Questions one message may ask, by check: SPF's own, a key per signature and
# per ARC seal and signature, _dmarc at the From domain and its organizational one.
LOOKUP_LIMITS = {"spf": MAX_LOOKUPS, "dkim": MAX_SIGNATURES, "arc": 2 * MAX_SETS, "dmarc": 2}


class Verifier:
    """One per pipeline process: its resolver's cache is shared by the workers."""

    def __init__(self, settings: SenderAuthSection, *,
                 resolver: CachingResolver | None = None) -> None:
        self.resolver = resolver if resolver is not None else CachingResolver(settings)
        self._slots = asyncio.Semaphore(settings.concurrency)
        self._deadline = max(settings.timeout_seconds * DEADLINE_TIMEOUTS, MIN_DEADLINE)
        self._cpu = CpuSlice()  # every check's CPU steps share a loop turn's slice
        org_domain.load()

    async def verify(self, raw: bytes, *, ip: str | None, mail_from: str | None,
                     helo: str | None) -> Verdicts:
        """The verdicts for one message; never raises (a fault is temperror)."""
        try:
            async with self._slots:
                return await self._verify(raw, ip, mail_from, helo)
        except Exception as exc:  # ours, not the message's: try again later
            log.warning("sender authentication failed (%s): verdicts are temperror",
                        type(exc).__name__)
            return Verdicts(source="verified", spf="temperror", dkim="temperror",
                            dmarc="temperror")

    async def close(self) -> None:
        """Release the resolver's sockets."""
        await self.resolver.close()

    async def _verify(self, raw: bytes, ip: str | None, mail_from: str | None,
                      helo: str | None) -> Verdicts:
        await self._cpu.turn()
        received = Received(raw)
        fields = read_fields(raw)
        sender = identity(mail_from, helo) if ip else None
        from_domain = fields.from_domain
        spf, dkim, arc, found = await asyncio.gather(
            self._spf(ip, sender, helo),
            self._guard("dkim", check_dkim(received, self._lookups("dkim"),
                                           signatures=fields.dkim_signatures),
                        DkimOutcome("temperror"), DkimOutcome("permerror")),
            self._guard("arc", check_arc(received, self._lookups("arc")), "fail", "fail")
            if fields.arc else _const("none"),
            self._guard("dmarc", dmarc.discover(from_domain, self._txt(),
                                                org_domain.org_domain),
                        dmarc.Found(error="temperror"), dmarc.Found(error="permerror"))
            if from_domain else _const(dmarc.Found(error="permerror")))
        spf_domain = sender[1] if sender else None
        result, policy = "permerror", None
        if from_domain:
            result, policy = dmarc.evaluate(
                found, from_domain=from_domain, spf=spf, spf_domain=spf_domain,
                dkim_domains=dkim.domains, org_domain=org_domain.org_domain)
        return Verdicts(source="verified", spf=spf, spf_domain=spf_domain,
                        dkim=dkim.result, dkim_domains=dkim.domains, dmarc=result,
                        dmarc_policy=policy, from_domain=from_domain, arc=arc)

    async def _spf(self, ip: str | None, sender: tuple[str, str] | None,
                   helo: str | None) -> str:
        if ip is None or sender is None:
            return "none"
        return await self._guard(
            "spf", check_spf(self._lookups("spf"), ip=ip, sender=sender[0], helo=helo),
            "temperror", "permerror")

    def _lookups(self, check: str) -> Lookups:
        return Lookups(self.resolver, LOOKUP_LIMITS[check], self._cpu)

    def _txt(self) -> dmarc.TxtLookup:
        lookups = self._lookups("dmarc")

        async def txt(name: str) -> Sequence[str] | None:
            answer = await lookups.get(name, "TXT")
            if answer.status == ERROR:
                return None
            if answer.status != OK:
                return []
            return [b"".join(p for p in r if isinstance(p, bytes)).decode("utf-8", "replace")
                    for r in answer.records if isinstance(r, tuple)]
        return txt

    async def _guard(self, check: str, work: Awaitable[T], timed_out: T, faulted: T) -> T:
        try:
            async with asyncio.timeout(self._deadline):
                return await work
        except TimeoutError:
            log.info("sender authentication: %s took over %.1f s: temperror", check,
                     self._deadline)
            return timed_out
        except Exception as exc:  # a library's slip on hostile input
            log.info("sender authentication: %s check failed on this message (%s)", check,
                     type(exc).__name__)
            return faulted


async def _const(value: T) -> T:
    return value
