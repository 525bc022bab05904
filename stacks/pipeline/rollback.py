"""After a failure: undo, newest first, exactly what this attempt created, and end it.

The cause is recorded before the rollback starts (with `rollback_started_at`), so it is visible
while the rollback runs, and a run that resumes after this one died continues the rollback
instead of provisioning again. Each created resource is marked `undone` as soon as it is; the
rollback is bounded by ROLLBACK_TIMEOUT and ignores cancel requests and DEPLOY_TIMEOUT.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.utils import timezone

from stacks import alerts
from stacks.dokploy.client import ignore_missing
from stacks.dokploy.errors import DokployError
from stacks.models import AttemptStatus, DeploymentStep, Stack
from stacks.pipeline import workspace
from stacks.pipeline.journal import (
    CancelRequested,
    LeaseLost,
    RunStopped,
    StepFailed,
    logger,
)
from stacks.pipeline.lease import MAX_RUNS
from stacks.pipeline.lookups import (
    find_application_id,
    find_domain_id,
    find_project,
)
from stacks.pipeline.run import Run
from stacks.redaction import redact_text

Phase = DeploymentStep.Phase
Action = DeploymentStep.Action
# Rows Dokploy deletes with their application (its cascade): nothing to undo on their own.
PART_OF_THE_APPLICATION = ("domain", "mount")


def fail(run: Run, exc: StepFailed | RunStopped) -> None:
    """Record why the attempt failed, roll back, and end it."""
    if isinstance(exc, StepFailed):
        phase, code, message = exc.phase, exc.code, exc.message
    else:
        phase, code, message = run.phase, exc.code, str(exc)
    run.save_attempt(
        failure_phase=phase,
        error_code=code[:64],
        error_message=redact_text(message),
        rollback_started_at=timezone.now(),
    )
    roll_back_and_finish(run)


def resume_rollback(run: Run) -> None:
    """A run that died was rolling back: finish that, never provision again."""
    if run.attempt.runs > MAX_RUNS + 1:
        errors = [
            *run.attempt.rollback_errors,
            f"gave up the rollback after {run.attempt.runs} runs",
        ]
        run.save_stack(observed_state=Stack.Observed.FAILED, observed_at=timezone.now())
        run.finish(AttemptStatus.FAILED, rollback_errors=errors)
        _announce(run, AttemptStatus.FAILED, errors)
        return
    with run.step(Phase.ROLLBACK, Action.QUERY, "Continue the rollback", check=False) as out:
        out.summary = f"Continuing the rollback after {run.attempt.error_code}"
    roll_back_and_finish(run)


def roll_back_and_finish(run: Run) -> None:
    try:
        errors = roll_back(run)
    except LeaseLost:
        logger.warning(
            "lease lost during the rollback; leaving it to the new owner",
            extra={"deploymentId": run.attempt.pk, "username": run.stack.username},
        )
        return
    created = run.attempt.created_resources
    cancelled = run.attempt.error_code == CancelRequested.code
    if cancelled:
        status = AttemptStatus.CANCELLED
    elif created and not errors and all(entry.get("undone") for entry in created):
        status = AttemptStatus.ROLLED_BACK
    else:
        status = AttemptStatus.FAILED
    observed = Stack.Observed.FAILED
    if not run.stack.application_id and cancelled:
        observed = Stack.Observed.NEW
    run.save_stack(observed_state=observed, observed_at=timezone.now())
    run.finish(status, rollback_errors=errors)
    _announce(run, status, errors)


def _announce(run: Run, status: str, errors: list[str]) -> None:
    """Staff hear of a rollback that left something behind, and when rollbacks work again."""
    alerts.rollback_ended(
        attempt_id=run.attempt.pk,
        kind=run.attempt.kind,
        username=run.stack.username,
        status=status,
        errors=errors,
    )


def roll_back(run: Run) -> list[str]:
    """Undo, newest first, what this attempt created and has not undone yet. The errors."""
    errors: list[str] = []
    created = list(reversed(run.attempt.created_resources))
    app_removed = any(entry["kind"] == "application" for entry in created)
    for entry in created:
        if entry.get("undone"):
            continue
        kind, name = entry["kind"], entry["name"]
        if run.heartbeat.lost.is_set():
            raise LeaseLost("another worker took this attempt over")
        if run.seconds_left() <= 0:
            errors.append(
                f"the rollback ran past ROLLBACK_TIMEOUT ({settings.ROLLBACK_TIMEOUT:g} s); "
                f"{kind} {name} and what was created before it were left in place"
            )
            break
        try:
            if kind in PART_OF_THE_APPLICATION and app_removed:
                label = f"{kind.capitalize()} {name}"
                with run.step(Phase.ROLLBACK, Action.DELETE, label, check=False) as out:
                    out.skip(f"{label} goes with its application")
            else:
                with run.step(
                    Phase.ROLLBACK, Action.DELETE, f"Undo {kind} {name}", check=False
                ) as out:
                    out.summary = undo(run, entry)
        except StepFailed as exc:
            errors.append(f"{kind} {name}: {exc.message}")
            continue
        entry["undone"] = True
        run.save_resources()
    return errors


def undo(run: Run, entry: dict[str, Any]) -> str:
    """Remove one resource this attempt created; what was done, for the step's summary."""
    kind, name, resource_id = entry["kind"], entry["name"], entry.get("id")
    if kind == "domain":
        resource_id = resource_id or find_domain_id(run, name)
        if resource_id:
            ignore_missing(run.client.domain_delete, resource_id)
        run.save_stack(domain_id="")
        return f"Deleted domain {name}"
    if kind == "application":
        resource_id = resource_id or find_application_id(run, name)
        if resource_id:
            ignore_missing(run.client.application_delete, resource_id)
        run.save_stack(application_id="", app_name="", domain_id="")
        return f"Deleted application {name}"
    if kind == "project":
        return _undo_project(run, name, resource_id)
    if kind == "mount":
        return workspace.remove_mount(run, resource_id, name)
    raise StepFailed(Phase.ROLLBACK, "UNKNOWN_RESOURCE", f"cannot undo {kind}")


def _undo_project(run: Run, name: str, resource_id: str | None) -> str:
    if not resource_id:
        match = find_project(run)
        resource_id = match.project.project_id if match else None
    if not resource_id:
        return f"Project {name} was never created"
    try:
        remaining = run.client.project_one(resource_id).services()
    except DokployError as exc:
        if exc.status == 404:
            run.save_stack(project_id="", environment_id="")
            return f"Project {name} is already gone"
        raise
    if remaining:
        raise StepFailed(
            Phase.ROLLBACK,
            "PROJECT_NOT_EMPTY",
            f"kept project {name}: it holds {', '.join(remaining)}",
        )
    ignore_missing(run.client.project_remove, resource_id)
    run.save_stack(project_id="", environment_id="")
    return f"Removed project {name}"
