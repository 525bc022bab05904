"""Every log record, from every logger and at every level, as the portal's formatters write it."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from stacks.logging import JsonFormatter, TextFormatter


class _Collector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextmanager
def every_record() -> Iterator[list[logging.LogRecord]]:
    """Collect every record while inside: each logger at DEBUG (httpx, httpcore and django too,
    whatever the settings say), those that do not propagate included."""
    collector = _Collector()
    loggers = [logging.getLogger()] + [
        logger
        for logger in logging.root.manager.loggerDict.values()
        if isinstance(logger, logging.Logger)
    ]
    saved = [(logger, logger.level, logger.disabled) for logger in loggers]
    hosts = [logger for logger in loggers if logger is logging.root or not logger.propagate]
    for logger in loggers:
        logger.setLevel(logging.DEBUG)
        logger.disabled = False
    for logger in hosts:
        logger.addHandler(collector)
    try:
        yield collector.records
    finally:
        for logger in hosts:
            logger.removeHandler(collector)
        for logger, level, disabled in saved:
            logger.setLevel(level)
            logger.disabled = disabled


def written(records: list[logging.LogRecord]) -> list[str]:
    """What the portal writes for these records: each in JSON and in the text format."""
    json, text = JsonFormatter(), TextFormatter()
    return [out for record in records for out in (json.format(record), text.format(record))]
