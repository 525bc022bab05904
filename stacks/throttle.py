"""Per-phase pacing of outgoing Dokploy calls, shared by every worker process.

Each phase (project, application, domain, deploy, ...) may send at most DOKPLOY_PHASE_RATE
requests per second across all workers, so a burst of deployments cannot flood Dokploy from one
phase; excess calls wait for the next second. A slot is a cache key taken with `add`, which is
atomic in both the database cache and Redis.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from django.conf import settings
from django.core.cache import cache

_SLOT_TTL = 5
# Module attributes so tests can drive the clock without touching time.time itself.
_clock = time.time
_sleep = time.sleep


def acquire(
    phase: str,
    *,
    rate: int | None = None,
    sleep: Callable[[float], None] | None = None,
    clock: Callable[[], float] | None = None,
) -> float:
    """Wait until this phase may send one more request this second. Returns seconds waited."""
    sleep = sleep or _sleep
    clock = clock or _clock
    limit = int(rate if rate is not None else settings.DOKPLOY_PHASE_RATE)
    if limit <= 0:
        return 0.0
    waited = 0.0
    while True:
        now = clock()
        window = int(now)
        for slot in range(limit):
            if cache.add(f"dokploy-rate:{phase or 'none'}:{window}:{slot}", 1, _SLOT_TTL):
                return waited
        pause = max(0.001, window + 1 - now)
        sleep(pause)
        waited += pause
