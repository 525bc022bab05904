"""JSON log lines with the fields the deployment spec names.

Every record becomes one JSON object: `timestamp` (ISO 8601, UTC), `level`, `logger`,
`message`, and whatever the caller passed in `extra` (phase, action, deploymentId, username,
duration_ms, status, error). Known secrets are masked in the finished line.
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
