"""The one error type the Dokploy client raises.

A DokployError says what failed (`endpoint`), how (`status`, `code`, `message`), whether trying
again can help (`retryable`) and whether a mutation may have taken effect even though it failed
(`ambiguous`). Everything it holds is redacted when it is built: neither the API key nor any
other registered secret reaches its message, its arguments or its stored response. An error is
immutable once built; `replace()` makes a changed copy.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
from django.utils import timezone

from stacks.dokploy.trpc import TRPC_CODES
from stacks.redaction import redact, redact_text

# Our own codes, next to the tRPC codes Dokploy sends (BAD_REQUEST, NOT_FOUND, ...).
NETWORK_ERROR = "NETWORK_ERROR"
TIMEOUT = "TIMEOUT"
BREAKER_OPEN = "BREAKER_OPEN"
CONFIG = "CONFIG"
BAD_RESPONSE = "BAD_RESPONSE"
DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"


_MAX_TEXT = 500


class DokployError(Exception):
    """A Dokploy call that did not succeed.

    `status` is the HTTP status, None when no answer came. `code` is Dokploy's tRPC code
    (BAD_REQUEST, NOT_FOUND, ...) or one of ours: NETWORK_ERROR, TIMEOUT, BREAKER_OPEN, CONFIG,
    BAD_RESPONSE, DEADLINE_EXCEEDED (the caller's deadline left no time for the next try).
    `retry_after` is the wait a 429 asked for; `retry_at` is when an open circuit breaker lets
    requests through again.
    """

    def __init__(
        self,
        *,
        endpoint: str,
        code: str,
        message: str,
        status: int | None = None,
        retryable: bool = False,
        ambiguous: bool = False,
        retry_after: float | None = None,
        api_response: Any = None,
        retry_at: datetime | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.status = status
        self.code = code
        self.message = redact_text(message)
        self.retryable = retryable
        self.ambiguous = ambiguous
        self.retry_after = retry_after
        self.api_response = redact(api_response)
        self.retry_at = retry_at
        super().__init__(self.describe())
        self._frozen = True

    def __setattr__(self, name: str, value: Any) -> None:
        if getattr(self, "_frozen", False):
            raise AttributeError(f"DokployError is immutable; use replace({name}=...)")
        super().__setattr__(name, value)

    def replace(self, **changes: Any) -> DokployError:
        """A copy with some fields changed (the same error when nothing changes)."""
        fields = {
            "endpoint": self.endpoint,
            "code": self.code,
            "message": self.message,
            "status": self.status,
            "retryable": self.retryable,
            "ambiguous": self.ambiguous,
            "retry_after": self.retry_after,
            "api_response": self.api_response,
            "retry_at": self.retry_at,
        }
        if all(fields[name] == value for name, value in changes.items()):
            return self
        return DokployError(**{**fields, **changes})

    def describe(self) -> str:
        if self.code == BREAKER_OPEN and self.retry_at is not None:
            return f"Dokploy unavailable, retry after {self.retry_at.astimezone(UTC):%H:%M:%S}"
        status = f"{self.status} " if self.status is not None else ""
        return redact_text(f"{self.endpoint} failed: {status}{self.code} {self.message}".rstrip())

    def __str__(self) -> str:
        return self.describe()

    def __repr__(self) -> str:
        return redact_text(
            f"DokployError(endpoint={self.endpoint!r}, status={self.status!r}, "
            f"code={self.code!r}, message={self.message!r}, retryable={self.retryable!r}, "
            f"ambiguous={self.ambiguous!r})"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        # The constructor takes keywords only, so pickling (task results, multiprocessing)
        # rebuilds the error from its fields instead of from args.
        return (_rebuild, (dict(vars(self)),))

    # Building errors ---------------------------------------------------------------------

    @classmethod
    def from_response(
        cls, endpoint: str, response: httpx.Response, *, mutation: bool
    ) -> DokployError:
        """The error for a non-2xx answer, from Dokploy's tRPC error body when there is one."""
        status = response.status_code
        body = _body_of(response)
        code = TRPC_CODES.get(status, f"HTTP_{status}")
        message = response.reason_phrase or ""
        if isinstance(body, dict):
            code = _string(body.get("code")) or _string(_data(body).get("code")) or code
            message = _string(body.get("message")) or message
            message += _field_errors(body)
            body = {key: value for key, value in body.items() if key != "stack"}
            if isinstance(body.get("data"), dict):
                body["data"] = {k: v for k, v in body["data"].items() if k != "stack"}
        elif isinstance(body, str) and body and not body.lstrip().startswith("<"):
            message = body[:_MAX_TEXT]
        server_side = status >= 500
        return cls(
            endpoint=endpoint,
            status=status,
            code=code,
            message=message,
            retryable=server_side or status == 429,
            # A 5xx may come after the handler did its work; a 4xx is a refusal.
            ambiguous=server_side and mutation,
            retry_after=parse_retry_after(response.headers.get("retry-after"))
            if status == 429
            else None,
            api_response=body,
        )

    @classmethod
    def from_transport(
        cls, endpoint: str, exc: httpx.RequestError, *, mutation: bool, timeout: float
    ) -> DokployError:
        """The error for a request that got no HTTP answer."""
        if isinstance(exc, httpx.UnsupportedProtocol | httpx.LocalProtocolError):
            return cls(endpoint=endpoint, code=CONFIG, message=f"cannot send the request: {exc}")
        # These fail before a byte of the request leaves: the call surely had no effect.
        unsent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
        if isinstance(exc, httpx.TimeoutException):
            code, message = TIMEOUT, f"no answer within {timeout:g}s ({type(exc).__name__})"
        else:
            code, message = NETWORK_ERROR, f"{type(exc).__name__}: {exc}"
        return cls(
            endpoint=endpoint,
            code=code,
            message=message,
            retryable=True,
            ambiguous=mutation and not unsent,
        )

    @classmethod
    def bad_response(
        cls, endpoint: str, detail: str, body: Any = None, *, ambiguous: bool = False
    ) -> DokployError:
        """An answer we cannot read; after a mutation it may still have taken effect."""
        return cls(
            endpoint=endpoint,
            code=BAD_RESPONSE,
            message=detail,
            api_response=body,
            ambiguous=ambiguous,
        )

    @classmethod
    def config(cls, endpoint: str, detail: str) -> DokployError:
        return cls(endpoint=endpoint, code=CONFIG, message=detail)

    @classmethod
    def deadline(
        cls, endpoint: str, left: float, try_number: int, last: DokployError | None = None
    ) -> DokployError:
        message = f"no time left for try {try_number} ({max(left, 0.0):.1f} s to the deadline)"
        if last is not None:
            message += f"; last try: {last.describe()}"
        return cls(
            endpoint=endpoint,
            code=DEADLINE_EXCEEDED,
            message=message,
            ambiguous=last.ambiguous if last is not None else False,
            api_response=last.api_response if last is not None else None,
        )

    @classmethod
    def breaker_open(cls, endpoint: str, retry_at: datetime) -> DokployError:
        return cls(
            endpoint=endpoint,
            code=BREAKER_OPEN,
            message=f"circuit breaker open until {retry_at.isoformat()}",
            retry_at=retry_at,
        )


def _rebuild(fields: dict[str, Any]) -> DokployError:
    error = DokployError.__new__(DokployError)
    error.__dict__.update(fields)  # _frozen included: the copy is immutable too
    Exception.__init__(error, error.describe())
    return error


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta seconds or an HTTP date), or None."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - timezone.now()).total_seconds())


def _body_of(response: httpx.Response) -> Any:
    text = response.text
    try:
        return json.loads(text) if text else None
    except ValueError:
        return text[:_MAX_TEXT]


def _data(body: dict[str, Any]) -> dict[str, Any]:
    data = body.get("data")
    return data if isinstance(data, dict) else {}


def _string(value: object) -> str:
    return value if isinstance(value, str) else ""


def _field_errors(body: dict[str, Any]) -> str:
    """Zod's field errors, so that 'Input validation failed' says which field."""
    zod = _data(body).get("zodError")
    fields = zod.get("fieldErrors") if isinstance(zod, dict) else None
    if not isinstance(fields, dict) or not fields:
        return ""
    parts = []
    for name, problems in fields.items():
        if isinstance(problems, list) and problems:
            parts.append(f"{name}: {'; '.join(str(p) for p in problems)}")
    return f" ({', '.join(parts)})" if parts else ""
