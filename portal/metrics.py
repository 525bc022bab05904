"""`/metrics`: the portal's Prometheus metrics (the numbers come from `stacks.metrics`).

Not to be confused with `stacks/metrics.py`: this module decides who may scrape.

Every check that is configured must pass:
- METRICS_TOKEN (or METRICS_TOKEN_FILE): the request carries `Authorization: Bearer <token>`,
  compared in constant time.
- METRICS_ALLOWED_NETWORKS: the client's address is in one of the networks. The client is the
  connecting peer (REMOTE_ADDR), unless the peer is one of METRICS_TRUSTED_PROXIES: then
  X-Forwarded-For is read from the right, past the trusted proxies, and the first address that
  is not one of them is the client. A request with X-Forwarded-For, Forwarded or X-Real-IP from
  a peer that is not a trusted proxy came through a proxy nobody declared, so the peer's
  address names that proxy and not the client: it never passes the network check.

With neither a token nor networks configured, /metrics answers 404 as if it did not exist (with
DEBUG on, for local use, it answers requests from loopback addresses). A missing or wrong token
answers 401 with `WWW-Authenticate: Bearer`; a network that is not allowed answers 403.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Iterable

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client.exposition import choose_encoder

from stacks import metrics

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
LOOPBACK = ("127.0.0.0/8", "::1/128")
PROXY_HEADERS = ("HTTP_X_FORWARDED_FOR", "HTTP_FORWARDED", "HTTP_X_REAL_IP")


def _networks(cidrs: Iterable[str]) -> list[IPNetwork]:
    return [ipaddress.ip_network(cidr, strict=False) for cidr in cidrs]


def _address(text: str) -> IPAddress | None:
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _within(address: IPAddress, networks: list[IPNetwork]) -> bool:
    return any(address in network for network in networks)


def client_address(request: HttpRequest) -> IPAddress | None:
    """The scraping client's address as far as it can be trusted; None when it cannot be."""
    peer = _address(request.META.get("REMOTE_ADDR", ""))
    if peer is None:
        return None
    proxies = _networks(settings.METRICS_TRUSTED_PROXIES)
    if not _within(peer, proxies):
        if any(request.META.get(header) for header in PROXY_HEADERS):
            return None  # relayed by a proxy nobody declared
        return peer
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    hops = [hop for hop in forwarded.split(",") if hop.strip()]
    for hop in reversed(hops):
        address = _address(hop)
        if address is None:
            return None  # a hop we cannot read: believe none of them
        if not _within(address, proxies):
            return address
    # Every hop is a trusted proxy: the request started at the leftmost one.
    return _address(hops[0]) if hops else peer


def bearer_token(request: HttpRequest) -> str:
    scheme, _, token = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def refusal(request: HttpRequest) -> HttpResponse | None:
    """Why this request may not scrape (the answer to send), or None when it may."""
    token = settings.METRICS_TOKEN
    cidrs = list(settings.METRICS_ALLOWED_NETWORKS)
    if not token and not cidrs:
        if not settings.DEBUG:
            raise Http404("metrics are not configured")
        cidrs = list(LOOPBACK)
    if token and not hmac.compare_digest(bearer_token(request).encode(), token.encode()):
        answer = HttpResponse("A bearer token is required.\n", status=401)
        answer["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return answer
    if cidrs:
        address = client_address(request)
        if address is None or not _within(address, _networks(cidrs)):
            return HttpResponse("Not from an allowed network.\n", status=403)
    return None


@never_cache
@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    refused = refusal(request)
    if refused is not None:
        return refused
    # The text format, or OpenMetrics when the scraper asks for it (Prometheus does).
    encode, content_type = choose_encoder(request.headers.get("Accept", ""))
    return HttpResponse(encode(metrics.registry()), content_type=content_type)
