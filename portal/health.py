"""The portal's own health (`/healthz`): is the database reachable, is a task cluster alive.

Not to be confused with `stacks.health`, which checks a person's deployed stack.
"""

from __future__ import annotations

import time
from typing import Any

from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from django_q.status import Stat


def database_status() -> dict[str, Any]:
    started = time.perf_counter()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # any driver error means "not reachable"
        return {"ok": False, "error": type(exc).__name__}
    return {"ok": True, "latency_ms": round((time.perf_counter() - started) * 1000, 1)}


def queue_status() -> dict[str, Any]:
    """django-q2 clusters publish a stat every few seconds; its age is the heartbeat age."""
    try:
        stats = Stat.get_all()
    except Exception as exc:  # broker unreachable
        return {"ok": False, "clusters": 0, "error": type(exc).__name__}
    if not stats:
        return {"ok": False, "clusters": 0, "heartbeat_age_s": None}
    newest = max(stat.timestamp for stat in stats)
    age = (timezone.now() - newest).total_seconds()
    workers = sum(len(stat.workers) for stat in stats)
    return {
        "ok": True,
        "clusters": len(stats),
        "workers": workers,
        "heartbeat_age_s": round(age, 1),
    }


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """Web health for load balancers and the container HEALTHCHECK.

    503 only when the database is unreachable; a missing task-queue heartbeat is reported
    (status "degraded") but does not make the web process unhealthy.
    """
    database = database_status()
    queue = queue_status()
    if not database["ok"]:
        status, code = "error", 503
    elif not queue["ok"]:
        status, code = "degraded", 200
    else:
        status, code = "ok", 200
    return JsonResponse({"status": status, "database": database, "queue": queue}, status=code)
