"""What one /metrics scrape costs on a database holding 10,000 attempts.

Fills a fresh database with ATTEMPTS attempts of 500 people over 90 days (every outcome, their
steps and Dokploy calls, breaker events, reconcile runs), then scrapes /metrics through the real
view and prints the number of queries and the time of a scrape:
  1. before any fold: every row is read at each scrape (a portal whose task workers never ran
     the scheduled fold);
  2. after the fold: the stored totals, and only the rows that ended since;
and the time of the fold itself, and of the staff dashboard over 30 days for comparison.

Run: .venv/bin/python benchmarks/metrics_scrape.py [--attempts 10000] [--scrapes 20]
     [--database-url postgres://portal@127.0.0.1:5432/portal_bench]   (default: a temp SQLite)
The PostgreSQL database must exist and be empty or disposable: it is migrated and filled.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
TOKEN = "bench-scrape-token-0123456789"  # noqa: S105 (a throwaway token for this run)
PHASES = ["project", "environment", "application", "volume", "domain", "deploy", "health"]
ENDPOINTS = [
    "project.all",
    "project.create",
    "application.create",
    "application.saveDockerProvider",
    "mounts.create",
    "domain.create",
    "application.deploy",
    "deployment.all",
    "application.one",
]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--attempts", type=int, default=10_000)
    parser.add_argument("--scrapes", type=int, default=20)
    parser.add_argument("--database-url", default="")
    args = parser.parse_args()

    workdir = tempfile.mkdtemp(prefix="portal-metrics-bench-")
    os.environ.update(
        DEBUG="true",
        LOG_LEVEL="WARNING",
        LOG_FORMAT="text",
        DJANGO_SETTINGS_MODULE="portal.settings",
        DATABASE_URL=args.database_url or f"sqlite:///{workdir}/bench.sqlite3",
        METRICS_TOKEN=TOKEN,
        ALLOWED_HOSTS="testserver",
    )
    os.environ.pop("REDIS_URL", None)
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)
    started = time.perf_counter()
    counts = fill(args.attempts)
    print(
        f"database: {connection.vendor}, filled in {time.perf_counter() - started:.1f} s: {counts}"
    )

    from stacks import metrics

    measure("scrape before any fold", scrape, args.scrapes)
    started = time.perf_counter()
    through = metrics.fold()
    print(f"fold through {through:%Y-%m-%d %H:%M}: {(time.perf_counter() - started) * 1000:.0f} ms")
    measure("scrape after the fold", scrape, args.scrapes)
    measure("staff dashboard, 30 days", dashboard(), max(3, args.scrapes // 5))


def fill(total: int) -> dict[str, int]:
    from django.contrib.auth.models import User
    from django.utils import timezone

    from stacks.models import (
        BreakerEvent,
        DeploymentAttempt,
        DeploymentStep,
        DokployCall,
        ReconcileFinding,
        ReconcileRun,
        Stack,
    )

    rng = random.Random(7)
    now = timezone.now()
    users = User.objects.bulk_create([User(username=f"user{n:04d}") for n in range(500)])
    stacks = Stack.objects.bulk_create(
        [Stack(owner=u, username=u.username, observed_state="healthy") for u in users]
    )
    attempts = []
    for n in range(total):
        queued = now - timedelta(days=90) * rng.random()
        started = queued + timedelta(seconds=rng.uniform(0.5, 60))
        took = rng.uniform(60, 600)
        outcome = rng.choices(
            ["succeeded", "rolled_back", "failed", "cancelled"], weights=[85, 8, 5, 2]
        )[0]
        failed = outcome != "succeeded"
        attempts.append(
            DeploymentAttempt(
                stack=stacks[n % len(stacks)],
                kind=rng.choices(["create", "redeploy", "stop", "start"], weights=[5, 3, 1, 1])[0],
                status=outcome,
                queued_at=queued,
                started_at=started,
                finished_at=started + timedelta(seconds=took),
                failure_phase=rng.choice(PHASES) if failed else "",
                error_code=rng.choice(["DEPLOY_FAILED", "UNHEALTHY", "BAD_REQUEST"])
                if failed
                else "",
                rollback_started_at=started + timedelta(seconds=took - 5) if failed else None,
                created_resources=[{"kind": "project", "name": "p", "id": "x", "undone": True}]
                if failed
                else [],
                rollback_errors=["project p: Dokploy answered 503"] if outcome == "failed" else [],
            )
        )
    attempts = DeploymentAttempt.objects.bulk_create(attempts, batch_size=1000)
    steps, calls = [], []
    for attempt in attempts:
        assert attempt.started_at is not None
        moment = attempt.started_at
        for seq, phase in enumerate(PHASES, start=1):
            ms = rng.randint(50, 40_000)
            steps.append(
                DeploymentStep(
                    attempt=attempt, seq=seq, phase=phase, action="create", status="succeeded",
                    started_at=moment, finished_at=moment + timedelta(milliseconds=ms),
                    duration_ms=ms, retries=rng.choices([0, 1, 2], weights=[90, 7, 3])[0],
                )
            )  # fmt: skip
            moment += timedelta(milliseconds=ms)
        for endpoint in ENDPOINTS:
            calls.append(
                DokployCall(
                    attempt=attempt, phase="deploy", endpoint=endpoint, method="POST",
                    created_at=attempt.started_at, status_code=rng.choice([200] * 30 + [503]),
                    duration_ms=rng.randint(5, 3000), try_number=1,
                )
            )  # fmt: skip
    DeploymentStep.objects.bulk_create(steps, batch_size=5000)
    DokployCall.objects.bulk_create(calls, batch_size=5000)
    events = []
    for day in range(0, 90, 9):
        at = now - timedelta(days=day, hours=3)
        later = at + timedelta(minutes=1)
        for moment, old, new in (
            (at, "closed", "open"),
            (later, "open", "half_open"),
            (later, "half_open", "closed"),
        ):
            events.append(
                BreakerEvent(
                    breaker="dokploy", created_at=moment, from_state=old, to_state=new, reason="x"
                )
            )
    BreakerEvent.objects.bulk_create(events)
    starts = [now - timedelta(minutes=10 * n) for n in range(1, 500)]
    runs = ReconcileRun.objects.bulk_create(
        [
            ReconcileRun(
                trigger="schedule",
                status="ok",
                started_at=start,
                finished_at=start + timedelta(seconds=2),
            )
            for start in starts
        ]
    )
    ReconcileFinding.objects.bulk_create(
        [ReconcileFinding(run=runs[0], kind="orphan_project", detail="x") for _ in range(3)]
    )
    return {
        "attempts": len(attempts),
        "steps": len(steps),
        "calls": len(calls),
        "breaker events": len(events),
        "reconcile runs": len(runs),
    }


def scrape() -> Any:
    from django.test import Client

    answer = Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert answer.status_code == 200, answer.status_code
    return answer


def dashboard() -> Any:
    """The dashboard's request, for a staff member signed in once."""
    from django.contrib.auth.models import User
    from django.test import Client

    client = Client()
    client.force_login(
        User.objects.create_superuser("bench-staff", "staff@example.com", "bench-password")
    )

    def show() -> Any:
        answer = client.get("/admin/stacks/deploymentattempt/dashboard/?period=30d")
        assert answer.status_code == 200, answer.status_code
        return answer

    return show


def measure(name: str, action: Any, times: int) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    action()  # warm: connection, templates, the database's caches
    if os.environ.get("SHOW_QUERIES"):
        with CaptureQueriesContext(connection) as shown:
            action()
        for query in shown.captured_queries:
            print("   ", query["sql"][:150])
    seconds, queries = [], set()
    for _ in range(times):
        with CaptureQueriesContext(connection) as captured:
            started = time.perf_counter()
            action()
            seconds.append(time.perf_counter() - started)
        queries.add(len(captured.captured_queries))
    ms = sorted(s * 1000 for s in seconds)
    print(
        f"{name}: {'/'.join(str(q) for q in sorted(queries))} queries; "
        f"median {statistics.median(ms):.1f} ms, slowest {ms[-1]:.1f} ms over {times} runs"
    )


if __name__ == "__main__":
    main()
