"""The attempt queue: per-user limits, bounded concurrency, dispatch to workers, the reaper.

The DeploymentAttempt table is the queue. An attempt is queued with the earliest time the
per-user limit allows (`not_before`); `dispatch()` hands due attempts to django-q2 workers while
fewer than MAX_CONCURRENT_DEPLOYMENTS are out, claiming each with a conditional update so two
dispatchers never send the same attempt. The reaper hands attempts whose worker died (lease
expired) or whose task was lost back to the workers, and ends attempts past their deadline.
"""

from __future__ import annotations

import heapq
import logging
import statistics
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Q, QuerySet
from django.db.models.functions import Coalesce
from django.utils import timezone
from django_q.tasks import async_task

from stacks import schedules
from stacks.models import AttemptKind, AttemptStatus, DeploymentAttempt, Stack
from stacks.pipeline.lease import holder_is_dead, lease_seconds

logger = logging.getLogger("stacks.queue")

# Kinds that count against the per-user deployment limit.
LIMITED_KINDS = (AttemptKind.CREATE, AttemptKind.REDEPLOY)
# A dispatched task that has not started by then is taken as lost (the Redis broker does
# not redeliver) and is dispatched again.
DISPATCH_GRACE = timedelta(seconds=60)
TASK = "stacks.tasks.run_attempt"


def rate_limit_window() -> timedelta:
    return timedelta(seconds=float(settings.DEPLOY_RATE_WINDOW))


@dataclass(frozen=True)
class Quota:
    """A person's use of the rolling per-user deployment limit."""

    used: int
    limit: int
    window: timedelta
    next_start: datetime | None  # when the next deployment may start; None means now

    @property
    def used_up(self) -> bool:
        return self.next_start is not None


def quota(owner_id: int, now: datetime | None = None) -> Quota:
    """How much of the limit the owner's deployments hold, and when the next one may start.

    Each limited attempt that was not cancelled before it started holds a slot from its start
    (or planned start) for one window. One query.
    """
    now = now or timezone.now()
    limit = int(settings.DEPLOY_RATE_LIMIT)
    window = rate_limit_window()
    starts: list[datetime] = list(
        DeploymentAttempt.objects.filter(stack__owner_id=owner_id, kind__in=LIMITED_KINDS)
        .exclude(status=AttemptStatus.CANCELLED, started_at__isnull=True)
        .annotate(slot=Coalesce("started_at", "not_before", "queued_at"))
        .filter(slot__gt=now - window)
        .order_by("-slot")
        .values_list("slot", flat=True)[:limit]
    )
    next_start = starts[-1] + window if len(starts) >= limit else None
    return Quota(used=len(starts), limit=limit, window=window, next_start=next_start)


def earliest_start(stack: Stack, now: datetime | None = None) -> datetime | None:
    """When a new deployment for this stack may start under the rolling per-user limit.

    None means now.
    """
    return quota(stack.owner_id, now).next_start


def waiting() -> QuerySet[DeploymentAttempt]:
    """Queued attempts in the order they will be dispatched."""
    return DeploymentAttempt.objects.filter(status=AttemptStatus.QUEUED).order_by(
        Coalesce("not_before", "queued_at"), "queued_at", "id"
    )


def queue_position(attempt: DeploymentAttempt) -> int | None:
    """1-based position among attempts waiting to be dispatched; None once dispatched."""
    if attempt.status != AttemptStatus.QUEUED or attempt.dispatched_at:
        return None
    ids = list(waiting().filter(dispatched_at__isnull=True).values_list("id", flat=True))
    return ids.index(attempt.pk) + 1 if attempt.pk in ids else None


# Attempts holding a worker, or handed to one: running, or queued and dispatched.
HOLDING_A_WORKER = Q(status=AttemptStatus.RUNNING) | Q(
    status=AttemptStatus.QUEUED, dispatched_at__isnull=False
)
# Estimates come from this many recent successful attempts of each kind.
ESTIMATE_SAMPLE = 20


def typical_durations() -> dict[str, timedelta]:
    """The median start-to-finish time of recent successful attempts, by kind. One query.

    A kind that never succeeded yet has no entry: nothing is guessed.
    """
    recent = (
        DeploymentAttempt.objects.filter(
            status=AttemptStatus.SUCCEEDED, started_at__isnull=False, finished_at__isnull=False
        )
        .order_by("-finished_at")
        .values_list("kind", "started_at", "finished_at")[: ESTIMATE_SAMPLE * len(AttemptKind)]
    )
    samples: dict[str, list[float]] = {}
    for kind, started, finished in recent:
        taken = samples.setdefault(kind, [])
        if started is not None and finished is not None and len(taken) < ESTIMATE_SAMPLE:
            taken.append((finished - started).total_seconds())
    return {
        kind: timedelta(seconds=statistics.median(seconds)) for kind, seconds in samples.items()
    }


def expected_start(
    attempt: DeploymentAttempt,
    typical: dict[str, timedelta],
    now: datetime | None = None,
) -> datetime | None:
    """When a queued attempt should start; None when there is no basis for an estimate.

    Plays the queue forward: each running attempt frees its slot when it reaches the typical
    duration of its kind, each attempt ahead takes the first free slot (not before its own
    `not_before`) and holds it for the typical duration of its kind. Two queries.
    """
    if attempt.status != AttemptStatus.QUEUED:
        return None
    now = now or timezone.now()
    if attempt.dispatched_at is not None:
        return now  # a worker is about to take it
    free_at: list[datetime] = []
    for kind, started in DeploymentAttempt.objects.filter(HOLDING_A_WORKER).values_list(
        "kind", Coalesce("started_at", "dispatched_at")
    ):
        if kind not in typical:
            return None
        free_at.append(max(now, started + typical[kind]))
    slots = int(settings.MAX_CONCURRENT_DEPLOYMENTS)
    # With more out than slots (the limit was lowered), the first to finish free no slot.
    free_at = sorted(free_at)[max(0, len(free_at) - slots) :]
    free_at.extend([now] * (slots - len(free_at)))
    heapq.heapify(free_at)
    for pk, kind, not_before in (
        waiting().filter(dispatched_at__isnull=True).values_list("id", "kind", "not_before")
    ):
        start = max(heapq.heappop(free_at), not_before or now)
        if pk == attempt.pk:
            return start
        if kind not in typical:
            return None
        heapq.heappush(free_at, start + typical[kind])
    return None


def slots_in_use() -> int:
    return DeploymentAttempt.objects.filter(HOLDING_A_WORKER).count()


def dispatch(now: datetime | None = None) -> list[int]:
    """Send due attempts to the workers, up to the concurrency limit. Returns their ids."""
    now = now or timezone.now()
    free = int(settings.MAX_CONCURRENT_DEPLOYMENTS) - slots_in_use()
    sent: list[int] = []
    if free > 0:
        due = (
            waiting()
            .filter(dispatched_at__isnull=True)
            .filter(Q(not_before__isnull=True) | Q(not_before__lte=now))
        )
        for attempt_id in due.values_list("id", flat=True)[: free * 2]:
            if len(sent) >= free:
                break
            claimed = DeploymentAttempt.objects.filter(
                pk=attempt_id, status=AttemptStatus.QUEUED, dispatched_at__isnull=True
            ).update(dispatched_at=now)
            if claimed:
                sent.append(attempt_id)
    for attempt_id in sent:
        logger.info("dispatched", extra={"deploymentId": attempt_id, "status": "queued"})
        async_task(TASK, attempt_id, task_name=f"attempt-{attempt_id}", group="deployments")
    schedule_wakeup()
    return sent


def resend(attempt: DeploymentAttempt) -> None:
    """Hand an attempt whose worker or task was lost to a worker again."""
    DeploymentAttempt.objects.filter(pk=attempt.pk).update(dispatched_at=timezone.now())
    async_task(TASK, attempt.pk, task_name=f"attempt-{attempt.pk}", group="deployments")


def schedule_wakeup() -> None:
    """Make sure dispatch runs again when the next rate-limited attempt becomes due."""
    upcoming = (
        waiting()
        .filter(dispatched_at__isnull=True, not_before__gt=timezone.now())
        .values_list("not_before", flat=True)
        .first()
    )
    if upcoming is not None:
        schedules.once_at(upcoming, name="dispatch-wakeup", func="stacks.tasks.dispatch_due")


def worker_lost(attempt: DeploymentAttempt, now: datetime | None = None) -> bool:
    """An active attempt whose worker is gone: running with an expired lease or a holder that
    died, or queued, handed to a task, and not started within DISPATCH_GRACE."""
    now = now or timezone.now()
    if attempt.status == AttemptStatus.RUNNING:
        return attempt.lease_expired(now) or holder_is_dead(attempt.lease_owner)
    return bool(attempt.dispatched_at and attempt.dispatched_at < now - DISPATCH_GRACE)


def reap(now: datetime | None = None) -> dict[str, int]:
    """Hand attempts whose worker died back to a worker; resend queued tasks that were lost.

    A running attempt is resumed at once when its lease holder is provably dead (same host,
    process gone), else when its lease has expired. One that was already handed to a worker
    after its holder last renewed the lease is left alone for one lease period, so that
    worker can claim it.
    """
    now = now or timezone.now()
    lease = timedelta(seconds=lease_seconds())
    resumed = lost = 0
    for attempt in DeploymentAttempt.objects.filter(status=AttemptStatus.RUNNING):
        if not worker_lost(attempt, now):
            continue
        last_sign_of_life = attempt.lease_expires_at - lease if attempt.lease_expires_at else None
        if (
            attempt.dispatched_at
            and attempt.dispatched_at > now - lease
            and (last_sign_of_life is None or attempt.dispatched_at > last_sign_of_life)
        ):
            continue  # already handed to a worker that has not claimed it yet
        resend(attempt)
        resumed += 1
    stale = DeploymentAttempt.objects.filter(
        status=AttemptStatus.QUEUED, dispatched_at__lt=now - DISPATCH_GRACE
    )
    for attempt in stale:
        resend(attempt)
        lost += 1
    dispatch(now)
    schedule_reaper_wakeup(now)
    if resumed or lost:
        logger.warning("reaped", extra={"resumed": resumed, "redispatched": lost})
    return {"resumed": resumed, "redispatched": lost}


def schedule_reaper_wakeup(now: datetime | None = None) -> None:
    """While attempts run, look at them again just after the earliest lease runs out.

    The minute schedule is the safety net; this wake-up resumes an attempt whose worker died
    within a lease period (plus the task cluster's 15 s scheduler tick).
    """
    now = now or timezone.now()
    expiry = (
        DeploymentAttempt.objects.filter(status=AttemptStatus.RUNNING)
        .exclude(lease_expires_at__isnull=True)
        .order_by("lease_expires_at")
        .values_list("lease_expires_at", flat=True)
        .first()
    )
    if expiry is not None:
        when = max(expiry, now) + timedelta(seconds=1)
        schedules.once_at(when, name="reaper-wakeup", func="stacks.tasks.reap_attempts")


def resume_on_start(**signal_args: object) -> None:
    """A task worker just started: resume at once what workers that died left behind.

    Sent by every worker process of a starting cluster; a short lock, per cluster (the workers'
    parent process), lets the first one do it. A worker that replaces a crashed one runs it
    again, which is what it is for.
    """
    import os
    import socket

    from django.core.cache import cache
    from django.db import close_old_connections

    lock = f"stacks:resume-on-start:{socket.gethostname()}:{os.getppid()}"
    try:
        if cache.add(lock, 1, timeout=2):
            reap()
    except Exception:
        logger.exception("could not resume attempts at worker start")
    finally:
        close_old_connections()


def ensure_schedules() -> None:
    """The reaper runs every minute in the task cluster."""
    schedules.every("reaper", "stacks.tasks.reap_attempts", minutes=1)
