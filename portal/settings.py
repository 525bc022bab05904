"""Settings for AI Stack Portal.

Every value comes from the environment through typed helpers (the plain ones in `portal.env`,
which the container's health probe shares, the rest below), with defaults
that run the portal locally with no setup: SQLite, django-q2's ORM broker, a database cache and
the embedded Dokploy simulator. The README lists every variable.
"""

from __future__ import annotations

import ipaddress
import os
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from portal.env import allowed_hosts, debug, envbool, envfloat, envint, envlist, envstr
from stacks.dokploy.docker_rules import (
    DOCKER_MIN_MEMORY_BYTES,
    NANO_CPUS_PER_CPU,
    SWARM_MIN_NANO_CPUS,
)
from stacks.redaction import register_secret

BASE_DIR = Path(__file__).resolve().parent.parent


def envnetworks(name: str) -> list[str]:
    """Comma-separated IP networks in CIDR notation (a bare address is a /32 or /128)."""
    networks = []
    for item in envlist(name):
        try:
            networks.append(str(ipaddress.ip_network(item, strict=False)))
        except ValueError:
            raise ImproperlyConfigured(
                f"{name}: {item!r} is not an IP network. Example: {name}=10.0.0.0/8,192.168.1.5"
            ) from None
    return networks


def envsecret(name: str, file_name: str) -> str:
    """A secret from the environment, or from the file another variable names (read at start)."""
    value, path = envstr(name).strip(), envstr(file_name).strip()
    if value and path:
        raise ImproperlyConfigured(f"set {name} or {file_name}, not both")
    if path:
        try:
            value = Path(path).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ImproperlyConfigured(f"cannot read {file_name} {path}: {exc}") from None
        if not value:
            raise ImproperlyConfigured(f"{file_name} {path} is empty")
    register_secret(value)
    return value


def envrate(name: str, default: str) -> str:
    """A request rate as django-ratelimit reads it: 30/m, 5/10m (per s, m, h or d)."""
    raw = envstr(name, default).strip()
    if not re.fullmatch(r"[1-9]\d*/(?:[1-9]\d*)?[smhd]", raw):
        raise ImproperlyConfigured(f"{name} must be a rate such as 30/m or 5/10m, not {raw!r}")
    return raw


def envpath(name: str, default: str) -> str:
    """An absolute path inside a container, e.g. where a volume is mounted."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return parse_container_path(raw)
    except ValueError as problem:
        raise _invalid(name, raw, problem, "/workspace") from None


def envmemory(name: str) -> int | None:
    """A memory size in bytes, written like Docker's `--memory` (512M, 2G, 1.5G); None if unset."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    try:
        return parse_memory(raw)
    except ValueError as problem:
        raise _invalid(name, raw, problem, "2G") from None


def envcpus(name: str) -> int | None:
    """A number of CPUs (1.5) as nano-CPUs, like Docker's `--cpus`; None if unset."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    try:
        return parse_cpus(raw)
    except ValueError as problem:
        raise _invalid(name, raw, problem, "1.5") from None


def _invalid(name: str, raw: str, problem: ValueError, example: str) -> ImproperlyConfigured:
    return ImproperlyConfigured(
        f"{name}={raw!r} is not valid: {problem}. Example: {name}={example}"
    )


def parse_container_path(text: str) -> str:
    """An absolute path with no `.` or `..` part, `:` or whitespace, written one way: no
    doubled or trailing slash (`/workspace/` is `/workspace`). The root itself is refused."""
    if not text.startswith("/"):
        raise ValueError("it must be an absolute path")
    if any(char.isspace() or not char.isprintable() for char in text):
        raise ValueError("it must not contain whitespace")
    if ":" in text:
        raise ValueError("it must not contain ':'")
    parts = [part for part in text.split("/") if part]
    if any(part in (".", "..") for part in parts):
        raise ValueError("it must not contain '.' or '..' parts")
    if not parts:
        raise ValueError("it must be below /")
    return "/" + "/".join(parts)


# Above 2**53 JavaScript's parseInt, which Dokploy applies to limits, loses precision.
_LARGEST_LIMIT = 2**53 - 1
# Docker's units for --memory: binary, whether written k, KB or KiB (1G = 1024M).
_MEMORY = re.compile(r"(\d+(?:\.\d+)?) ?(?:([kmgtp])(?:i?b)?|b)?", re.IGNORECASE)
_MEMORY_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4, "p": 1024**5}


def parse_memory(text: str) -> int:
    """Bytes from a size the way Docker reads `--memory`: a number with an optional binary
    unit (k, m, g, t, p, optionally followed by b or ib), so 2G, 2g, 2GB and 2GiB are all
    2147483648; a bare number is bytes; fractions round down to a whole byte."""
    match = _MEMORY.fullmatch(text.strip())
    if match is None:
        raise ValueError("it must be a number with a unit such as 512M, 2G or 1.5G")
    number, unit = match.groups()
    size = int(Decimal(number) * _MEMORY_UNITS[(unit or "").lower()])
    if size < DOCKER_MIN_MEMORY_BYTES:
        raise ValueError(f"Docker refuses memory limits below 6M ({DOCKER_MIN_MEMORY_BYTES} bytes)")
    if size > _LARGEST_LIMIT:
        raise ValueError("it is too large")
    return size


_CPUS = re.compile(r"\d+(?:\.\d+)?|\.\d+")


def parse_cpus(text: str) -> int:
    """Nano-CPUs from a number of CPUs the way Docker reads `--cpus`: 1.5 is 1500000000. At
    least 0.001 (Swarm's minimum), and no finer than a nano-CPU."""
    if _CPUS.fullmatch(text.strip()) is None:
        raise ValueError("it must be a number of CPUs such as 1.5")
    nanos = Decimal(text.strip()) * NANO_CPUS_PER_CPU
    if nanos != nanos.to_integral_value():
        raise ValueError("it is finer than a nano-CPU (at most 9 decimals)")
    if nanos < SWARM_MIN_NANO_CPUS:
        raise ValueError("Swarm refuses fewer than 0.001 CPUs")
    if nanos > _LARGEST_LIMIT:
        raise ValueError("it is too large")
    return int(nanos)


# --- Core -------------------------------------------------------------------------------------

DEBUG = debug()
SECRET_KEY = envstr("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off")
    # A fixed key for DEBUG only, never used with DEBUG off (checked above): S105 is expected.
    SECRET_KEY = "insecure-local-development-key-never-use-in-production"  # noqa: S105

ALLOWED_HOSTS = allowed_hosts()
CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS")
SITE_URL = envstr("SITE_URL", "http://127.0.0.1:8000")

INSTALLED_APPS = [
    "portal.apps.PortalAdminConfig",  # django.contrib.admin with a rate-limited sign-in
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_htmx",
    "template_partials",
    "django_q",
    "csp",
    "stacks",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "portal.csp.PortalCSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "portal.ratelimits.ChangeLimitMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "portal.urls"
WSGI_APPLICATION = "portal.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database and cache -----------------------------------------------------------------------

DATA_DIR = Path(envstr("DATA_DIR", str(BASE_DIR / "var")))
DATABASE_URL = envstr("DATABASE_URL", f"sqlite:///{DATA_DIR / 'portal.sqlite3'}")
DATABASES: dict[str, dict[str, Any]] = {
    "default": dict(dj_database_url.parse(DATABASE_URL, conn_max_age=envint("DB_CONN_MAX_AGE", 0)))
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)
    # Several worker processes write at once: WAL lets readers proceed, IMMEDIATE transactions
    # take the write lock up front instead of failing on upgrade, and the timeout waits for it.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = envstr("REDIS_URL")
CACHES: dict[str, dict[str, Any]]
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": envstr("CACHE_KEY_PREFIX", "portal"),
        }
    }
else:
    # A database cache is shared by every process, which rate limits and django-q2 need.
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.db.DatabaseCache",
            "LOCATION": "portal_cache",
            "KEY_PREFIX": envstr("CACHE_KEY_PREFIX", "portal"),
        }
    }

# --- Task queue (django-q2) -------------------------------------------------------------------

DEPLOY_TIMEOUT = envfloat("DEPLOY_TIMEOUT", 900.0, minimum=1.0)
# A failed attempt's rollback has its own bound, counted from the moment the rollback starts.
ROLLBACK_TIMEOUT = envfloat("ROLLBACK_TIMEOUT", 180.0, minimum=1.0)
MAX_CONCURRENT_DEPLOYMENTS = envint("MAX_CONCURRENT_DEPLOYMENTS", 10, minimum=1)
_task_timeout = int(DEPLOY_TIMEOUT + ROLLBACK_TIMEOUT) + 60

Q_CLUSTER: dict[str, Any] = {
    "name": "portal",
    # One worker runs one attempt; attempts mostly wait on Dokploy, so one process per
    # concurrent deployment keeps ten users' deployments from waiting on each other.
    "workers": envint("Q_WORKERS", MAX_CONCURRENT_DEPLOYMENTS, minimum=1),
    # An attempt bounds itself by DEPLOY_TIMEOUT and its rollback by ROLLBACK_TIMEOUT; the
    # margin covers the last step's bookkeeping.
    "timeout": _task_timeout,
    # Longer than timeout, so a task still running is never handed to a second worker.
    "retry": _task_timeout + 60,
    # Redelivery is for crashed workers only; the pipeline keeps its own counter and lease.
    "max_attempts": 3,
    # A task that raised is acknowledged, not redelivered: the attempt row records the failure.
    "ack_failures": True,
    "save_limit": 1000,
    "catch_up": False,
    "poll": 0.5,
    "label": "Task queue",
}
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"

# --- Dokploy ----------------------------------------------------------------------------------

DOKPLOY_SIMULATOR_PORT = envint("DOKPLOY_SIMULATOR_PORT", 3900, minimum=1)
DOKPLOY_URL = envstr("DOKPLOY_URL").rstrip("/")
# With no DOKPLOY_URL the portal talks to the embedded simulator, which the run script starts.
DOKPLOY_SIMULATED = not DOKPLOY_URL
if DOKPLOY_SIMULATED:
    DOKPLOY_URL = f"http://127.0.0.1:{DOKPLOY_SIMULATOR_PORT}"
DOKPLOY_API_KEY = envstr("DOKPLOY_API_KEY", "simulator-key" if DOKPLOY_SIMULATED else "")
DOKPLOY_API_KEY_FILE = envstr("DOKPLOY_API_KEY_FILE")
DOKPLOY_TIMEOUT = envfloat("DOKPLOY_TIMEOUT", 10.0, minimum=0.1)
DOKPLOY_RETRY_BASE = envfloat("DOKPLOY_RETRY_BASE", 1.0)
DOKPLOY_RETRY_AFTER_MAX = envfloat("DOKPLOY_RETRY_AFTER_MAX", 60.0)
DOKPLOY_PHASE_RATE = envint("DOKPLOY_PHASE_RATE", 10)

BREAKER_FAILURES = envint("BREAKER_FAILURES", 5, minimum=1)
BREAKER_RESET = envfloat("BREAKER_RESET", 60.0)
BREAKER_SUCCESSES = envint("BREAKER_SUCCESSES", 3, minimum=1)

# --- Stacks -----------------------------------------------------------------------------------

STACK_IMAGE = envstr("STACK_IMAGE", "ghcr.io/ai-stack/opencode-ttyd:latest")
STACK_DOMAIN = envstr("STACK_DOMAIN", "ai.localhost")
STACK_PORT = envint("STACK_PORT", 8080, minimum=1)
STACK_URL = envstr(
    "STACK_URL", f"{DOKPLOY_URL}/_stack/{{host}}" if DOKPLOY_SIMULATED else "https://{host}"
)
STACK_CHECK_DNS = envbool("STACK_CHECK_DNS", not DOKPLOY_SIMULATED)
HEALTH_INTERVAL = envfloat("HEALTH_INTERVAL", 10.0)
HEALTH_TIMEOUT = envfloat("HEALTH_TIMEOUT", 120.0)
DEPLOY_RATE_LIMIT = envint("DEPLOY_RATE_LIMIT", 10, minimum=1)
DEPLOY_RATE_WINDOW = envfloat("DEPLOY_RATE_WINDOW", 3600.0, minimum=1.0)
LEASE_SECONDS = envfloat("LEASE_SECONDS", 30.0, minimum=1.0)
# Where the image keeps a person's files: their Docker volume is mounted there.
STACK_VOLUME_PATH = envpath("STACK_VOLUME_PATH", "/workspace")
# Per-stack limits as Dokploy takes them (bytes, nano-CPUs); None is no limit.
STACK_MEMORY_LIMIT_BYTES = envmemory("STACK_MEMORY_LIMIT")
STACK_CPU_LIMIT_NANOS = envcpus("STACK_CPU_LIMIT")

# The reconciler compares Dokploy with the database every RECONCILE_INTERVAL minutes (0: never);
# with RECONCILE_FIX the scheduled runs also remove orphans and queue repairs.
RECONCILE_INTERVAL = envint("RECONCILE_INTERVAL", 10)
RECONCILE_FIX = envbool("RECONCILE_FIX", False)

# --- Metrics and alerts -----------------------------------------------------------------------

# /metrics (portal/metrics.py) answers a scrape that passes every check configured here: the
# bearer token; the client's network (X-Forwarded-For is believed from trusted proxies only).
# With neither a token nor networks it answers 404, or with DEBUG on serves loopback only.
METRICS_TOKEN = envsecret("METRICS_TOKEN", "METRICS_TOKEN_FILE")
METRICS_ALLOWED_NETWORKS = envnetworks("METRICS_ALLOWED_NETWORKS")

# Staff are told (stacks/alerts.py) by mail to ADMINS and, if set, a JSON POST to the webhook.
ADMINS = [(address, address) for address in envlist("ADMINS")]
SERVER_EMAIL = envstr("SERVER_EMAIL", "portal@localhost")
EMAIL_HOST = envstr("EMAIL_HOST", "localhost")
EMAIL_PORT = envint("EMAIL_PORT", 25, minimum=1)
EMAIL_HOST_USER = envstr("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = envsecret("EMAIL_HOST_PASSWORD", "EMAIL_HOST_PASSWORD_FILE")
EMAIL_USE_TLS = envbool("EMAIL_USE_TLS", False)
EMAIL_TIMEOUT = envfloat("EMAIL_TIMEOUT", 10.0, minimum=0.1)
EMAIL_SUBJECT_PREFIX = "[AI Stack Portal] "
ALERT_WEBHOOK_URL = envstr("ALERT_WEBHOOK_URL")
register_secret(ALERT_WEBHOOK_URL)  # chat webhook URLs carry their own credentials
ALERT_WEBHOOK_TIMEOUT = envfloat("ALERT_WEBHOOK_TIMEOUT", 3.0, minimum=0.1)

# --- Auth, static files, i18n -----------------------------------------------------------------

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "sign-in"
LOGIN_REDIRECT_URL = "home"

# Single sign-on with OpenID Connect is on when an issuer is configured.
OIDC_ISSUER = envstr("OIDC_ISSUER").rstrip("/")
OIDC_ENABLED = bool(OIDC_ISSUER)

# mozilla-django-oidc does the protocol: authorization code flow with PKCE (S256), state and
# nonce, client_secret_basic at the token endpoint. portal.oidc maps its claims to our users and
# fills in the endpoints from the issuer's discovery document (read when the web process starts,
# see portal/wsgi.py). The views and the logout URL are always routed; without an issuer the
# sign-in views answer 404 and signing out only ends the portal session.
OIDC_CLIENT_ID = envstr("OIDC_CLIENT_ID")
OIDC_CLIENT_SECRET_FILE = envstr("OIDC_CLIENT_SECRET_FILE")
OIDC_CLIENT_SECRET = envstr("OIDC_CLIENT_SECRET")
OIDC_USERNAME_CLAIM = envstr("OIDC_USERNAME_CLAIM", "preferred_username")
OIDC_GROUPS_CLAIM = envstr("OIDC_GROUPS_CLAIM", "groups")
OIDC_STAFF_GROUPS = envlist("OIDC_STAFF_GROUPS")
OIDC_SCOPES = envstr("OIDC_SCOPES", "openid email profile")
OIDC_SIGN_ALGO = envstr("OIDC_SIGN_ALGO", "RS256")
OIDC_TIMEOUT = envfloat("OIDC_TIMEOUT", 10.0, minimum=0.1)
SUPPORT_CONTACT = envstr("SUPPORT_CONTACT", "the portal's administrators")
if OIDC_ENABLED:
    if not OIDC_CLIENT_ID:
        raise ImproperlyConfigured("OIDC_CLIENT_ID must be set when OIDC_ISSUER is")
    if OIDC_CLIENT_SECRET and OIDC_CLIENT_SECRET_FILE:
        raise ImproperlyConfigured("set OIDC_CLIENT_SECRET or OIDC_CLIENT_SECRET_FILE, not both")
    if OIDC_CLIENT_SECRET_FILE:
        try:
            OIDC_CLIENT_SECRET = Path(OIDC_CLIENT_SECRET_FILE).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ImproperlyConfigured(
                f"cannot read OIDC_CLIENT_SECRET_FILE {OIDC_CLIENT_SECRET_FILE}: {exc}"
            ) from None
    if not OIDC_CLIENT_SECRET:
        raise ImproperlyConfigured(
            "OIDC_CLIENT_SECRET or OIDC_CLIENT_SECRET_FILE must be set when OIDC_ISSUER is"
        )
    register_secret(OIDC_CLIENT_SECRET)

# With SSO on, only superusers sign in with a password (the admin's break-glass login).
AUTHENTICATION_BACKENDS = (
    ["portal.oidc.PasswordBackend", "portal.oidc.OIDCBackend"]
    if OIDC_ENABLED
    else ["django.contrib.auth.backends.ModelBackend"]
)
OIDC_RP_CLIENT_ID = OIDC_CLIENT_ID
OIDC_RP_CLIENT_SECRET = OIDC_CLIENT_SECRET
OIDC_RP_SCOPES = OIDC_SCOPES
OIDC_RP_SIGN_ALGO = OIDC_SIGN_ALGO
OIDC_TOKEN_USE_BASIC_AUTH = True
OIDC_USE_PKCE = True
OIDC_PKCE_CODE_CHALLENGE_METHOD = "S256"
OIDC_USE_NONCE = True
OIDC_STORE_ID_TOKEN = True  # the id_token_hint of the provider's logout
OIDC_AUTHENTICATE_CLASS = "portal.oidc.AuthenticationRequestView"
OIDC_CALLBACK_CLASS = "portal.oidc.AuthenticationCallbackView"
OIDC_OP_LOGOUT_URL_METHOD = "portal.oidc.provider_logout_url"
LOGIN_REDIRECT_URL_FAILURE = "/"  # used as a path, not resolved as a URL name
LOGOUT_REDIRECT_URL = "home"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(envstr("STATIC_ROOT", str(BASE_DIR / "staticfiles")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

# --- Security (production) --------------------------------------------------------------------

if not DEBUG:
    SECURE_SSL_REDIRECT = envbool("SECURE_SSL_REDIRECT", True)
    # Probes and Prometheus inside the deployment speak plain HTTP to the container.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^metrics$"]
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_HSTS_SECONDS = envint("SECURE_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
SESSION_COOKIE_HTTPONLY = True
# No script reads the CSRF cookie: pages carry the token (forms, and hx-headers for htmx).
CSRF_COOKIE_HTTPONLY = True
# SameSite stays Lax: the provider sends the browser back to /oidc/callback/ from its own site,
# and that request must carry the session holding the sign-in's state and nonce.
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"

# Our own scripts and styles only (htmx is served from static by django-htmx), no inline code,
# no framing; the Django admin runs under the same policy (README: Security). With SSO on,
# portal.csp adds the provider's origin to form-action, where signing out redirects.
CONTENT_SECURITY_POLICY: dict[str, Any] = {
    "DIRECTIVES": {
        "default-src": ["'none'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'"],
        "connect-src": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
        "base-uri": ["'none'"],
    },
}

# Request limits against abuse (portal/ratelimits.py), over and above DEPLOY_RATE_LIMIT.
RATELIMIT_ENABLE = envbool("RATELIMIT_ENABLE", True)
RATELIMIT_SIGN_IN = envrate("RATELIMIT_SIGN_IN", "30/m")
RATELIMIT_PASSWORD = envrate("RATELIMIT_PASSWORD", "5/m")
RATELIMIT_ACTIONS = envrate("RATELIMIT_ACTIONS", "30/h")
RATELIMIT_POST = envrate("RATELIMIT_POST", "60/m")
# Reverse proxies in front of the portal (networks) whose X-Forwarded-For names the client:
# for the rate limits and for METRICS_ALLOWED_NETWORKS alike (portal/clients.py).
TRUSTED_PROXIES = envnetworks("TRUSTED_PROXIES")
RATELIMIT_IP_META_KEY = "portal.ratelimits.client_ip"

# --- Logging ----------------------------------------------------------------------------------

LOG_LEVEL = envstr("LOG_LEVEL", "INFO").upper()
LOG_FORMAT = envstr("LOG_FORMAT", "json")
LOGGING: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "json": {"()": "stacks.logging.JsonFormatter"},
        "text": {"()": "stacks.logging.TextFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json" if LOG_FORMAT == "json" else "text",
        },
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django": {"handlers": ["console"], "level": LOG_LEVEL, "propagate": False},
        "httpx": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
    },
}
