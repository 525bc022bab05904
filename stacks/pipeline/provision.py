"""Create and redeploy: project, environment, application, workspace, domain, deploy, health.

Each phase looks first and acts second, so a run that repeats it (after a crash, or on a stack
that is already up) creates nothing new; before each create it writes down an intent (Run.intend)
so a rollback can tell what this attempt made from what it found.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.utils import timezone

from stacks.dokploy.client import ignore_missing
from stacks.dokploy.errors import DokployError
from stacks.dokploy.types import Application, Deployment, Environment, Project
from stacks.dokploy.types import production_environment as pick_production
from stacks.models import AttemptKind, DeploymentStep, Stack
from stacks.pipeline import workspace
from stacks.pipeline.checks import check_health
from stacks.pipeline.journal import DeadlineExceeded, StepFailed
from stacks.pipeline.lookups import find_project, same_domain
from stacks.pipeline.run import Run

Phase = DeploymentStep.Phase
Action = DeploymentStep.Action

DEPLOY_POLL_SECONDS = 1.0
LOG_TAIL_LINES = 50


@dataclass(frozen=True)
class ProjectInDokploy:
    project: Project
    # project.create answers with the production environment it made; a found project's
    # environment has to be looked up.
    new_environment: Environment | None = None

    @property
    def created(self) -> bool:
        return self.new_environment is not None


@dataclass(frozen=True)
class ApplicationInDokploy:
    application: Application
    created: bool


def provision(run: Run) -> None:
    run.save_stack(
        host=run.target.host,
        image=run.target.image,
        desired_state=Stack.Desired.RUNNING,
        observed_state=Stack.Observed.PROVISIONING,
        observed_at=timezone.now(),
    )
    found = ensure_project(run)
    environment = ensure_environment(run, found)
    app = ensure_application(run, environment, fresh=found.created)
    changed = [
        workspace.ensure_limits(run, app.application, created=app.created),
        ensure_image(run, app),
        workspace.ensure_mount(run, app.application, created=app.created),
        ensure_domain(run, app.application, fresh=app.created),
    ]
    # A new mount, new limits or a new image take effect only at the next deploy.
    force = run.attempt.kind == AttemptKind.REDEPLOY or app.created or any(changed)
    deploy(run, app.application, force=force, fresh=app.created)
    check_health(run, app.application.application_id)
    now = timezone.now()
    run.save_stack(observed_state=Stack.Observed.HEALTHY, observed_at=now, last_healthy_at=now)


def ensure_project(run: Run) -> ProjectInDokploy:
    name = run.target.project_name
    with run.step(Phase.PROJECT, Action.QUERY, f"Look for project {name}") as outcome:
        match = find_project(run)
        if match is not None:
            project = match.project
            if run.intended("project", name):
                run.confirm("project", name, project.project_id)
            outcome.summary = f"Reusing project {name} ({project.project_id})"
            if match.same_name > 1:
                outcome.summary += f"; {match.same_name} projects share this name"
            outcome.response = project.raw
            run.save_stack(project_id=project.project_id)
            return ProjectInDokploy(project)
        outcome.action = Action.CREATE
        run.intend("project", name)
        created = run.client.project_create(name=name, description=run.target.project_description)
        run.confirm("project", name, created.project.project_id)
        environment_id = created.environment.environment_id
        run.save_stack(project_id=created.project.project_id, environment_id=environment_id)
        outcome.summary = f"Created project {name} ({created.project.project_id})"
        outcome.response = created.raw
        return ProjectInDokploy(created.project, new_environment=created.environment)


def ensure_environment(run: Run, found: ProjectInDokploy) -> Environment:
    with run.step(
        Phase.ENVIRONMENT, Action.QUERY, "Find the project's production environment"
    ) as outcome:
        if found.new_environment is not None:
            outcome.skip("Environment production came with the new project")
            return found.new_environment
        project = found.project
        chosen = pick_production(run.client.environment_by_project_id(project.project_id))
        if chosen is None:
            raise StepFailed(
                Phase.ENVIRONMENT,
                "NO_ENVIRONMENT",
                f"project {project.name} has no production environment",
            )
        run.save_stack(environment_id=chosen.environment_id)
        outcome.summary = f"Using environment {chosen.name} ({chosen.environment_id})"
        return chosen


def ensure_application(run: Run, environment: Environment, *, fresh: bool) -> ApplicationInDokploy:
    """Reuse our application unless it failed; a new project has none to look for."""
    name = run.target.application_name
    if not fresh:
        found = _find_application(run, environment)
        if found is not None and found.application_status != "error":
            return ApplicationInDokploy(found, created=False)
        if found is not None:
            with run.step(
                Phase.APPLICATION, Action.DELETE, f"Delete failed application {name}"
            ) as outcome:
                ignore_missing(run.client.application_delete, found.application_id)
                run.save_stack(application_id="", app_name="", domain_id="")
                outcome.summary = f"Deleted failed application {found.app_name}; recreating"
    with run.step(Phase.APPLICATION, Action.CREATE, f"Create application {name}") as outcome:
        run.intend("application", name)
        created = run.client.application_create(
            name=name,
            environment_id=environment.environment_id,
            app_name=name,
            source_type="docker",
            project_id=environment.project_id or run.stack.project_id,
        )
        run.confirm("application", name, created.application_id)
        run.save_stack(application_id=created.application_id, app_name=created.app_name or "")
        outcome.summary = f"Created application {name} as {created.app_name}"
        outcome.response = created.raw
        return ApplicationInDokploy(created, created=True)


def _find_application(run: Run, environment: Environment) -> Application | None:
    name = run.target.application_name
    with run.step(Phase.APPLICATION, Action.QUERY, f"Look for application {name}") as outcome:
        matches = [a for a in environment.applications if a.name == name]
        matches.sort(key=lambda a: a.application_id != run.stack.application_id)
        if not matches:
            outcome.summary = f"No application {name} yet"
            return None
        found = run.client.application_one(matches[0].application_id)
        if run.intended("application", name):
            run.confirm("application", name, found.application_id)
        outcome.response = found.raw
        if found.application_status == "error":
            outcome.summary = f"Application {found.app_name} exists but its last deploy failed"
            return found
        outcome.summary = f"Reusing application {name} ({found.app_name})"
        run.save_stack(application_id=found.application_id, app_name=found.app_name or "")
        return found


def ensure_image(run: Run, app: ApplicationInDokploy) -> bool:
    image = run.target.image
    application = app.application
    with run.step(Phase.APPLICATION, Action.UPDATE, f"Set image {image}") as outcome:
        if (
            not app.created
            and application.source_type == "docker"
            and application.docker_image == image
        ):
            outcome.skip(f"Image is already {image}")
            return False
        run.client.application_save_docker_provider(
            application_id=application.application_id, docker_image=image
        )
        outcome.summary = f"Image set to {image}"
        return True


def ensure_domain(run: Run, application: Application, *, fresh: bool) -> bool:
    """Create, update or keep the stack's domain; a new application has none to look up."""
    want = run.target.domain_config()
    host = run.target.host
    with run.step(Phase.DOMAIN, Action.QUERY, f"Route {host} to port {want['port']}") as out:
        domains = [] if fresh else run.client.domain_by_application_id(application.application_id)
        match = next((d for d in domains if d.host == host), None)
        if match is not None:
            if run.intended("domain", host):
                run.confirm("domain", host, match.domain_id)
            run.save_stack(domain_id=match.domain_id)
            if same_domain(match, want):
                out.summary = f"Domain {host} already routes to port {want['port']} over https"
                return False
            out.action = Action.UPDATE
            updated = run.client.domain_update(match.domain_id, **want)
            out.summary = f"Updated domain {host} to https, port {want['port']}"
            out.response = updated.raw
            return True
        out.action = Action.CREATE
        run.intend("domain", host)
        domain = run.client.domain_create(application_id=application.application_id, **want)
        run.confirm("domain", host, domain.domain_id)
        run.save_stack(domain_id=domain.domain_id)
        out.summary = f"Created domain {host} (https, port {want['port']})"
        out.response = domain.raw
        return True


def deploy(run: Run, application: Application, *, force: bool, fresh: bool) -> None:
    """Start a deployment and follow it, or follow one already running, or skip."""
    app_id = application.application_id
    with run.step(Phase.DEPLOY, Action.UPDATE, "Deploy") as outcome:
        history = [] if fresh else run.client.deployment_all(app_id)
        newest = history[0] if history else None
        if newest is not None and newest.status == "running":
            outcome.action = Action.QUERY
            outcome.summary = "A deployment is already running; following it"
            finished = _follow(run, app_id, newest.deployment_id, None)
        elif not force and newest is not None and newest.status == "done" and _is_done(run, app_id):
            outcome.skip("Already deployed with this image; nothing to do")
            return
        else:
            known = {d.deployment_id for d in history}
            run.client.application_deploy(
                app_id,
                title=f"AI Stack Portal attempt #{run.attempt.pk}",
                description=f"{run.attempt.kind} for {run.stack.username}",
            )
            finished = _follow(run, app_id, None, known)
        outcome.response = finished.raw
        if finished.status != "done":
            message = finished.error_message or f"deployment ended as {finished.status}"
            raise StepFailed(
                Phase.DEPLOY,
                "DEPLOY_FAILED",
                message,
                {"deployment": finished.raw, "log_tail": _log_tail(run, finished.deployment_id)},
            )
        outcome.summary = f"Deployment {finished.deployment_id} finished"


def _is_done(run: Run, app_id: str) -> bool:
    """The application's status now: the one read earlier in this run may be stale (a
    deployment a dead run started can have finished since)."""
    return run.client.application_one(app_id).application_status == "done"


def _follow(run: Run, app_id: str, deployment_id: str | None, known: set[str] | None) -> Deployment:
    """Poll deployment.all until our deployment appears and leaves 'running'."""
    while True:
        for row in run.client.deployment_all(app_id):
            ours = row.deployment_id == deployment_id or (
                known is not None and row.deployment_id not in known
            )
            if ours and row.status != "running":
                return row
        if run.seconds_left() <= 0:
            raise DeadlineExceeded("the deployment did not finish before DEPLOY_TIMEOUT")
        run.wait(min(DEPLOY_POLL_SECONDS, float(settings.HEALTH_INTERVAL) or 0.1))


def _log_tail(run: Run, deployment_id: str) -> str:
    try:
        return run.client.deployment_read_logs(deployment_id, tail=LOG_TAIL_LINES)
    except DokployError as exc:
        return f"(build log unavailable: {exc})"
