"""Keeping secrets out of logs, errors, stored records and pages.

Two rules: values under sensitive keys are masked wherever they appear in a structure, and
every secret the process knows (the Dokploy API key, registry passwords) is masked wherever it
appears in text. Secrets are registered at the moment they are read from the environment.
"""

from __future__ import annotations

import re
import threading
from typing import Any

MASK = "[redacted]"

SENSITIVE_KEY = re.compile(
    r"(pass(word)?|secret|token|api[-_]?key|authorization|cookie|credential|private[-_]?key"
    r"|^env$|^buildargs$|^buildsecrets$|^registry(password|token)$)",
    re.IGNORECASE,
)

_lock = threading.Lock()
_secrets: set[str] = set()

# Anything shorter would mask ordinary words; real keys are much longer.
_MIN_SECRET_LENGTH = 6


def register_secret(value: str | None) -> None:
    """Remember a secret so that redact_text() masks it wherever it shows up."""
    if value and len(value) >= _MIN_SECRET_LENGTH:
        with _lock:
            _secrets.add(value)


def redact_text(text: str) -> str:
    with _lock:
        known = sorted(_secrets, key=len, reverse=True)
    for secret in known:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def redact(value: Any) -> Any:
    """Return a copy of a JSON-like value with sensitive keys and known secrets masked."""
    if isinstance(value, dict):
        return {
            key: (MASK if _is_sensitive(key, item) else redact(item)) for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(item) for item in value]
    if isinstance(value, str):
        return redact_text(value)
    return value


def _is_sensitive(key: object, item: object) -> bool:
    # An empty or missing value hides nothing, and showing it helps debugging.
    return isinstance(key, str) and bool(SENSITIVE_KEY.search(key)) and item not in (None, "")
