"""The reconciler: compare Dokploy with the database, report what differs, and fix on request.

It reads Dokploy through the client: `project.all` (every project with its environments and
applications; the only list-everything call), then `application.one` for each stack it checks
(image, domains, latest deployments). Only projects named `ai-stack-*` are looked at. Each run
and its findings are stored (ReconcileRun, ReconcileFinding) for the staff page, the admin's
"has orphans" filter and metrics.

Findings (ReconcileFinding.Kind):
  orphan_project       an ai-stack-* project no stack records: no such stack, a torn-down or
                       never-deployed one, a second project with the stack's name, or one left
                       by an attempt whose rollback failed
  orphan_application   an application in a stack's own project that is not the stack's
  application_missing  a stack's project or application is gone from Dokploy
  application_error    Dokploy reports a stack's application, or its latest deployment, in error
  domain_drift         the stack's host is not routed to it as the pipeline sets it up
  image_drift          the application runs another image than the stack records
  shared_name          several projects carry one name (Dokploy names are not unique)

With `fix`, orphans are removed (applications first, then the project, and only when nothing
else is left in it) and each drifted stack gets a repair attempt through `stacks.lifecycle`.
Every fix, and every fix left undone, is an audit-trail entry.

What is never touched:
- Anything outside the `ai-stack-` prefix, and applications not named `opencode-*`.
- Anything a stack records (project, application).
- Anything under the name of a stack with an attempt in progress (queued or running). The
  pipeline writes an intent before every create but records the new id only after Dokploy
  answers, so in that window its project or application is recorded nowhere: the name is what
  protects it. Dokploy is read before the database, so whatever the snapshot holds was created
  before the attempts were read.
- Before a removal the fix locks the owner's Stack row (the User row when there is no stack),
  checks the database again and keeps the lock through the Dokploy calls. Inserting an attempt
  needs that row (its foreign key), so no attempt can start and adopt the resource meanwhile.
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from stacks import alerts, names, schedules, staff_actions, throttle
from stacks.dokploy.client import CallRecord, DokployClient, ignore_missing, record_call_to_db
from stacks.dokploy.errors import DokployError
from stacks.dokploy.types import Application, ApplicationSummary, DockerVolume, Project
from stacks.models import DeploymentAttempt, ReconcileFinding, ReconcileRun, Stack, StaffAction
from stacks.pipeline.target import Target
from stacks.redaction import redact_text

logger = logging.getLogger("stacks.reconcile")

Kind = ReconcileFinding.Kind
Fix = ReconcileFinding.Fix
PREFIX = names.PROJECT_PREFIX
PHASE = "reconcile"
SCHEDULE_NAME = "reconciler"
TASK = "stacks.tasks.reconcile"


# --- What the database says -------------------------------------------------------------------


@dataclass(frozen=True)
class Records:
    stacks: dict[str, Stack]  # by username
    busy: dict[str, DeploymentAttempt]  # username -> its attempt in progress
    by_project: dict[str, Stack]  # recorded project id -> stack
    # Dokploy id, or "kind:name", -> the attempt whose failed rollback left it
    leftovers: dict[str, DeploymentAttempt]

    def left_by(self, kind: str, name: str, resource_id: str) -> str:
        """Why the resource is there, when an attempt whose rollback failed left it; or ""."""
        attempt = self.leftovers.get(resource_id)
        if attempt is not None:
            return f"Left by attempt #{attempt.pk} ({attempt.kind}), whose rollback failed"
        attempt = self.leftovers.get(f"{kind}:{name}")
        if attempt is not None:
            return (
                f"Probably left by attempt #{attempt.pk} ({attempt.kind}), whose rollback "
                "failed before it learned the id"
            )
        return ""

    def attempt_that_left(self, kind: str, name: str, resource_id: str) -> DeploymentAttempt | None:
        return self.leftovers.get(resource_id) or self.leftovers.get(f"{kind}:{name}")


def load_records() -> Records:
    stacks = {stack.username: stack for stack in Stack.objects.select_related("owner")}
    active = DeploymentAttempt.objects.filter(status__in=DeploymentAttempt.ACTIVE)
    busy = {attempt.stack.username: attempt for attempt in active.select_related("stack")}
    leftovers: dict[str, DeploymentAttempt] = {}
    failed_rollbacks = (
        DeploymentAttempt.objects.filter(status=DeploymentAttempt.Status.FAILED)
        .exclude(rollback_errors=[])
        .order_by("-id")
    )
    for attempt in failed_rollbacks:
        for entry in attempt.created_resources:
            if entry.get("undone"):
                continue  # the rollback did remove this one
            # Keyed by id, or by kind and name when the attempt never learned the id.
            key = entry.get("id") or f"{entry.get('kind')}:{entry.get('name')}"
            leftovers.setdefault(key, attempt)
    by_project = {stack.project_id: stack for stack in stacks.values() if stack.project_id}
    return Records(stacks=stacks, busy=busy, by_project=by_project, leftovers=leftovers)


# --- Scanning ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Found:
    kind: str
    detail: str
    username: str = ""
    stack: Stack | None = None
    project_id: str = ""
    project_name: str = ""
    application_id: str = ""
    application_name: str = ""
    domain_id: str = ""
    volume_name: str = ""
    attempt: DeploymentAttempt | None = None


@dataclass(frozen=True)
class Scan:
    findings: list[Found]
    projects_seen: int
    stacks_checked: int
    protected: list[str] = field(default_factory=list)


def scan(client: DokployClient) -> Scan:
    """Compare Dokploy with the database; no changes anywhere."""
    everything = client.project_all()  # Dokploy first, then the database: see the module notes
    records = load_records()
    ours = [project for project in everything if project.name.startswith(PREFIX)]
    findings = shared_names(ours, records)
    protected: list[str] = []
    for project in ours:
        username = project.name.removeprefix(PREFIX)
        owner = records.by_project.get(project.project_id)
        if username in records.busy or (owner is not None and owner.username in records.busy):
            protected.append(project.name)
            continue
        if owner is not None:
            findings.extend(stray_applications(project, owner, records))
        else:
            findings.append(orphan_project(project, username, records))
    by_id = {project.project_id: project for project in everything}
    checked = 0
    for stack in sorted(records.stacks.values(), key=lambda s: s.username):
        if not _checkable(stack, records):
            continue
        checked += 1
        findings.extend(drift(stack, by_id.get(stack.project_id), client))
    findings.extend(unowned_volumes(client.docker_volumes(), records))
    return Scan(findings, len(ours), checked, protected)


def unowned_volumes(volumes: list[DockerVolume], records: Records) -> list[Found]:
    """Volumes named like a person's workspace that no stack records: reported, never removed.

    They hold someone's files (an account that went, a name changed by hand); only a person
    who knows whose they are may delete them.
    """
    owned = {stack.volume_name for stack in records.stacks.values() if stack.volume_name}
    found = []
    for volume in sorted(volumes, key=lambda v: v.name):
        if volume.name in owned or not names.looks_like_a_workspace_volume(volume.name):
            continue
        username = names.username_of_volume(volume.name)
        found.append(
            Found(
                Kind.ORPHAN_VOLUME,
                f"Volume {volume.name} is named like {username}'s files, but no stack records "
                "it. It is never deleted by the reconciler; find out whose files they are first.",
                username=username,
                volume_name=volume.name,
            )
        )
    return found


def _checkable(stack: Stack, records: Records) -> bool:
    return bool(
        stack.application_id
        and stack.desired_state != Stack.Desired.ABSENT
        and stack.username not in records.busy
    )


def shared_names(projects: list[Project], records: Records) -> list[Found]:
    by_name: dict[str, list[Project]] = defaultdict(list)
    for project in projects:
        by_name[project.name].append(project)
    found = []
    for name, group in sorted(by_name.items()):
        if len(group) < 2:
            continue
        username = name.removeprefix(PREFIX)
        ids = ", ".join(p.project_id for p in group)
        found.append(
            Found(
                Kind.SHARED_NAME,
                f"{len(group)} projects are named {name}: {ids}",
                username=username,
                stack=records.stacks.get(username),
                project_name=name,
            )
        )
    return found


def orphan_project(project: Project, username: str, records: Records) -> Found:
    stack = records.stacks.get(username)
    if stack is None:
        why = f"No stack is named {username}"
    elif stack.project_id:
        why = f"{username}'s stack records project {stack.project_id}, not this one"
    else:
        why = f"{username}'s stack records no project"
    detail = records.left_by("project", project.name, project.project_id) or why
    held = project.services()
    detail += f"; it holds {', '.join(held)}" if held else "; it is empty"
    return Found(
        Kind.ORPHAN_PROJECT,
        detail,
        username=username,
        stack=stack,
        project_id=project.project_id,
        project_name=project.name,
        attempt=records.attempt_that_left("project", project.name, project.project_id),
    )


def stray_applications(project: Project, owner: Stack, records: Records) -> list[Found]:
    found = []
    for app in project.applications():
        if app.application_id == owner.application_id:
            continue
        recorded = owner.application_id or "none"
        detail = records.left_by("application", app.name, app.application_id) or (
            f"Not the application {owner.username}'s stack records ({recorded})"
        )
        found.append(
            Found(
                Kind.ORPHAN_APPLICATION,
                detail,
                username=owner.username,
                stack=owner,
                project_id=project.project_id,
                project_name=project.name,
                application_id=app.application_id,
                application_name=app.name,
                attempt=records.attempt_that_left("application", app.name, app.application_id),
            )
        )
    return found


def drift(stack: Stack, project: Project | None, client: DokployClient) -> list[Found]:
    """How a stack's Dokploy resources differ from its record."""

    def finding(kind: str, detail: str, domain_id: str = "") -> Found:
        return Found(
            kind,
            detail,
            username=stack.username,
            stack=stack,
            project_id=stack.project_id,
            project_name=project.name if project is not None else "",
            application_id=stack.application_id,
            application_name=stack.app_name,
            domain_id=domain_id,
        )

    label = stack.app_name or stack.application_id
    if stack.project_id and project is None:
        return [
            finding(
                Kind.APPLICATION_MISSING,
                f"Project {stack.project_id} is gone from Dokploy, and application {label} with it",
            )
        ]
    if project is not None and stack.application_id not in {
        app.application_id for app in project.applications()
    }:
        return [
            finding(
                Kind.APPLICATION_MISSING,
                f"Application {label} is no longer in project {project.name}",
            )
        ]
    try:
        app = client.application_one(stack.application_id)
    except DokployError as exc:
        if exc.status != 404:
            raise
        return [finding(Kind.APPLICATION_MISSING, f"Application {label} is gone from Dokploy")]
    found = []
    problem = _error_state(app)
    if problem:
        found.append(finding(Kind.APPLICATION_ERROR, problem))
    target = Target.for_stack(stack)
    if app.docker_image != target.image:
        found.append(
            finding(
                Kind.IMAGE_DRIFT,
                f"Dokploy runs image {app.docker_image or '(none)'}; "
                f"the stack records {target.image}",
            )
        )
    domain_problem, domain_id = _domain_drift(stack, app, target)
    if domain_problem:
        found.append(finding(Kind.DOMAIN_DRIFT, domain_problem, domain_id))
    return found


def _error_state(app: Application) -> str:
    deployments = sorted(app.deployments, key=lambda d: d.created_at or "", reverse=True)
    latest = deployments[0] if deployments else None
    if app.application_status != "error" and (latest is None or latest.status != "error"):
        return ""
    detail = f"Dokploy reports the application as {app.application_status}"
    if latest is not None:
        message = latest.error_message or latest.status or "no status"
        detail += f"; latest deployment {latest.deployment_id}: {message}"
    return redact_text(detail)


def _domain_drift(stack: Stack, app: Application, target: Target) -> tuple[str, str]:
    want = target.domain_config()
    host = want["host"]
    match = next((d for d in app.domains if d.host == host), None)
    if match is None:
        others = ", ".join(d.host for d in app.domains) or "none"
        return f"No domain routes {host} to the application (its domains: {others})", ""
    have = {
        "https": match.https,
        "port": match.port,
        "certificate_type": match.certificate_type,
        "domain_type": match.domain_type or "application",
        "path": match.path or "/",
    }
    differences = [f"{k} {have[k]} (want {want[k]})" for k in have if have[k] != want[k]]
    if differences:
        return f"Domain {host} has {', '.join(differences)}", match.domain_id
    if stack.domain_id and stack.domain_id != match.domain_id:
        return (
            f"Domain {host} is {match.domain_id}; the stack records {stack.domain_id}",
            match.domain_id,
        )
    return "", ""


# --- Running and storing ----------------------------------------------------------------------


def run(
    *,
    fix: bool = False,
    trigger: str = ReconcileRun.Trigger.COMMAND,
    by: User | None = None,
    client: DokployClient | None = None,
) -> ReconcileRun:
    """One reconcile run, stored with its findings; with `fix`, orphans removed and drift
    repaired. A Dokploy failure ends the run as failed, with the error recorded."""
    record = ReconcileRun.objects.create(trigger=trigger, fix=fix)
    own_client = client is None
    client = client or reconcile_client()
    try:
        result = scan(client)
        saved = store(record, result)
        if fix:
            apply_fixes(record, saved, client, by=by)
    except DokployError as exc:
        record.status = ReconcileRun.Status.FAILED
        record.error_message = redact_text(f"{exc.code}: {exc}")
        logger.warning("reconcile run failed: %s", exc.code, extra={"run": record.pk})
    except Exception as exc:
        record.status = ReconcileRun.Status.FAILED
        record.error_message = redact_text(f"{type(exc).__name__}: {exc}")
        raise
    else:
        record.status = ReconcileRun.Status.OK
    finally:
        if own_client:
            client.close()
        record.finished_at = timezone.now()
        record.save()
    if record.status == ReconcileRun.Status.OK:
        alerts.reconcile_finished(record)
    return record


def reconcile_client() -> DokployClient:
    """A client whose calls are recorded, and paced, as the phase "reconcile"."""

    def on_call(record: CallRecord) -> None:
        record_call_to_db(record, phase=PHASE)

    def before_request(endpoint: str) -> None:
        throttle.acquire(PHASE)

    return DokployClient.from_settings(on_call=on_call, before_request=before_request)


def store(record: ReconcileRun, result: Scan) -> list[ReconcileFinding]:
    record.projects_seen = result.projects_seen
    record.stacks_checked = result.stacks_checked
    record.protected = len(result.protected)
    record.save(update_fields=["projects_seen", "stacks_checked", "protected"])
    rows = [
        ReconcileFinding(
            run=record,
            kind=found.kind,
            stack=found.stack,
            username=found.username[:100],
            project_id=found.project_id,
            project_name=found.project_name[:255],
            application_id=found.application_id,
            application_name=found.application_name[:255],
            domain_id=found.domain_id,
            volume_name=found.volume_name,
            attempt=found.attempt,
            detail=found.detail,
        )
        for found in result.findings
    ]
    # Saved one by one (not bulk_create) so every row has its id on every database.
    for row in rows:
        row.save()
    logger.info(
        "reconcile run %s: %d findings",
        record.pk,
        len(rows),
        extra={"run": record.pk, "findings": len(rows), "protected": len(result.protected)},
    )
    return rows


# --- Fixing -----------------------------------------------------------------------------------


def apply_fixes(
    record: ReconcileRun,
    findings: list[ReconcileFinding],
    client: DokployClient,
    *,
    by: User | None = None,
) -> None:
    batch = uuid.uuid4()
    for finding in findings:
        if finding.kind == Kind.ORPHAN_PROJECT:
            remove_orphan_project(finding, client, by=by, batch=batch)
        elif finding.kind == Kind.ORPHAN_APPLICATION:
            remove_orphan_application(finding, client, by=by, batch=batch)
    queue_repairs(record, findings, by=by, batch=batch)


def queue_repairs(
    record: ReconcileRun,
    findings: list[ReconcileFinding],
    *,
    by: User | None,
    batch: uuid.UUID,
) -> None:
    """One repair attempt per drifted stack, through the lifecycle."""
    by_stack: dict[int, list[ReconcileFinding]] = defaultdict(list)
    for finding in findings:
        if finding.kind in ReconcileFinding.DRIFT and finding.stack is not None:
            by_stack[finding.stack.pk].append(finding)
    for group in by_stack.values():
        first = group[0]
        assert first.stack is not None
        what = "; ".join(f"{f.get_kind_display().lower()}: {f.detail}" for f in group)
        result = staff_actions.staff_stack_action(
            first.stack,
            StaffAction.Action.REPAIR,
            by=by,
            reason=f"Reconciler run #{record.pk} found {what}",
            batch=batch,
            finding=first,
        )
        for finding in group:
            _settle(finding, Fix.REPAIR_QUEUED if result.done else Fix.SKIPPED, result.message)


def remove_orphan_project(
    finding: ReconcileFinding, client: DokployClient, *, by: User | None, batch: uuid.UUID
) -> None:
    """Delete the orphan's opencode-* applications, then the project if nothing else is left."""
    removed: list[str] = []
    with transaction.atomic():
        why_not = _claim(finding.username) or _recorded_project(finding.project_id)
        if why_not:
            _record(finding, Fix.SKIPPED, why_not, by=by, batch=batch)
            return
        try:
            project = client.project_one(finding.project_id)
            refusal = _foreign_project(project)
            if refusal:
                _record(finding, Fix.SKIPPED, refusal, by=by, batch=batch)
                return
            apps = list(project.applications())
            why_not = _recorded_applications(apps)
            if why_not:
                _record(finding, Fix.SKIPPED, why_not, by=by, batch=batch)
                return
            for app in apps:
                if app.name.startswith(names.APPLICATION_PREFIX):
                    ignore_missing(client.application_delete, app.application_id)
                    removed.append(f"application {app.name} ({app.application_id})")
            left = client.project_one(finding.project_id).services()
            if left:
                message = _removed_text(removed) + f"kept project {project.name}: it holds "
                _record(finding, Fix.KEPT, message + ", ".join(left), by=by, batch=batch)
                return
            client.project_remove(finding.project_id)
        except DokployError as exc:
            if exc.status == 404 and not removed:
                _record(finding, Fix.REMOVED, "already gone from Dokploy", by=by, batch=batch)
            else:
                message = _removed_text(removed) + f"stopped: {redact_text(str(exc))}"
                _record(finding, Fix.FAILED, message, by=by, batch=batch)
            return
        message = _removed_text(removed) + f"removed project {project.name} ({project.project_id})"
        _record(finding, Fix.REMOVED, message, by=by, batch=batch)


def remove_orphan_application(
    finding: ReconcileFinding, client: DokployClient, *, by: User | None, batch: uuid.UUID
) -> None:
    with transaction.atomic():
        why_not = _claim(finding.username)
        if not why_not and Stack.objects.filter(application_id=finding.application_id).exists():
            why_not = "a stack records this application now"
        if not why_not and not finding.application_name.startswith(names.APPLICATION_PREFIX):
            why_not = f"it is not named {names.APPLICATION_PREFIX}*: left for a person to judge"
        if why_not:
            _record(finding, Fix.SKIPPED, why_not, by=by, batch=batch)
            return
        try:
            app = client.application_one(finding.application_id)
            if _project_of(app) != finding.project_id:
                message = "it moved to another project since the scan"
                _record(finding, Fix.SKIPPED, message, by=by, batch=batch)
                return
            client.application_delete(finding.application_id)
        except DokployError as exc:
            if exc.status == 404:
                _record(finding, Fix.REMOVED, "already gone from Dokploy", by=by, batch=batch)
            else:
                message = f"stopped: {redact_text(str(exc))}"
                _record(finding, Fix.FAILED, message, by=by, batch=batch)
            return
        message = f"removed application {app.app_name or app.name} ({app.application_id})"
        _record(finding, Fix.REMOVED, message, by=by, batch=batch)


def _claim(username: str) -> str:
    """Lock the name's owner row for this transaction; why not to go on, or ""."""
    stack = Stack.objects.select_for_update().filter(username=username).first()
    if stack is None:
        owner = get_user_model().objects.select_for_update().filter(username=username)
        owner.first()
        return ""
    active = stack.attempts.filter(status__in=DeploymentAttempt.ACTIVE).first()
    if active is not None:
        return f"attempt #{active.pk} ({active.kind}) on this stack is in progress"
    return ""


def _recorded_project(project_id: str) -> str:
    owner = Stack.objects.filter(project_id=project_id).first()
    return f"{owner.username}'s stack records this project now" if owner else ""


def _recorded_applications(apps: list[ApplicationSummary]) -> str:
    ids = [app.application_id for app in apps]
    owner = Stack.objects.filter(application_id__in=ids).first() if ids else None
    return f"it holds the application {owner.username}'s stack records" if owner else ""


def _foreign_project(project: Project) -> str:
    if not project.name.startswith(PREFIX):
        return f"it is named {project.name} now, outside the {PREFIX} prefix"
    return ""


def _project_of(app: Application) -> str:
    environment: Any = app.raw.get("environment") or {}
    project: Any = environment.get("project") or {}
    return str(project.get("projectId") or environment.get("projectId") or "")


def _removed_text(removed: list[str]) -> str:
    return f"removed {', '.join(removed)}; " if removed else ""


def _settle(finding: ReconcileFinding, fix: str, detail: str) -> None:
    finding.fix = fix
    finding.fix_detail = detail
    finding.fixed_at = timezone.now()
    finding.save(update_fields=["fix", "fix_detail", "fixed_at"])


def _record(
    finding: ReconcileFinding, fix: str, message: str, *, by: User | None, batch: uuid.UUID
) -> None:
    """Settle the finding and write its audit entry, in the caller's transaction."""
    _settle(finding, fix, message)
    done = fix in (Fix.REMOVED, Fix.KEPT)
    subject = finding.application_name or finding.project_name
    ident = finding.application_id or finding.project_id
    staff_actions.audit(
        StaffAction.Action.REMOVE_ORPHAN,
        by=by,
        reason=f"Reconciler run #{finding.run_id}: {finding.detail}",
        target=f"Dokploy {finding.get_kind_display().lower()} {subject} ({ident})",
        outcome=StaffAction.Outcome.DONE if done else _refused_or_failed(fix),
        message=message,
        stack=finding.stack,
        finding=finding,
        batch=batch,
    )


def _refused_or_failed(fix: str) -> str:
    return StaffAction.Outcome.FAILED if fix == Fix.FAILED else StaffAction.Outcome.REFUSED


# --- Schedule ---------------------------------------------------------------------------------


def ensure_schedule() -> None:
    """Run the reconciler every RECONCILE_INTERVAL minutes in the task cluster (0: never)."""
    schedules.every(SCHEDULE_NAME, TASK, minutes=int(settings.RECONCILE_INTERVAL))


def latest_run() -> ReconcileRun | None:
    """The newest run that finished, for the staff page and the "has orphans" filter."""
    finished = ReconcileRun.objects.filter(status=ReconcileRun.Status.OK)
    return finished.order_by("-started_at", "-id").first()
