"""django-q2 entry points: load by id, call one function, own nothing else."""

from __future__ import annotations

from django.conf import settings

from stacks import pipeline, queueing
from stacks import reconcile as reconciler
from stacks.models import ReconcileRun


def run_attempt(attempt_id: int) -> str:
    attempt = pipeline.run_attempt(attempt_id)
    return attempt.status if attempt is not None else "not claimed"


def dispatch_due() -> int:
    return len(queueing.dispatch())


def reap_attempts() -> dict[str, int]:
    return queueing.reap()


def reconcile() -> str:
    run = reconciler.run(fix=settings.RECONCILE_FIX, trigger=ReconcileRun.Trigger.SCHEDULE)
    return f"run #{run.pk} {run.status}"
