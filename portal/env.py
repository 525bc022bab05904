"""Typed readers of environment variables, shared by the settings and the container probe.

Only the standard library and one Django exception: `portal.container_health` imports this
without setting Django up, so the health probe and the settings read a variable the same way.
"""

from __future__ import annotations

import os

from django.core.exceptions import ImproperlyConfigured


def envstr(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def envbool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, not {raw!r}")


def envint(name: str, default: int, *, minimum: int = 0) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, not {raw!r}") from None
    if value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, not {value}")
    return value


def envfloat(name: str, default: float, *, minimum: float = 0.0) -> float:
    """Durations in seconds; fractions are allowed so tests and demos can run fast."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number of seconds, not {raw!r}") from None
    if value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, not {value}")
    return value


def envlist(name: str, default: str = "") -> list[str]:
    """Comma-separated values, each stripped; empty entries (`a,,b`, ` ,b`) are skipped."""
    return [item.strip() for item in envstr(name, default).split(",") if item.strip()]


def debug() -> bool:
    return envbool("DEBUG", False)


def allowed_hosts() -> list[str]:
    """ALLOWED_HOSTS, with 127.0.0.1 and localhost as the default when DEBUG is on."""
    return envlist("ALLOWED_HOSTS", "127.0.0.1,localhost" if debug() else "")
