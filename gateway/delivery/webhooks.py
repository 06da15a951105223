"""Webhooks: signed HTTP deliveries of what happened to requests.

Subscriptions come from `[[webhook]]` tables, read with the rest of the
configuration (`gateway.config.webhooks`).

The outbox worker calls `deliver` once per attempt and decides from the result
whether to retry (`permanent=False`) or dead-letter. `deliver` never raises for
network trouble: every failure is a `DeliveryResult` with its reason.

Target safety (SSRF): the host is resolved once, here, and every address it
resolves to must be public unless the subscription sets `allow_private`. The
request then goes to the address that was checked (an IP-literal URL with the
original `Host` header and TLS `server_hostname`), so a second DNS answer
(rebinding) can never swap it. Redirects are not followed: a 3xx is a failure.

Signature: `X-Intake-Signature: v1=<hex>`, HMAC-SHA256 over
`"<timestamp>." + body`, where body is the exact bytes sent.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import json
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
from yarl import URL

from gateway.config.webhooks import Subscription, url_problem

SIGNATURE_VERSION = "v1"
USER_AGENT = "intake-gateway"
DEFAULT_TOLERANCE_SECONDS = 300
# Read no more of a receiver's answer than this: it only explains failures.
MAX_RESPONSE_BYTES = 4096
MAX_ERROR_DETAIL = 200
# RFC 9110 15.5.9 (408) and RFC 6585 4 (429): the receiver asks us to come back.
RETRYABLE_CLIENT_STATUSES = frozenset({408, 429})

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class DeliveryResult:
    ok: bool
    permanent: bool
    status: int | None = None
    error: str | None = None
    retry_after: float | None = None


# -- signing ----------------------------------------------------------------------

def canonical_json(payload: Mapping[str, Any]) -> bytes:
    """The exact bytes sent and signed: receivers verify what they received."""
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """Hex HMAC-SHA256 over `"<timestamp>." + body`; the timestamp stops replays."""
    message = f"{timestamp}.".encode() + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def verify(secret: str, timestamp: int | str, body: bytes, signature_header: str, now: int,
           tolerance: int = DEFAULT_TOLERANCE_SECONDS) -> bool:
    """Whether a delivery is authentic and fresh (for receivers and tests).

    The header may carry several comma-separated `v1=` values (secret rotation).
    """
    if isinstance(timestamp, str):
        if not (timestamp.isascii() and timestamp.isdigit()):
            return False
        timestamp = int(timestamp)
    if abs(now - timestamp) > tolerance:
        return False
    expected = sign(secret, timestamp, body).encode()
    matched = False
    for part in signature_header.split(","):
        version, _, value = part.strip().partition("=")
        # Compare every candidate so timing does not reveal which one matched.
        if version == SIGNATURE_VERSION:
            matched |= hmac.compare_digest(value.encode(), expected)
    return matched


def signed_headers(sub: Subscription, event: str, delivery_id: str, body: bytes,
                   now: int) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Intake-Event": event,
        "X-Intake-Delivery": delivery_id,  # the same on every retry: receivers deduplicate
        "X-Intake-Timestamp": str(now),
        "X-Intake-Signature": f"{SIGNATURE_VERSION}={sign(sub.secret, now, body)}",
    }


# -- target safety ----------------------------------------------------------------

def refusal(address: str) -> str | None:
    """Why an address may not be a webhook target without `allow_private`, or None."""
    ip: IPAddress = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:a.b.c.d reaches a.b.c.d
    checked: list[IPAddress] = [ip]
    if isinstance(ip, ipaddress.IPv6Address) and ip.sixtofour is not None:
        checked.append(ip.sixtofour)  # 2002::/16 tunnels to the embedded IPv4 address
    for candidate in checked:
        site_local = isinstance(candidate, ipaddress.IPv6Address) and candidate.is_site_local
        for flag, label in ((candidate.is_loopback, "loopback"),
                            (candidate.is_unspecified, "unspecified"),
                            (candidate.is_link_local, "link-local"),
                            (candidate.is_multicast, "multicast"),
                            (candidate.is_private or site_local, "private"),
                            (candidate.is_reserved, "reserved"),
                            (not candidate.is_global, "not globally routable")):
            if flag:
                return f"{address} is {label}"
    return None


async def resolve(host: str, port: int) -> list[str]:
    """Every address the host resolves to, in the resolver's order, once each."""
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


# -- delivery ---------------------------------------------------------------------

def make_session() -> aiohttp.ClientSession:
    """A session fit for `deliver`: no cookies carried between receivers, no proxy
    from the environment."""
    return aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar(), trust_env=False)


async def deliver(session: aiohttp.ClientSession, sub: Subscription, event: str,
                  delivery_id: str, payload: dict[str, Any], now: int) -> DeliveryResult:
    """One delivery attempt; the result says whether another attempt may succeed."""
    if (why := url_problem(sub.url)) is not None:
        return DeliveryResult(ok=False, permanent=True, error=f"invalid URL: {why}")
    url = URL(sub.url)
    host, port = url.raw_host, url.port
    assert host is not None and port is not None  # url_problem checked both
    body = canonical_json(payload)
    headers = signed_headers(sub, event, delivery_id, body, now)
    headers["Host"] = url.host_port_subcomponent or host
    try:
        async with asyncio.timeout(sub.timeout_seconds):
            addresses = await resolve(host, port)
            if not sub.allow_private:
                for address in addresses:
                    if (why := refusal(address)) is not None:
                        return DeliveryResult(ok=False, permanent=True,
                                              error=f"refused target {host}: {why}")
            return await _post(session, url, addresses, headers, body, sub.timeout_seconds,
                               now)
    except TimeoutError:
        return DeliveryResult(ok=False, permanent=False,
                              error=f"timed out after {sub.timeout_seconds:g}s")
    except aiohttp.InvalidURL as exc:
        return DeliveryResult(ok=False, permanent=True, error=f"invalid URL: {exc}")
    except aiohttp.ClientError as exc:
        return DeliveryResult(ok=False, permanent=False, error=f"connection failed: {exc}")
    except OSError as exc:  # resolution failures (socket.gaierror) and the like
        return DeliveryResult(ok=False, permanent=False, error=f"cannot reach {host}: {exc}")


async def _post(session: aiohttp.ClientSession, url: URL, addresses: list[str],
                headers: dict[str, str], body: bytes, timeout_seconds: float,
                now: int) -> DeliveryResult:
    # TLS still checks the certificate against the name, not the pinned address.
    server_hostname = url.raw_host if url.scheme == "https" else None
    timeout = aiohttp.ClientTimeout(total=timeout_seconds)
    failure: aiohttp.ClientConnectorError | None = None
    for address in addresses:
        try:
            async with session.post(url.with_host(address), data=body, headers=headers,
                                    allow_redirects=False, server_hostname=server_hostname,
                                    timeout=timeout) as response:
                detail = await _read_bounded(response)
                return _result(response, detail, now)
        except aiohttp.ClientConnectorError as exc:
            failure = exc  # not connected, nothing sent: the next address is safe to try
    if failure is None:
        raise OSError(f"{url.raw_host} resolved to no address")
    raise failure


async def _read_bounded(response: aiohttp.ClientResponse) -> bytes:
    data = bytearray()
    while len(data) < MAX_RESPONSE_BYTES:
        chunk = await response.content.read(MAX_RESPONSE_BYTES - len(data))
        if not chunk:
            break
        data += chunk
    return bytes(data)


def _result(response: aiohttp.ClientResponse, detail: bytes, now: int) -> DeliveryResult:
    status = response.status
    retry_after = parse_retry_after(response.headers.get("Retry-After"), now)
    if 200 <= status < 300:
        return DeliveryResult(ok=True, permanent=False, status=status, retry_after=retry_after)
    text = detail[:MAX_ERROR_DETAIL].decode("utf-8", "replace").strip()
    if 300 <= status < 400:
        location = response.headers.get("Location", "")
        error = f"HTTP {status}: redirect to {location!r} not followed"
        return DeliveryResult(ok=False, permanent=True, status=status, error=error,
                              retry_after=retry_after)
    # Other 4xx: the receiver will not accept this delivery as it is.
    permanent = 400 <= status < 500 and status not in RETRYABLE_CLIENT_STATUSES
    error = f"HTTP {status} {response.reason or ''}".strip() + (f": {text}" if text else "")
    return DeliveryResult(ok=False, permanent=permanent, status=status, error=error,
                          retry_after=retry_after)


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After header (RFC 9110 10.2.3), or None."""
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)  # HTTP dates are GMT
    return max(0.0, when.timestamp() - now)
