"""Who sent a request: the client's address, behind the reverse proxies the portal trusts.

The client is the connecting peer (REMOTE_ADDR), unless the peer is one of TRUSTED_PROXIES
(networks): then X-Forwarded-For is read from the right, past the trusted proxies, and the first
address that is not one of them is the client; entries further left were written by the client
and are never believed. A request that carries X-Forwarded-For, Forwarded or X-Real-IP from a
peer that is not a trusted proxy came through a proxy nobody declared: its client is unknown.

One rule for every use: the rate limits count this address, and /metrics checks it against
METRICS_ALLOWED_NETWORKS.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from django.conf import settings
from django.http import HttpRequest

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
PROXY_HEADERS = ("HTTP_X_FORWARDED_FOR", "HTTP_FORWARDED", "HTTP_X_REAL_IP")


def networks(cidrs: Iterable[str]) -> list[IPNetwork]:
    return [ipaddress.ip_network(cidr, strict=False) for cidr in cidrs]


def within(address: IPAddress, nets: list[IPNetwork]) -> bool:
    return any(address in network for network in nets)


def parse_address(text: str) -> IPAddress | None:
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # IPv4 on a dual-stack socket
    return address


def client_address(request: HttpRequest) -> IPAddress | None:
    """The client's address as far as it can be trusted; None when it cannot be."""
    peer = parse_address(request.META.get("REMOTE_ADDR", ""))
    if peer is None:
        return None
    proxies = networks(settings.TRUSTED_PROXIES)
    if not within(peer, proxies):
        if any(request.META.get(header) for header in PROXY_HEADERS):
            return None  # relayed by a proxy nobody declared
        return peer
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    hops = [hop for hop in forwarded.split(",") if hop.strip()]
    for hop in reversed(hops):
        address = parse_address(hop)
        if address is None:
            return None  # a hop we cannot read: believe none of them
        if not within(address, proxies):
            return address
    # Every hop is a trusted proxy: the request started at the leftmost one.
    return parse_address(hops[0]) if hops else peer
