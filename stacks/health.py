"""Checks that a deployed stack really works: container status, /health, DNS + HTTPS, ttyd.

Each check returns a CheckResult instead of raising, so the pipeline records every outcome as
a step and the staff pages can run the same checks on demand.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx
from django.conf import settings

from stacks.redaction import redact_text

USER_AGENT = "ai-stack-portal-health/1"


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str
    duration_ms: int = 0
    tries: int = 1


def stack_base_url(host: str) -> str:
    """Where a stack is reached: STACK_URL with {host} filled in, without a trailing slash."""
    return str(settings.STACK_URL).format(host=host).rstrip("/")


def _elapsed_ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def check_container(application_status: str | None) -> CheckResult:
    """Dokploy's applicationStatus: "done" means the service was created or updated."""
    ok = application_status == "done"
    return CheckResult("container", ok, f"Dokploy reports the application as {application_status}")


def probe_health(base_url: str, *, timeout: float = 5.0) -> CheckResult:
    started = time.monotonic()
    url = f"{base_url}/health"
    try:
        response = httpx.get(url, timeout=timeout, headers={"User-Agent": USER_AGENT})
    except httpx.HTTPError as exc:
        return CheckResult(
            "health", False, f"GET /health failed: {type(exc).__name__}", _elapsed_ms(started)
        )
    ok = response.status_code == 200
    return CheckResult(
        "health", ok, f"GET /health answered {response.status_code}", _elapsed_ms(started)
    )


def wait_until_healthy(
    base_url: str,
    *,
    interval: float,
    timeout: float,
    wait: Callable[[float], None],
) -> CheckResult:
    """GET /health every `interval` seconds until it answers 200 or `timeout` passes.

    `wait` sleeps and may raise to stop early (cancel, lost lease, deadline).
    """
    started = time.monotonic()
    tries = 0
    while True:
        tries += 1
        remaining = timeout - (time.monotonic() - started)
        result = probe_health(base_url, timeout=max(0.1, min(10.0, remaining)))
        if result.ok:
            return CheckResult("health", True, result.detail, _elapsed_ms(started), tries)
        remaining = timeout - (time.monotonic() - started)
        if remaining <= 0:
            detail = f"not healthy after {timeout:g} s and {tries} tries; last: {result.detail}"
            return CheckResult("health", False, detail, _elapsed_ms(started), tries)
        wait(min(interval, remaining))


def check_dns_https(host: str, *, timeout: float = 10.0) -> CheckResult:
    """The host resolves and serves HTTPS with a certificate the system trusts."""
    started = time.monotonic()
    try:
        addresses = {
            str(info[4][0]) for info in socket.getaddrinfo(host, 443, type=socket.SOCK_STREAM)
        }
    except OSError as exc:
        return CheckResult(
            "dns_https", False, f"{host} does not resolve: {exc}", _elapsed_ms(started)
        )
    try:
        response = httpx.get(
            f"https://{host}/", timeout=timeout, headers={"User-Agent": USER_AGENT}
        )
    except httpx.HTTPError as exc:
        detail = f"{host} resolves ({', '.join(sorted(addresses))}) but HTTPS failed: {exc}"
        return CheckResult("dns_https", False, redact_text(detail), _elapsed_ms(started))
    detail = f"{host} resolves and answers HTTPS ({response.status_code})"
    return CheckResult("dns_https", True, detail, _elapsed_ms(started))


def check_ttyd(base_url: str, *, timeout: float = 10.0) -> CheckResult:
    """The web terminal answers at / with a ttyd page."""
    started = time.monotonic()
    try:
        response = httpx.get(f"{base_url}/", timeout=timeout, headers={"User-Agent": USER_AGENT})
    except httpx.HTTPError as exc:
        return CheckResult(
            "ttyd", False, f"GET / failed: {type(exc).__name__}", _elapsed_ms(started)
        )
    body = response.text.lower()
    ok = response.status_code == 200 and ("ttyd" in body or "terminal" in body)
    what = "a ttyd terminal" if ok else "no ttyd terminal"
    return CheckResult(
        "ttyd", ok, f"GET / answered {response.status_code} with {what}", _elapsed_ms(started)
    )
