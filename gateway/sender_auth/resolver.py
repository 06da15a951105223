"""The asynchronous DNS resolver sender authentication looks things up with:
dnspython's `dns.asyncresolver`, a bounded cache of our own and one lookup
per question in flight.

Answers are kept by their TTL (at most `max_ttl_seconds`); "no such name" and
"no such record" by the SOA's negative TTL (RFC 2308) capped at five minutes;
SERVFAIL and timeouts for a few seconds only, so a burst of mail from one
domain asks once but an outage is over when it is over. Every answer comes
back as an `Answer`, never an exception: what the server said, bounded in
records and bytes (an answer over the bounds is OVERSIZE, a permanent error
to the checks), or ERROR for anything else (timeouts, SERVFAIL, a CNAME loop,
a malformed reply).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import dns.asyncresolver
import dns.exception
import dns.message
import dns.name
import dns.nameserver
import dns.rdatatype
import dns.resolver
import dns.rrset

from gateway.config.sections import SenderAuthSection, parse_listen
from gateway.sender_auth.cache import TtlCache

log = logging.getLogger("intake.sender_auth")

OK = "ok"
NXDOMAIN = "nxdomain"    # no such name
NODATA = "nodata"        # the name, but no record of the type
ERROR = "error"          # temporary: timeout, SERVFAIL, unreachable, malformed
OVERSIZE = "oversize"    # more records or bytes than any sane answer has
OVER_LIMIT = "limit"     # not asked: the message's lookup budget is spent (lookups.py)

TYPES = frozenset({"A", "AAAA", "MX", "PTR", "TXT"})
MAX_RECORDS = 64                # an SPF "mx" looks at 10; apex TXT sets run to ~30
MAX_ANSWER_BYTES = 16 * 1024    # of record data: a 4096-bit DKIM key is about 750
CACHE_BYTES = 32 * 1024 * 1024  # all entries together, whatever cache_entries allows
NEGATIVE_TTL_CAP = 300.0
FAILURE_TTL = 5.0
_EDNS_PAYLOAD = 1232            # the DNS flag day's UDP size; more comes over TCP

# A TXT record's strings; an address or a name; an MX's (preference, exchange).
Record = str | tuple[bytes, ...] | tuple[int, str]


@dataclass(frozen=True, slots=True)
class Answer:
    status: str
    records: tuple[Record, ...] = ()

    @property
    def size(self) -> int:
        """Roughly the bytes it holds, for the cache's bound."""
        total = 64
        for record in self.records:
            if isinstance(record, str):
                total += len(record)
            else:
                total += sum(len(part) if isinstance(part, bytes | str) else 8
                             for part in record)
        return total


def make_resolver(settings: SenderAuthSection) -> dns.asyncresolver.Resolver | None:
    """dnspython's resolver on the configured servers, else the system's; None
    (every lookup a temporary error) when there is no configuration at all."""
    if settings.nameservers:
        resolver = dns.asyncresolver.Resolver(configure=False)
        servers: list[dns.nameserver.Nameserver] = []
        for hostport in settings.nameservers:
            host, port = parse_listen(hostport)
            servers.append(dns.nameserver.Do53Nameserver(host, port))
        resolver.nameservers = servers
    else:
        try:
            resolver = dns.asyncresolver.Resolver()
        except (dns.resolver.NoResolverConfiguration, OSError) as exc:
            log.warning("sender authentication: no DNS configuration (%s): every check "
                        "is temperror; set [sender_auth] nameservers", type(exc).__name__)
            return None
    resolver.cache = None  # ours below, which also keeps negative answers and failures
    resolver.lifetime = settings.timeout_seconds
    # Each server gets its share of the time, so a dead first one leaves time for the next.
    resolver.timeout = settings.timeout_seconds / max(1, len(resolver.nameservers))
    resolver.retry_servfail = False
    resolver.use_edns(0, 0, _EDNS_PAYLOAD)
    return resolver


class CachingResolver:
    """One per Verifier: its cache and in-flight lookups are shared by all the
    messages the process checks."""

    def __init__(self, settings: SenderAuthSection,
                 resolver: dns.asyncresolver.Resolver | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock  # the cache's; tests pass one they can move
        self._timeout = settings.timeout_seconds
        self._max_ttl = float(settings.max_ttl_seconds)
        self._cache: TtlCache[tuple[str, str], Answer] = TtlCache(
            settings.cache_entries, CACHE_BYTES)
        self._inflight: dict[tuple[str, str], asyncio.Task[Answer]] = {}
        self._resolver = resolver if resolver is not None else make_resolver(settings)
        self.sent = 0  # questions put to a server: what a cache hit saves

    async def lookup(self, name: str, rdtype: str) -> Answer:
        """The answer to one question; never raises."""
        key = (name.lower().rstrip("."), rdtype)
        if rdtype not in TYPES:
            return Answer(NODATA)
        cached = self._cache.get(key, self._clock())
        if cached is not None:
            return cached
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._ask(key))
            self._inflight[key] = task
            task.add_done_callback(lambda done: self._forget(key, done))
        # A caller cancelled (its message's deadline) leaves the lookup to the others.
        return await asyncio.shield(task)

    async def close(self) -> None:
        tasks = list(self._inflight.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._cache.clear()

    def _forget(self, key: tuple[str, str], task: asyncio.Task[Answer]) -> None:
        if self._inflight.get(key) is task:
            del self._inflight[key]

    async def _ask(self, key: tuple[str, str]) -> Answer:
        answer, ttl = await self._query(*key)
        self._cache.put(key, answer, min(ttl, self._max_ttl), self._clock(), answer.size)
        return answer

    async def _query(self, name: str, rdtype: str) -> tuple[Answer, float]:
        try:
            qname = dns.name.from_text(name)
        except (dns.exception.DNSException, UnicodeError, ValueError):
            return Answer(NXDOMAIN), 0.0  # not a name at all: nothing to ask, nothing to keep
        if self._resolver is None:
            return Answer(ERROR), FAILURE_TTL
        self.sent += 1
        try:
            # dnspython's lifetime is the bound; this one only guards against its bugs.
            async with asyncio.timeout(self._timeout + 1.0):
                result = await self._resolver.resolve(
                    qname, rdtype, raise_on_no_answer=False, search=False,
                    lifetime=self._timeout)
        except dns.resolver.NXDOMAIN as exc:
            return Answer(NXDOMAIN), _negative_ttl(exc)
        except Exception as exc:  # timeouts, SERVFAIL, CNAME loops, hostile replies
            log.debug("DNS %s %s: %s", rdtype, name, type(exc).__name__)
            return Answer(ERROR), FAILURE_TTL
        ttl = max(0.0, result.expiration - time.time())
        if result.rrset is None:
            return Answer(NODATA), min(ttl, NEGATIVE_TTL_CAP)
        return _records(result.rrset, rdtype), ttl


def _records(rrset: dns.rrset.RRset, rdtype: str) -> Answer:
    if len(rrset) > MAX_RECORDS:
        return Answer(OVERSIZE)
    records: list[Record] = []
    size = 0
    for rdata in rrset:
        record: Record
        if rdtype == "TXT":
            record = tuple(rdata.strings)
            size += sum(len(part) for part in record)
        elif rdtype == "MX":
            record = (int(rdata.preference),
                      rdata.exchange.to_text(omit_final_dot=True))
            size += len(record[1])
        elif rdtype == "PTR":
            record = rdata.target.to_text(omit_final_dot=True)
            size += len(record)
        else:
            record = str(rdata.address)
        records.append(record)
    if size > MAX_ANSWER_BYTES:
        return Answer(OVERSIZE)
    return Answer(OK, tuple(records))


def _negative_ttl(exc: dns.resolver.NXDOMAIN) -> float:
    ttl = NEGATIVE_TTL_CAP
    try:
        for response in exc.responses().values():  # type: ignore[no-untyped-call]
            ttl = min(ttl, float(response.resolve_chaining().minimum_ttl))
    except Exception:  # a reply odd enough not to chain: keep the cap
        pass
    return ttl
