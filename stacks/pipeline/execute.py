"""Carry one attempt from claimed to a terminal state: the entry point of the pipeline."""

from __future__ import annotations

from collections.abc import Callable

from stacks import queueing
from stacks.dokploy.client import DokployClient
from stacks.models import AttemptKind, AttemptStatus, DeploymentAttempt, DeploymentStep
from stacks.pipeline import operations, provision, rollback
from stacks.pipeline.journal import (
    CancelRequested,
    DeadlineExceeded,
    LeaseLost,
    StepCallback,
    StepFailed,
    internal_error,
    logger,
)
from stacks.pipeline.lease import MAX_RUNS, claim, worker_identity
from stacks.pipeline.run import Run

Phase = DeploymentStep.Phase
Action = DeploymentStep.Action

# What each kind of attempt does. A new kind gets its line here (a test checks every kind has one).
HANDLERS: dict[str, Callable[[Run], None]] = {
    AttemptKind.CREATE: provision.provision,
    AttemptKind.REDEPLOY: provision.provision,
    AttemptKind.STOP: operations.stop_stack,
    AttemptKind.START: operations.start_stack,
    AttemptKind.TEARDOWN: operations.teardown,
    AttemptKind.REPAIR: provision.provision,
}


def execute(run: Run) -> DeploymentAttempt:
    attempt = run.attempt
    run.heartbeat.start()
    try:
        if attempt.runs > 1:
            _note_resume(run)
        if attempt.rollback_started_at is not None:
            rollback.resume_rollback(run)
            return attempt
        if attempt.runs > MAX_RUNS:
            raise StepFailed(
                Phase.QUEUE, "TOO_MANY_RUNS", f"gave up after {MAX_RUNS} interrupted runs"
            )
        HANDLERS[attempt.kind](run)
        run.finish(AttemptStatus.SUCCEEDED)
    except LeaseLost:
        logger.warning(
            "lease lost; leaving the attempt to its new owner",
            extra={"deploymentId": attempt.pk, "username": run.stack.username},
        )
    except (StepFailed, CancelRequested, DeadlineExceeded) as exc:
        rollback.fail(run, exc)
    except Exception as exc:
        logger.exception("unexpected error", extra={"deploymentId": attempt.pk})
        rollback.fail(run, internal_error(run.phase, exc))
    finally:
        run.heartbeat.stop()
    return attempt


def _note_resume(run: Run) -> None:
    """Close the steps an earlier run left open, and say where this run starts."""
    run.journal.close_interrupted()
    with run.step(Phase.QUEUE, Action.QUERY, "Resumed after an interrupted run") as outcome:
        outcome.summary = f"Run {run.attempt.runs}: resumed after an interrupted run"


def run_attempt(
    attempt_id: int,
    *,
    owner: str | None = None,
    client: DokployClient | None = None,
    on_step: StepCallback | None = None,
) -> DeploymentAttempt | None:
    """Claim the attempt and carry it to a terminal state. None if it was not ours to run."""
    owner = owner or worker_identity()
    attempt = claim(attempt_id, owner)
    if attempt is None:
        logger.info("not claimed", extra={"deploymentId": attempt_id})
        return None
    # Should this worker die, the reaper looks again as soon as the lease runs out.
    queueing.schedule_reaper_wakeup()
    try:
        return execute(Run(attempt, owner=owner, client=client, on_step=on_step))
    finally:
        queueing.dispatch()
