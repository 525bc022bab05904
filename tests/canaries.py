"""Everything the portal keeps or shows, as text, for looking for a secret in it.

The database is read table by table with plain SQL, every table (sessions, the cache table,
django-q2's tasks and queue included), and every value that is an encoding is also decoded:
django-q2's signed pickles (the queue's payloads), base64 pickles (task arguments and results,
the database cache's values), sessions. Redis, when it is the cache and the broker, is read key
by key the same way.
"""

from __future__ import annotations

import base64
import pickle
import zlib
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import redis
from django.conf import settings
from django.contrib.sessions.backends.db import SessionStore
from django.db import connection
from django_q.signing import SignedPackage


def _signed_pickle(text: str) -> Any:
    return SignedPackage.loads(text)


def _base64_pickle(text: str) -> Any:
    raw = base64.b64decode(text, validate=True)
    try:
        return pickle.loads(zlib.decompress(raw))  # noqa: S301 (our own test database)
    except zlib.error:
        return pickle.loads(raw)  # noqa: S301


def _session(text: str) -> Any:
    decoded = SessionStore().decode(text)
    if not decoded:
        raise ValueError("not a session")
    return decoded


def _raw_pickle(data: bytes) -> Any:
    return pickle.loads(data)  # noqa: S301 (our own test Redis)


DECODERS: dict[str, Callable[[str], Any]] = {
    "signed pickle": _signed_pickle,
    "base64 pickle": _base64_pickle,
    "session": _session,
}


@dataclass
class Dump:
    """Text to search, and how many values each decoder opened (to know it looked inside)."""

    parts: list[str] = field(default_factory=list)
    opened: Counter[str] = field(default_factory=Counter)

    def add(self, value: object) -> None:
        if isinstance(value, memoryview):
            value = value.tobytes()
        if isinstance(value, bytes):
            self._open("pickle", _raw_pickle, value)
            value = value.decode("utf-8", errors="replace")
        text = str(value)
        self.parts.append(text)
        if len(text) >= 16:
            for name, decode in DECODERS.items():
                self._open(name, decode, text)

    def _open(self, name: str, decode: Callable[[Any], Any], value: Any) -> None:
        try:
            opened = decode(value)
        except Exception:  # not that encoding
            return
        self.parts.append(repr(opened))
        self.opened[name] += 1

    def extend(self, values: Iterable[object]) -> None:
        for value in values:
            self.add(value)

    @property
    def text(self) -> str:
        return "\n".join(self.parts)


def database() -> Dump:
    dump = Dump()
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")  # noqa: S608
            for row in cursor.fetchall():
                dump.add(table)
                dump.extend(row)
    return dump


def redis_store() -> Dump:
    """Every key of the Redis database the cache (and the broker) use; empty without Redis."""
    dump = Dump()
    if not settings.REDIS_URL:
        return dump
    client = redis.Redis.from_url(settings.REDIS_URL)
    for key in client.scan_iter():
        dump.add(key)
        kind = client.type(key)
        if kind == b"string":
            dump.add(client.get(key))
        elif kind == b"list":
            dump.extend(client.lrange(key, 0, -1))
        elif kind == b"hash":
            for name, value in client.hgetall(key).items():
                dump.extend([name, value])
        elif kind in (b"set", b"zset"):
            members = client.smembers(key) if kind == b"set" else client.zrange(key, 0, -1)
            dump.extend(members)
    return dump
