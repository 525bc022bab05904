"""Stop, start and tear down a stack that exists."""

from __future__ import annotations

from django.utils import timezone

from stacks.dokploy.client import ignore_missing
from stacks.dokploy.types import Project
from stacks.models import DeploymentStep, Stack
from stacks.pipeline import workspace
from stacks.pipeline.checks import check_health
from stacks.pipeline.journal import StepFailed
from stacks.pipeline.lookups import find_project
from stacks.pipeline.run import Run

Phase = DeploymentStep.Phase
Action = DeploymentStep.Action


def _require_application(run: Run) -> str:
    if not run.stack.application_id:
        raise StepFailed(Phase.APPLICATION, "NO_APPLICATION", "this stack has no application")
    return run.stack.application_id


def stop_stack(run: Run) -> None:
    app_id = _require_application(run)
    with run.step(Phase.APPLICATION, Action.UPDATE, "Stop the application") as outcome:
        run.client.application_stop(app_id)
        outcome.summary = "Application stopped (scaled to 0)"
    run.save_stack(
        desired_state=Stack.Desired.STOPPED,
        observed_state=Stack.Observed.STOPPED,
        observed_at=timezone.now(),
    )


def start_stack(run: Run) -> None:
    app_id = _require_application(run)
    run.save_stack(desired_state=Stack.Desired.RUNNING)
    with run.step(Phase.APPLICATION, Action.UPDATE, "Start the application") as outcome:
        run.client.application_start(app_id)
        outcome.summary = "Application started (scaled to 1)"
    check_health(run, app_id)
    now = timezone.now()
    run.save_stack(observed_state=Stack.Observed.HEALTHY, observed_at=now, last_healthy_at=now)


def teardown(run: Run) -> None:
    """The application first (it takes its domains and service with it), then the person's
    files if they asked for that, then the project. Without that request the files are kept."""
    run.save_stack(desired_state=Stack.Desired.ABSENT)
    project = _find_project(run)
    _delete_application(run, project)
    if run.attempt.delete_data:
        workspace.delete_files(run)
        run.save_attempt(workspace_files="deleted")
    if project is not None:
        _remove_project(run, project.project_id)
    if not run.attempt.delete_data:
        run.save_attempt(workspace_files="kept")
    run.save_stack(
        project_id="",
        environment_id="",
        application_id="",
        app_name="",
        domain_id="",
        observed_state=Stack.Observed.ABSENT,
        observed_at=timezone.now(),
    )


def _find_project(run: Run) -> Project | None:
    with run.step(Phase.PROJECT, Action.QUERY, "Look for the stack's project") as outcome:
        match = find_project(run)
        if match is None:
            outcome.summary = f"No project {run.target.project_name}"
            return None
        project = match.project
        outcome.summary = f"Found project {project.name} ({project.project_id})"
        return project


def _delete_application(run: Run, project: Project | None) -> None:
    name = run.target.application_name
    ids = {run.stack.application_id} - {""}
    if project is not None:
        for environment in run.client.environment_by_project_id(project.project_id):
            ids |= {a.application_id for a in environment.applications if a.name == name}
    with run.step(Phase.APPLICATION, Action.DELETE, f"Delete application {name}") as outcome:
        if not ids:
            outcome.skip(f"No application {name}")
            return
        for app_id in sorted(ids):
            ignore_missing(run.client.application_delete, app_id)
        outcome.summary = f"Deleted application {name} with its domains and service"


def _remove_project(run: Run, project_id: str) -> None:
    with run.step(Phase.PROJECT, Action.DELETE, "Remove the project") as outcome:
        remaining = run.client.project_one(project_id).services()
        if remaining:
            raise StepFailed(
                Phase.PROJECT,
                "PROJECT_NOT_EMPTY",
                f"project {run.target.project_name} still holds {', '.join(remaining)}; "
                "it was left in place",
            )
        run.client.project_remove(project_id)
        outcome.summary = f"Removed project {run.target.project_name}"
