"""The client's address behind trusted proxies (`[http] trusted_proxies`).

A proxy that forwards a request appends the address it got it from to
X-Forwarded-For (HAProxy: `option forwardfor`). Read from the right, each
entry was written by the hop after it, so an entry is believed only while the
hop that wrote it is a trusted proxy: the client is the right-most address not
trusted. Whatever a client put in the header itself is to the left of that and
never believed. From a peer that is not a trusted proxy the header is ignored.

Hostile values: an entry that is not an IP address (a name, a port, garbage)
ends the walk at the trusted hop that passed it on, and so does a chain longer
than `MAX_HOPS`; several X-Forwarded-For fields are read as one list.

`forwarded_middleware` (the outermost) hands the handlers a request whose
`remote` is the client's, so the rate limits, the forms' counters and what is
stored all see it; the access log reads it from `CLIENT`.
"""

from __future__ import annotations

from collections.abc import Iterable

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler, Middleware

from gateway.proxies import TrustedProxies, parse_address

# Entries read from the right at most: more hops than any real chain of proxies.
MAX_HOPS = 16
# The client's address as resolved, on the request aiohttp logs (the access log).
CLIENT = web.RequestKey("client", str)


def forwarded_client(peer: str | None, forwarded_for: Iterable[str],
                     proxies: TrustedProxies) -> str | None:
    """The client's address: `peer` (the connection's), or, while the address
    in hand is a trusted proxy's, the entry of X-Forwarded-For (`forwarded_for`,
    its fields in order) it forwarded for."""
    client = peer
    if not proxies.trusts(peer):
        return client
    entries: list[str] = []
    for field in reversed(list(forwarded_for)):
        entries += reversed(field.rsplit(",", MAX_HOPS)[-MAX_HOPS:])
        if len(entries) >= MAX_HOPS:
            break
    for entry in entries[:MAX_HOPS]:
        address = parse_address(entry)
        if address is None:
            break  # not an address: the trusted hop that passed it on is all we know
        client = str(address)
        if not proxies.trusts(address):
            break
    return client


def forwarded_middleware(proxies: TrustedProxies) -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        client = forwarded_client(request.remote, request.headers.getall(
            hdrs.X_FORWARDED_FOR, ()), proxies)
        if client is None or client == request.remote:
            return await handler(request)
        request[CLIENT] = client
        return await handler(request.clone(remote=client))

    return middleware
