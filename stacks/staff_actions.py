"""Staff actions on stacks, attempts and the breaker, each with its entry in the audit trail.

Every function records one StaffAction per object, in the same transaction as the change it
records, whether the request was carried out or refused; the change itself goes through
`stacks.lifecycle` (or the breaker's own API). Work that reaches a worker (dispatch, resend) is
handed over only once that transaction has committed.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from functools import partial

from django.contrib.auth.models import User
from django.db import transaction

from stacks import queueing
from stacks.lifecycle import (
    LifecycleError,
    cancel_attempt,
    request_attempt,
    retry_attempt,
)
from stacks.models import (
    AttemptKind,
    AttemptStatus,
    DeploymentAttempt,
    ReconcileFinding,
    Stack,
    StaffAction,
)
from stacks.resilience import CircuitBreaker

Action = StaffAction.Action
Outcome = StaffAction.Outcome

# What a staff action on a stack queues.
STACK_ACTIONS: dict[str, str] = {
    Action.REDEPLOY: AttemptKind.REDEPLOY,
    Action.STOP: AttemptKind.STOP,
    Action.START: AttemptKind.START,
    Action.TEARDOWN: AttemptKind.TEARDOWN,
    Action.REPAIR: AttemptKind.REPAIR,
}
RECONCILER = "reconciler"


@dataclass(frozen=True)
class StaffResult:
    """How one staff action on one object went; `entry` is its audit record."""

    done: bool
    message: str
    entry: StaffAction
    attempt: DeploymentAttempt | None = None


def audit(
    action: str,
    *,
    by: User | None,
    reason: str,
    target: str,
    outcome: str,
    message: str = "",
    stack: Stack | None = None,
    attempt: DeploymentAttempt | None = None,
    result_attempt: DeploymentAttempt | None = None,
    finding: ReconcileFinding | None = None,
    batch: uuid.UUID | None = None,
    actor_name: str = "",
) -> StaffAction:
    """Write one audit entry. Call it inside the transaction that makes the change."""
    return StaffAction.objects.create(
        actor=by,
        actor_name=actor_name or (by.get_username() if by is not None else RECONCILER),
        action=action,
        target=target[:300],
        stack=stack,
        attempt=attempt,
        result_attempt=result_attempt,
        finding=finding,
        outcome=outcome,
        message=message,
        reason=reason[:500],
        batch=batch or uuid.uuid4(),
    )


def _require_reason(reason: str) -> str:
    reason = reason.strip()
    if not reason:
        raise LifecycleError("Say why: a reason is required for every staff action.")
    return reason


def attempt_label(attempt: DeploymentAttempt) -> str:
    return f"attempt #{attempt.pk} ({attempt.kind} of {attempt.stack.username})"


def staff_stack_action(
    stack: Stack,
    action: str,
    *,
    by: User | None,
    reason: str,
    batch: uuid.UUID | None = None,
    finding: ReconcileFinding | None = None,
) -> StaffResult:
    """Queue a redeploy, stop, start, teardown or repair of `stack` on someone else's behalf.

    The attempt is requested for the stack's owner with `requested_by` set to `by`, so the
    owner sees who asked and why. An abandoned active attempt is handed back to a worker
    instead, as a request by the owner would.
    """
    reason = _require_reason(reason)
    kind = STACK_ACTIONS[action]
    target = f"stack {stack.username}"
    with transaction.atomic():
        active = stack.active_attempt()
        try:
            attempt = request_attempt(
                stack.owner, kind, requested_by=by, reason=reason, dispatch=False
            )
        except LifecycleError as exc:
            entry = audit(
                action,
                by=by,
                reason=reason,
                target=target,
                outcome=Outcome.REFUSED,
                message=str(exc),
                stack=stack,
                attempt=getattr(exc, "attempt", None),
                finding=finding,
                batch=batch,
            )
            return StaffResult(False, str(exc), entry)
        resumed = active is not None and active.pk == attempt.pk
        if resumed:
            message = f"{attempt_label(attempt)} had lost its worker; handed back to a worker"
            transaction.on_commit(partial(queueing.resend, attempt))
        else:
            message = f"queued {attempt_label(attempt)}"
            if by is None:
                # Asked for by the reconciler: the attempt names no person as its requester.
                DeploymentAttempt.objects.filter(pk=attempt.pk).update(requested_by=None)
                attempt.requested_by = None
            if attempt.not_before is not None:
                message += f"; the per-user limit holds it until {attempt.not_before:%H:%M:%S}"
            transaction.on_commit(queueing.dispatch)
        entry = audit(
            action,
            by=by,
            reason=reason,
            target=target,
            outcome=Outcome.DONE,
            message=message,
            stack=stack,
            result_attempt=attempt,
            finding=finding,
            batch=batch,
        )
    return StaffResult(True, message, entry, attempt)


def staff_retry(
    attempt: DeploymentAttempt, *, by: User, reason: str, batch: uuid.UUID | None = None
) -> StaffResult:
    """Run a failed attempt's kind again, as a new attempt (terminal attempts never restart)."""
    reason = _require_reason(reason)
    newest = attempt.stack.attempts.order_by("-queued_at", "-id").first()
    retry: DeploymentAttempt | None = None
    with transaction.atomic():
        if newest is not None and newest.pk != attempt.pk:
            message = f"a newer attempt (#{newest.pk}, {newest.status}) replaced it"
        else:
            try:
                retry = retry_attempt(attempt, by=by, reason=reason, dispatch=False)
            except LifecycleError as exc:
                message = str(exc)
            else:
                message = f"queued {attempt_label(retry)} to retry it"
                transaction.on_commit(queueing.dispatch)
        entry = audit(
            Action.RETRY,
            by=by,
            reason=reason,
            target=attempt_label(attempt),
            outcome=Outcome.DONE if retry is not None else Outcome.REFUSED,
            message=message,
            stack=attempt.stack,
            attempt=attempt,
            result_attempt=retry,
            batch=batch,
        )
    return StaffResult(retry is not None, message, entry, retry)


def staff_cancel(
    attempt: DeploymentAttempt, *, by: User, reason: str, batch: uuid.UUID | None = None
) -> StaffResult:
    """Cancel a queued or running attempt (a running one rolls back at its next step)."""
    reason = _require_reason(reason)
    with transaction.atomic():
        try:
            cancel_attempt(attempt, by=by)
        except LifecycleError as exc:
            done, message = False, str(exc)
        else:
            done = True
            if attempt.status == AttemptStatus.CANCELLED:
                message = "cancelled before it started"
            else:
                message = "asked to stop at its next step; it will roll back what it created"
                if queueing.worker_lost(attempt):
                    message += " once a worker resumes it (its worker is gone)"
        entry = audit(
            Action.CANCEL,
            by=by,
            reason=reason,
            target=attempt_label(attempt),
            outcome=Outcome.DONE if done else Outcome.REFUSED,
            message=message,
            stack=attempt.stack,
            attempt=attempt,
            batch=batch,
        )
    return StaffResult(done, message, entry, attempt if done else None)


def staff_resume(
    attempt: DeploymentAttempt, *, by: User, reason: str, batch: uuid.UUID | None = None
) -> StaffResult:
    """Hand an active attempt whose worker died (lease expired) or whose task was lost back
    to a worker. An attempt whose worker is alive, or that waits its turn, is left alone."""
    reason = _require_reason(reason)
    with transaction.atomic():
        fresh = DeploymentAttempt.objects.select_for_update().get(pk=attempt.pk)
        why_not = ""
        if fresh.status not in DeploymentAttempt.ACTIVE:
            why_not = f"it already ended ({fresh.get_status_display().lower()})"
        elif not queueing.worker_lost(fresh):
            why_not = _not_stuck(fresh)
        if why_not:
            done, message = False, why_not
        else:
            done, message = True, "handed back to a worker"
            transaction.on_commit(partial(queueing.resend, fresh))
        entry = audit(
            Action.RESUME,
            by=by,
            reason=reason,
            target=attempt_label(fresh),
            outcome=Outcome.DONE if done else Outcome.REFUSED,
            message=message,
            stack=fresh.stack,
            attempt=fresh,
            result_attempt=fresh if done else None,
            batch=batch,
        )
    return StaffResult(done, message, entry, fresh if done else None)


def _not_stuck(attempt: DeploymentAttempt) -> str:
    if attempt.status == AttemptStatus.RUNNING and attempt.lease_expires_at is not None:
        return (
            f"its worker is alive (lease held by {attempt.lease_owner} "
            f"until {attempt.lease_expires_at:%H:%M:%S})"
        )
    if attempt.dispatched_at is None:
        position = queueing.queue_position(attempt)
        return f"it is waiting for its turn (queue position {position})"
    return "it was handed to a worker moments ago"


def staff_reset_breaker(
    breaker: CircuitBreaker, *, by: User, reason: str, batch: uuid.UUID | None = None
) -> StaffResult:
    """Close the circuit breaker and forget its counts, through the breaker's own API."""
    reason = _require_reason(reason)
    before = breaker.snapshot()
    with transaction.atomic():
        breaker.reset_breaker()
        message = (
            f"closed; it was {before.state} after {before.consecutive_failures} "
            "consecutive failures"
        )
        entry = audit(
            Action.RESET_BREAKER,
            by=by,
            reason=reason,
            target=f"circuit breaker {breaker.name}",
            outcome=Outcome.DONE,
            message=message,
            batch=batch,
        )
    return StaffResult(True, message, entry)
