"""`/metrics`: the portal's Prometheus metrics (the numbers come from `stacks.metrics`).

Not to be confused with `stacks/metrics.py`: this module decides who may scrape.

Every check that is configured must pass:
- METRICS_TOKEN (or METRICS_TOKEN_FILE): the request carries `Authorization: Bearer <token>`,
  compared in constant time.
- METRICS_ALLOWED_NETWORKS: the client's address (`portal.clients.client_address`, behind the
  TRUSTED_PROXIES) is in one of the networks. A request relayed by a proxy nobody declared has
  no trustworthy address: it never passes the network check.

With neither a token nor networks configured, /metrics answers 404 as if it did not exist (with
DEBUG on, for local use, it answers requests from loopback addresses). A missing or wrong token
answers 401 with `WWW-Authenticate: Bearer`; a network that is not allowed answers 403.
"""

from __future__ import annotations

import hmac

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client.exposition import choose_encoder

from portal.clients import client_address, networks, within
from stacks import metrics

LOOPBACK = ("127.0.0.0/8", "::1/128")


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
        if address is None or not within(address, networks(cidrs)):
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
