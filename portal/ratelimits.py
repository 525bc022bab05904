"""Request limits against abuse, counted by django-ratelimit in the shared cache.

They come on top of the deployment limit (DEPLOY_RATE_LIMIT, which queues deployments instead of
refusing them). A request over a limit changes nothing and gets the 429 page, which says when to
try again (also as Retry-After).

    limit               counted per                          applies to
    RATELIMIT_SIGN_IN   person, else client address          /sign-in, /oidc/authenticate/,
                                                             /oidc/callback/, /admin/login/
    RATELIMIT_PASSWORD  client address; and username tried   password POSTs to /admin/login/
    RATELIMIT_ACTIONS   person                               a stack's actions, an attempt's
                                                             cancel and retry (POST)
    RATELIMIT_POST      person, else client address          every POST, PUT, PATCH, DELETE,
                                                             the admin's included (middleware)

A signed-in person is counted by account, so colleagues behind one office address do not share
their limits. Otherwise the client address counts: REMOTE_ADDR, or with TRUSTED_PROXIES reverse
proxies in front of the portal, the address the outermost of them saw (`client_ip`). Counters
live in the default cache, which every process shares: exact with Redis; the database cache
counts with a read and a write, so simultaneous requests may be counted once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import wraps
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django_ratelimit import ALL, UNSAFE
from django_ratelimit.core import get_usage

from portal.clients import client_address

View = Callable[..., HttpResponse]


@dataclass(frozen=True)
class Limit:
    """One limit: its counters are shared by every view that applies it (`group`)."""

    group: str
    setting: str  # the name of the setting holding the rate, such as "30/m", read per request
    key: str = "user_or_ip"  # django-ratelimit's key: "user_or_ip", "ip", "post:username"
    methods: Any = ALL  # the methods counted; others pass uncounted

    def check(self, request: HttpRequest) -> HttpResponse | None:
        """Count this request; the 429 page when it is over the limit, else None."""
        usage = get_usage(
            request,
            group=self.group,
            key=self.key,
            rate=self.rate,
            method=self.methods,
            increment=True,
        )
        if usage is None or not usage["should_limit"]:
            return None
        # The window's last second still belongs to it: the next one is the first allowed.
        return too_many_requests(request, seconds=usage["time_left"] + 1)

    def rate(self, group: str, request: HttpRequest) -> str:
        return str(getattr(settings, self.setting))


SIGN_IN = Limit("sign-in", "RATELIMIT_SIGN_IN")
PASSWORD_BY_ADDRESS = Limit("password", "RATELIMIT_PASSWORD", key="ip", methods=["POST"])
PASSWORD_BY_USERNAME = Limit(
    "password-username", "RATELIMIT_PASSWORD", key="post:username", methods=["POST"]
)
ACTIONS = Limit("stack-actions", "RATELIMIT_ACTIONS", key="user_or_ip", methods=["POST"])
EVERY_CHANGE = Limit("post", "RATELIMIT_POST", methods=UNSAFE)


def limited(*limits: Limit) -> Callable[[View], View]:
    """A view decorator: each limit counts the request in turn; the first one over answers."""

    def decorator(view: View) -> View:
        @wraps(view)
        def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            for limit in limits:
                refusal = limit.check(request)
                if refusal is not None:
                    return refusal
            return view(request, *args, **kwargs)

        return guarded

    return decorator


class ChangeLimitMiddleware:
    """RATELIMIT_POST on every POST (and PUT, PATCH, DELETE), whichever view it is for: the
    admin's, mozilla-django-oidc's, and any view added later, without a decorator to forget."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        refusal = EVERY_CHANGE.check(request)
        if refusal is not None:
            return refusal
        return self.get_response(request)


def too_many_requests(request: HttpRequest, *, seconds: int) -> HttpResponse:
    """The 429 page in the portal's look, saying when the limit lets this person in again."""
    seconds = max(1, int(seconds))
    response = render(request, "429.html", {"wait": timedelta(seconds=seconds)}, status=429)
    response["Retry-After"] = str(seconds)
    return response


def client_ip(request: HttpRequest) -> str:
    """The address a request came from (RATELIMIT_IP_META_KEY): `portal.clients.client_address`,
    or the connecting peer when the client behind it cannot be trusted (the peer is then the
    proxy that relayed it)."""
    address = client_address(request)
    if address is not None:
        return str(address)
    remote = request.META.get("REMOTE_ADDR") or ""
    if not remote:
        raise ImproperlyConfigured(
            "REMOTE_ADDR is empty: serve the portal over TCP, not a Unix socket, so rate limits "
            "can tell clients apart"
        )
    return str(remote)
