"""Log lines: one JSON object per record (production), or plain text for reading by eye.

JSON: `timestamp` (ISO 8601, UTC), `level`, `logger`, `message`, and whatever the caller passed
in `extra` (phase, action, deploymentId, username, duration_ms, status, error). Text:
`asctime level logger message`. Either way a record is one line whatever its values hold (a
username claim, a staff reason, a path or a header may carry CR, LF or JSON): JSON escapes every
line break and non-ASCII character, and the text format writes line breaks and other unprintable
characters as escapes, with a traceback on indented lines below. Known secrets are masked.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from pythonjsonlogger.json import JsonFormatter as _BaseJsonFormatter

from stacks.redaction import redact, redact_text

_LEVELS = {"WARNING": "warn", "CRITICAL": "critical"}


class JsonFormatter(_BaseJsonFormatter):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("fmt", "%(levelname)s %(name)s %(message)s")
        kwargs.setdefault("rename_fields", {"levelname": "level", "name": "logger"})
        super().__init__(*args, **kwargs)

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        log_data["timestamp"] = datetime.fromtimestamp(record.created, tz=UTC).isoformat(
            timespec="milliseconds"
        )
        super().add_fields(log_data, record, message_dict)
        level = str(log_data.get("level", record.levelname))
        log_data["level"] = _LEVELS.get(level, level.lower())

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        cleaned: dict[str, Any] = redact(log_data)
        return cleaned

    def format(self, record: logging.LogRecord) -> str:
        return redact_text(super().format(record))


class TextFormatter(logging.Formatter):
    """`asctime level logger message` on one line; a traceback follows on indented lines, so a
    line that starts unindented always starts a record."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("fmt", "%(asctime)s %(levelname)s %(name)s %(message)s")
        super().__init__(*args, **kwargs)

    def format(self, record: logging.LogRecord) -> str:
        record.message = one_line(redact_text(record.getMessage()))
        if self.usesTime():
            record.asctime = self.formatTime(record, self.datefmt)
        lines = [self.formatMessage(record)]
        below = ""
        if record.exc_info:
            below += self.formatException(record.exc_info)
        if record.stack_info:
            below += "\n" + self.formatStack(record.stack_info)
        lines += [f"    {one_line(line)}" for line in redact_text(below).splitlines() if line]
        return "\n".join(lines)


def one_line(text: str) -> str:
    """`text` with line breaks and every other unprintable character written as an escape
    (`\\n`, `\\x1b`, `\\u2028`), so it cannot begin a new line or hide in a terminal."""
    return "".join(char if char.isprintable() else _escaped(char) for char in text)


def _escaped(char: str) -> str:
    return repr(char)[1:-1]
