"""Proxies trusted to say whose a connection is.

Behind a load balancer every connection comes from the balancer. The ones
listed here (`[smtp] proxy_protocol_from`, `[http] trusted_proxies`) may name
the client instead: SMTP and LMTP by a PROXY header (gateway/smtp.py), HTTP by
X-Forwarded-For (gateway/http/forwarded.py). Anyone else's word is ignored, or
refused. A trusted proxy's own connections count under a listener's total cap
only: its address stands for many clients (gateway/connections.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from ipaddress import IPv4Address, IPv6Address, IPv6Network, ip_address, ip_network

Address = IPv4Address | IPv6Address


def parse_address(text: str) -> Address | None:
    """`text` as an IP address (IPv6 with or without brackets), else None.

    An IPv4-mapped IPv6 address is the IPv4 host it maps; a zone (`%eth0`) or a
    port is not an address a client can be told by, so it is refused.
    """
    text = text.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if not text or len(text) > 45 or "%" in text:  # 45: the longest IPv6 text form
        return None
    try:
        address = ip_address(text)
    except ValueError:
        return None
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class TrustedProxies:
    """A listener's trusted proxies, by network (none: nobody is trusted)."""

    __slots__ = ("_networks",)

    def __init__(self, networks: Iterable[str] = ()) -> None:
        self._networks = tuple(ip_network(n, strict=False) for n in networks)

    def __bool__(self) -> bool:
        return bool(self._networks)

    def trusts(self, host: str | Address | None) -> bool:
        """Whether `host` (a peer's address) is one of the proxies."""
        if not self._networks or host is None:
            return False
        address = host if not isinstance(host, str) else parse_address(host)
        if address is None:
            return False
        if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        # An IPv4 address is in no IPv6 network and the other way round.
        return any(address in network for network in self._networks
                   if isinstance(network, IPv6Network) == isinstance(address, IPv6Address))
