"""The deployment pipeline: the one writer of DeploymentAttempt and DeploymentStep records.

A run takes one attempt from claimed to a terminal state. Every phase looks first and acts
second, so running it again (after a crash, or on a stack that is already up) creates nothing
new. Before each create the attempt writes down what it is about to create (an intent, by
name); a worker killed between Dokploy's answer and our commit is therefore followed by a run
that recognises the resource as this attempt's own, and a rollback removes exactly what the
attempt created, in reverse order, never what it found and reused.

A run holds a short lease on its attempt, renewed by a heartbeat thread. Cancel requests, a lost
lease and the attempt's deadline are checked at every step boundary and during every wait.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connections
from django.db.models import F, Max, Q
from django.utils import timezone

from stacks import health, names, queueing
from stacks.dokploy.client import CallRecord, DokployClient, call_context, record_call_to_db
from stacks.dokploy.errors import DokployError
from stacks.dokploy.types import (
    Application,
    Deployment,
    Domain,
    Environment,
    Project,
    production_environment,
)
from stacks.models import DeploymentAttempt, DeploymentStep, IllegalTransition, Stack
from stacks.redaction import redact, redact_text

logger = logging.getLogger("stacks.pipeline")

Status = DeploymentAttempt.Status
Kind = DeploymentAttempt.Kind
Phase = DeploymentStep.Phase
Action = DeploymentStep.Action
StepStatus = DeploymentStep.Status

# A task redelivered more often than this is poison: give up and roll back.
MAX_RUNS = 5
DEPLOY_POLL_SECONDS = 1.0
LOG_TAIL_LINES = 50


class StepFailed(Exception):
    """A phase could not reach its goal; the attempt fails and rolls back."""

    def __init__(
        self, phase: str, code: str, message: str, api_response: Any | None = None
    ) -> None:
        super().__init__(message)
        self.phase = phase
        self.code = code
        self.message = message
        self.api_response = api_response


class RunStopped(Exception):
    """The run must stop at this step boundary."""

    code = "STOPPED"


class CancelRequested(RunStopped):
    code = "CANCELLED"


class DeadlineExceeded(RunStopped):
    code = "DEADLINE_EXCEEDED"


class LeaseLost(RunStopped):
    """Another worker took the attempt over: this run leaves everything to it."""

    code = "LEASE_LOST"


@dataclass(frozen=True)
class Target:
    """What a user's stack should look like in Dokploy."""

    username: str
    project_name: str
    project_description: str
    application_name: str
    image: str
    host: str
    port: int

    @classmethod
    def for_stack(cls, stack: Stack, image: str = "") -> Target:
        return cls(
            username=stack.username,
            project_name=names.project_name(stack.username),
            project_description=names.project_description(stack.username),
            application_name=names.application_name(stack.username),
            image=image or stack.image or settings.STACK_IMAGE,
            host=stack.host or names.stack_host(stack.username, settings.STACK_DOMAIN),
            port=int(settings.STACK_PORT),
        )

    def domain_config(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "https": True,
            "port": self.port,
            "certificate_type": "letsencrypt",
            "domain_type": "application",
            "path": "/",
        }


def worker_identity() -> str:
    """host:pid:start:random. The pid and the process's start time let a process on the same
    host see that a holder died, even when its pid was reused since."""
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{_process_start(pid) or 0}:{uuid.uuid4().hex[:8]}"


def holder_is_dead(owner: str) -> bool:
    """True when the lease holder ran on this host and its process no longer exists.

    A process that is gone, a zombie (killed, not yet reaped) or a new process that reuses the
    pid all count as gone. A holder on another host is not judged here: its lease simply has
    to expire.
    """
    host, pid_text, start_text, *_ = [*owner.split(":"), "", "", ""]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    started = _process_start(pid)
    if started is None:  # a zombie, or no /proc to tell
        return _is_zombie(pid)
    return start_text.isdigit() and int(start_text) not in (0, started)


def _proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name, or None where there is no /proc."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rpartition(")")[2].split()


def _process_start(pid: int) -> int | None:
    fields = _proc_stat(pid)
    if fields is None or len(fields) < 20 or fields[0] in ("Z", "X"):
        return None
    return int(fields[19])  # starttime, in clock ticks since boot


def _is_zombie(pid: int) -> bool:
    fields = _proc_stat(pid)
    return fields is not None and fields[0] in ("Z", "X")


# --- Lease ------------------------------------------------------------------------------------


def lease_seconds() -> float:
    return min(float(settings.LEASE_SECONDS), 30.0)


def claim(attempt_id: int, owner: str) -> DeploymentAttempt | None:
    """Take the attempt's lease if it is free or expired; start it if it was queued.

    Returns None when the attempt is finished or another live worker holds it.
    """
    now = timezone.now()
    free = Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lt=now) | Q(lease_owner=owner)
    holder = (
        DeploymentAttempt.objects.filter(pk=attempt_id)
        .values_list("lease_owner", flat=True)
        .first()
    )
    if holder and holder_is_dead(holder):
        free |= Q(lease_owner=holder)  # its process is gone: no need to wait for expiry
    taken = (
        DeploymentAttempt.objects.filter(pk=attempt_id, status__in=DeploymentAttempt.ACTIVE)
        .filter(free)
        .update(
            lease_owner=owner,
            lease_expires_at=now + timedelta(seconds=lease_seconds()),
            runs=F("runs") + 1,
        )
    )
    if not taken:
        return None
    attempt = DeploymentAttempt.objects.select_related("stack", "stack__owner").get(pk=attempt_id)
    if attempt.status == Status.QUEUED:
        try:
            attempt.transition(
                Status.RUNNING, deadline=now + timedelta(seconds=float(settings.DEPLOY_TIMEOUT))
            )
        except IllegalTransition:
            return None  # cancelled in the meantime
    # Should this worker die, the reaper looks again as soon as the lease runs out.
    queueing.schedule_reaper_wakeup(now)
    return attempt


class Heartbeat:
    """Renews the lease in the background while the run is alive."""

    def __init__(self, attempt_id: int, owner: str) -> None:
        self.attempt_id = attempt_id
        self.owner = owner
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"lease-{attempt_id}", daemon=True)

    def renew(self) -> bool:
        until = timezone.now() + timedelta(seconds=lease_seconds())
        renewed = DeploymentAttempt.objects.filter(
            pk=self.attempt_id, lease_owner=self.owner, status__in=DeploymentAttempt.ACTIVE
        ).update(lease_expires_at=until)
        return renewed == 1

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        try:
            while not self._stop.wait(lease_seconds() / 3):
                if not self.renew():
                    self.lost.set()
                    return
        except Exception:
            logger.exception("lease renewal failed", extra={"deploymentId": self.attempt_id})
            self.lost.set()
        finally:
            connections.close_all()


# --- Steps ------------------------------------------------------------------------------------


@dataclass
class StepOutcome:
    """What a phase tells the recorder about its step while it runs."""

    action: str
    summary: str
    status: str = StepStatus.SUCCEEDED
    response: Any = None
    calls: list[CallRecord] = field(default_factory=list)

    def skip(self, summary: str) -> None:
        self.status = StepStatus.SKIPPED
        self.summary = summary


StepCallback = Callable[[DeploymentStep], None]


class Run:
    """One worker's run of one attempt."""

    def __init__(
        self,
        attempt: DeploymentAttempt,
        *,
        owner: str,
        client: DokployClient | None = None,
        on_step: StepCallback | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.attempt = attempt
        self.stack = attempt.stack
        self.owner = owner
        self.on_step = on_step
        self.sleep = sleep
        self.target = Target.for_stack(self.stack, attempt.image)
        self.client = client or DokployClient.from_settings(on_call=self._on_call)
        self.client.time_left = self.seconds_left
        self.heartbeat = Heartbeat(attempt.pk, owner)
        self.phase: str = Phase.QUEUE
        self._outcome: StepOutcome | None = None
        self._last_cancel_check = 0.0
        self._seq: int | None = None

    # Recording ---------------------------------------------------------------------------

    def _on_call(self, record: CallRecord) -> None:
        record_call_to_db(record, attempt_id=self.attempt.pk, phase=self.phase)
        if self._outcome is not None:
            self._outcome.calls.append(record)

    def _next_seq(self) -> int:
        if self._seq is None:  # continue after the steps of earlier runs
            self._seq = self.attempt.steps.aggregate(top=Max("seq"))["top"] or 0
        self._seq += 1
        return self._seq

    @contextmanager
    def step(
        self, phase: str, action: str, summary: str, *, check: bool = True
    ) -> Iterator[StepOutcome]:
        """Record one step; DokployError inside becomes StepFailed for this phase."""
        if check:
            self.checkpoint()
        self.phase = phase
        outcome = StepOutcome(action=action, summary=summary)
        self._outcome = outcome
        record = DeploymentStep.objects.create(
            attempt=self.attempt, seq=self._next_seq(), phase=phase, action=action, summary=summary
        )
        started = time.monotonic()
        error: StepFailed | RunStopped | None = None
        try:
            with call_context(self.attempt.pk, phase):
                yield outcome
        except DokployError as exc:
            error = StepFailed(phase, exc.code, str(exc), exc.api_response)
        except (StepFailed, RunStopped) as exc:
            error = exc
        except Exception as exc:
            # A bug or an answer we cannot read: the step failed, and the attempt rolls back.
            logger.exception("unexpected error", extra={"deploymentId": self.attempt.pk})
            detail = redact_text("".join(traceback.format_exception_only(exc)).strip())
            error = StepFailed(phase, "INTERNAL_ERROR", detail)
        # A process being killed records nothing more: the next run marks the step interrupted.
        self._outcome = None
        self._finish_step(record, outcome, started, error)
        if error is not None:
            raise error

    def _finish_step(
        self,
        record: DeploymentStep,
        outcome: StepOutcome,
        started: float,
        error: StepFailed | RunStopped | None,
    ) -> None:
        record.finished_at = timezone.now()
        record.duration_ms = int((time.monotonic() - started) * 1000)
        record.action = outcome.action
        record.summary = redact_text(outcome.summary)[:300]
        record.retries = count_retries(outcome.calls)
        record.api_response = redact(outcome.response) if outcome.response is not None else None
        if isinstance(error, StepFailed):
            record.status = StepStatus.FAILED
            record.error_code = error.code[:64]
            record.error_message = redact_text(error.message)
            if error.api_response is not None:
                record.api_response = redact(error.api_response)
        elif isinstance(error, RunStopped):
            record.status = StepStatus.FAILED
            record.error_code = error.code
            record.error_message = str(error)
        else:
            record.status = outcome.status
        record.save()
        self._log_step(record)
        if self.on_step:
            self.on_step(record)

    def _log_step(self, record: DeploymentStep) -> None:
        extra: dict[str, Any] = {
            "phase": record.phase,
            "action": record.action,
            "deploymentId": self.attempt.pk,
            "username": self.stack.username,
            "duration_ms": record.duration_ms,
            "status": "failure" if record.status == StepStatus.FAILED else "success",
            "retries": record.retries,
        }
        if record.status == StepStatus.FAILED:
            extra["error"] = {
                "code": record.error_code,
                "message": record.error_message,
                "apiResponse": record.api_response,
            }
            logger.error(record.summary, extra=extra)
        else:
            logger.info(record.summary, extra=extra)

    # Boundaries and waits ------------------------------------------------------------------

    def checkpoint(self, *, throttled: bool = False) -> None:
        """Stop here if the lease was lost, a cancel was asked for or the deadline passed.

        Inside wait loops (`throttled`) the cancel flag is read at most twice a second.
        """
        if self.heartbeat.lost.is_set():
            raise LeaseLost("another worker took this attempt over")
        now = time.monotonic()
        if not throttled or now - self._last_cancel_check >= 0.5:
            self._last_cancel_check = now
            wanted = (
                DeploymentAttempt.objects.filter(pk=self.attempt.pk)
                .values_list("cancel_requested", flat=True)
                .first()
            )
            if wanted:
                raise CancelRequested("cancelled on request")
        deadline = self.attempt.deadline
        if deadline and timezone.now() >= deadline:
            raise DeadlineExceeded(
                f"the attempt ran past DEPLOY_TIMEOUT ({settings.DEPLOY_TIMEOUT:g} s)"
            )

    def wait(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while True:
            self.checkpoint(throttled=True)
            left = end - time.monotonic()
            if left <= 0:
                return
            self.sleep(min(left, 0.5))

    def seconds_left(self) -> float:
        """Seconds until the deadline in force: the attempt's, or its rollback's once begun."""
        deadline = self.rollback_deadline() or self.attempt.deadline
        if not deadline:
            return float(settings.DEPLOY_TIMEOUT)
        return max(0.0, (deadline - timezone.now()).total_seconds())

    def rollback_deadline(self) -> datetime | None:
        started = self.attempt.rollback_started_at
        if started is None:
            return None
        return started + timedelta(seconds=float(settings.ROLLBACK_TIMEOUT))

    # Intents: what this attempt created ----------------------------------------------------

    def intend(self, kind: str, name: str) -> None:
        if not self.intended(kind, name):
            self.attempt.created_resources.append({"kind": kind, "name": name, "id": None})
            self._save_resources()

    def intended(self, kind: str, name: str) -> dict[str, Any] | None:
        entry: dict[str, Any]
        for entry in self.attempt.created_resources:
            if entry["kind"] == kind and entry["name"] == name:
                return entry
        return None

    def confirm(self, kind: str, name: str, resource_id: str) -> None:
        entry = self.intended(kind, name)
        if entry is not None and entry["id"] != resource_id:
            entry["id"] = resource_id
            self._save_resources()

    def _save_resources(self) -> None:
        DeploymentAttempt.objects.filter(pk=self.attempt.pk).update(
            created_resources=self.attempt.created_resources
        )

    def _save_stack(self, **fields: Any) -> None:
        for name, value in fields.items():
            setattr(self.stack, name, value)
        self.stack.save(update_fields=[*fields, "updated_at"])

    # The run -------------------------------------------------------------------------------

    def execute(self) -> DeploymentAttempt:
        self.heartbeat.start()
        try:
            if self.attempt.runs > 1:
                self._note_resume()
            if self.attempt.rollback_started_at is not None:
                # The run that died was rolling back: finish that, never provision again.
                self._resume_rollback()
                return self.attempt
            if self.attempt.runs > MAX_RUNS:
                raise StepFailed(
                    Phase.QUEUE, "TOO_MANY_RUNS", f"gave up after {MAX_RUNS} interrupted runs"
                )
            handlers = {
                Kind.CREATE: self.provision,
                Kind.REDEPLOY: self.provision,
                Kind.STOP: self.stop_stack,
                Kind.START: self.start_stack,
                Kind.TEARDOWN: self.teardown,
                Kind.REPAIR: self.provision,
            }
            handlers[Kind(self.attempt.kind)]()
            self._finish(Status.SUCCEEDED)
        except LeaseLost:
            logger.warning(
                "lease lost; leaving the attempt to its new owner",
                extra={"deploymentId": self.attempt.pk, "username": self.stack.username},
            )
        except (StepFailed, CancelRequested, DeadlineExceeded) as exc:
            self._fail(exc)
        except Exception as exc:
            logger.exception("unexpected error", extra={"deploymentId": self.attempt.pk})
            detail = redact_text("".join(traceback.format_exception_only(exc)).strip())
            self._fail(StepFailed(self.phase, "INTERNAL_ERROR", detail))
        finally:
            self.heartbeat.stop()
        return self.attempt

    def _note_resume(self) -> None:
        """Close the steps an earlier run left open, and say where this run starts."""
        self.attempt.steps.filter(status=StepStatus.RUNNING).update(
            status=StepStatus.FAILED,
            finished_at=timezone.now(),
            error_code="INTERRUPTED",
            error_message="the worker running this step stopped before it finished",
        )
        with self.step(Phase.QUEUE, Action.QUERY, "Resumed after an interrupted run") as outcome:
            outcome.summary = f"Run {self.attempt.runs}: resumed after an interrupted run"

    def _finish(self, status: str, **fields: Any) -> None:
        self.attempt.transition(status, **fields)

    def _fail(self, exc: StepFailed | RunStopped) -> None:
        if isinstance(exc, StepFailed):
            phase, code, message = exc.phase, exc.code, exc.message
        else:
            phase, code, message = self.phase, exc.code, str(exc)
        failure = {
            "failure_phase": phase,
            "error_code": code[:64],
            "error_message": redact_text(message),
            "rollback_started_at": timezone.now(),
        }
        # Recorded before the rollback, so the cause is visible while it runs, and a run that
        # resumes after this one died knows to continue the rollback.
        DeploymentAttempt.objects.filter(pk=self.attempt.pk).update(**failure)
        for name, value in failure.items():
            setattr(self.attempt, name, value)
        self._roll_back_and_finish()

    def _resume_rollback(self) -> None:
        if self.attempt.runs > MAX_RUNS + 1:
            self._finish_failed_rollback(f"gave up the rollback after {self.attempt.runs} runs")
            return
        with self.step(Phase.ROLLBACK, Action.QUERY, "Continue the rollback", check=False) as out:
            out.summary = f"Continuing the rollback after {self.attempt.error_code}"
        self._roll_back_and_finish()

    def _roll_back_and_finish(self) -> None:
        try:
            errors = self.rollback()
        except LeaseLost:
            logger.warning(
                "lease lost during the rollback; leaving it to the new owner",
                extra={"deploymentId": self.attempt.pk, "username": self.stack.username},
            )
            return
        created = self.attempt.created_resources
        cancelled = self.attempt.error_code == CancelRequested.code
        if cancelled:
            status = Status.CANCELLED
        elif created and not errors and all(entry.get("undone") for entry in created):
            status = Status.ROLLED_BACK
        else:
            status = Status.FAILED
        observed = Stack.Observed.FAILED
        if not self.stack.application_id and cancelled:
            observed = Stack.Observed.NEW
        self._save_stack(observed_state=observed, observed_at=timezone.now())
        try:
            self._finish(status, rollback_errors=errors)
        except IllegalTransition:
            logger.warning("attempt already finished", extra={"deploymentId": self.attempt.pk})

    def _finish_failed_rollback(self, reason: str) -> None:
        errors = [*self.attempt.rollback_errors, reason]
        self._save_stack(observed_state=Stack.Observed.FAILED, observed_at=timezone.now())
        try:
            self._finish(Status.FAILED, rollback_errors=errors)
        except IllegalTransition:
            logger.warning("attempt already finished", extra={"deploymentId": self.attempt.pk})

    # Phases: create and redeploy -----------------------------------------------------------

    def provision(self) -> None:
        self._save_stack(
            host=self.target.host,
            image=self.target.image,
            desired_state=Stack.Desired.RUNNING,
            observed_state=Stack.Observed.PROVISIONING,
            observed_at=timezone.now(),
        )
        project, environment_id, environments = self.ensure_project()
        environment = self.ensure_environment(project, environment_id, environments)
        application, created = self.ensure_application(
            environment, fresh=environment_id is not None
        )
        image_changed = self.ensure_image(application, created)
        domain_changed = self.ensure_domain(application, fresh=created)
        force = self.attempt.kind == Kind.REDEPLOY or created or image_changed or domain_changed
        self.deploy(application, force=force, fresh=created)
        self.check_health(application.application_id)
        now = timezone.now()
        self._save_stack(
            observed_state=Stack.Observed.HEALTHY, observed_at=now, last_healthy_at=now
        )

    def find_project(self) -> tuple[Project | None, int]:
        """Our project: the stored id if it still exists, else an exact name match."""
        if self.stack.project_id:
            try:
                return self.client.project_one(self.stack.project_id), 1
            except DokployError as exc:
                if exc.status != 404:
                    raise
        matches = [p for p in self.client.project_all() if p.name == self.target.project_name]
        if not matches:
            return None, 0
        matches.sort(key=lambda p: p.created_at or "")
        # Names are not unique in Dokploy; the newest is the one a crashed run of ours made.
        chosen = matches[-1] if self.intended("project", self.target.project_name) else matches[0]
        return chosen, len(matches)

    def ensure_project(self) -> tuple[Project, str | None, list[Environment] | None]:
        name = self.target.project_name
        with self.step(Phase.PROJECT, Action.QUERY, f"Look for project {name}") as outcome:
            project, count = self.find_project()
            if project is not None:
                ours = self.intended("project", name)
                if ours:
                    self.confirm("project", name, project.project_id)
                outcome.summary = f"Reusing project {name} ({project.project_id})"
                if count > 1:
                    outcome.summary += f"; {count} projects share this name"
                outcome.response = project.raw
                self._save_stack(project_id=project.project_id)
                return project, None, None
            outcome.action = Action.CREATE
            self.intend("project", name)
            created = self.client.project_create(
                name=name, description=self.target.project_description
            )
            self.confirm("project", name, created.project.project_id)
            environment_id = created.environment.environment_id
            self._save_stack(project_id=created.project.project_id, environment_id=environment_id)
            outcome.summary = f"Created project {name} ({created.project.project_id})"
            outcome.response = created.raw
            return created.project, environment_id, []

    def ensure_environment(
        self, project: Project, environment_id: str | None, known: list[Environment] | None
    ) -> Environment:
        with self.step(
            Phase.ENVIRONMENT, Action.QUERY, "Find the project's production environment"
        ) as outcome:
            if environment_id is not None and known is not None:
                outcome.skip("Environment production came with the new project")
                return Environment(
                    environment_id=environment_id,
                    name="production",
                    is_default=True,
                    project_id=project.project_id,
                    applications=[],
                    raw={},
                )
            environments = self.client.environment_by_project_id(project.project_id)
            chosen = production_environment(environments)
            if chosen is None:
                raise StepFailed(
                    Phase.ENVIRONMENT,
                    "NO_ENVIRONMENT",
                    f"project {project.name} has no production environment",
                )
            self._save_stack(environment_id=chosen.environment_id)
            outcome.summary = f"Using environment {chosen.name} ({chosen.environment_id})"
            return chosen

    def ensure_application(
        self, environment: Environment, *, fresh: bool
    ) -> tuple[Application, bool]:
        """Reuse our application unless it failed; a new project has none to look for."""
        name = self.target.application_name
        if not fresh:
            found = self._find_application(environment)
            if found is not None and found.application_status != "error":
                return found, False
            if found is not None:
                with self.step(
                    Phase.APPLICATION, Action.DELETE, f"Delete failed application {name}"
                ) as outcome:
                    _ignore_missing(self.client.application_delete, found.application_id)
                    self._save_stack(application_id="", app_name="", domain_id="")
                    outcome.summary = f"Deleted failed application {found.app_name}; recreating"
        with self.step(Phase.APPLICATION, Action.CREATE, f"Create application {name}") as outcome:
            self.intend("application", name)
            created = self.client.application_create(
                name=name,
                environment_id=environment.environment_id,
                app_name=name,
                source_type="docker",
                project_id=environment.project_id or self.stack.project_id,
            )
            self.confirm("application", name, created.application_id)
            self._save_stack(application_id=created.application_id, app_name=created.app_name or "")
            outcome.summary = f"Created application {name} as {created.app_name}"
            outcome.response = created.raw
            return created, True

    def _find_application(self, environment: Environment) -> Application | None:
        name = self.target.application_name
        with self.step(Phase.APPLICATION, Action.QUERY, f"Look for application {name}") as outcome:
            matches = [a for a in environment.applications if a.name == name]
            matches.sort(key=lambda a: a.application_id != self.stack.application_id)
            if not matches:
                outcome.summary = f"No application {name} yet"
                return None
            found = self.client.application_one(matches[0].application_id)
            if self.intended("application", name):
                self.confirm("application", name, found.application_id)
            outcome.response = found.raw
            if found.application_status == "error":
                outcome.summary = f"Application {found.app_name} exists but its last deploy failed"
                return found
            outcome.summary = f"Reusing application {name} ({found.app_name})"
            self._save_stack(application_id=found.application_id, app_name=found.app_name or "")
            return found

    def ensure_image(self, application: Application, created: bool) -> bool:
        image = self.target.image
        with self.step(Phase.APPLICATION, Action.UPDATE, f"Set image {image}") as outcome:
            if (
                not created
                and application.source_type == "docker"
                and (application.docker_image == image)
            ):
                outcome.skip(f"Image is already {image}")
                return False
            self.client.application_save_docker_provider(
                application_id=application.application_id, docker_image=image
            )
            outcome.summary = f"Image set to {image}"
            return True

    def ensure_domain(self, application: Application, *, fresh: bool) -> bool:
        """Create, update or keep the stack's domain; a new application has none to look up."""
        want = self.target.domain_config()
        host = self.target.host
        with self.step(Phase.DOMAIN, Action.QUERY, f"Route {host} to port {want['port']}") as out:
            domains = (
                [] if fresh else self.client.domain_by_application_id(application.application_id)
            )
            match = next((d for d in domains if d.host == host), None)
            if match is not None:
                if self.intended("domain", host):
                    self.confirm("domain", host, match.domain_id)
                self._save_stack(domain_id=match.domain_id)
                if _same_domain(match, want):
                    out.summary = f"Domain {host} already routes to port {want['port']} over https"
                    return False
                out.action = Action.UPDATE
                updated = self.client.domain_update(match.domain_id, **want)
                out.summary = f"Updated domain {host} to https, port {want['port']}"
                out.response = updated.raw
                return True
            out.action = Action.CREATE
            self.intend("domain", host)
            domain = self.client.domain_create(application_id=application.application_id, **want)
            self.confirm("domain", host, domain.domain_id)
            self._save_stack(domain_id=domain.domain_id)
            out.summary = f"Created domain {host} (https, port {want['port']})"
            out.response = domain.raw
            return True

    def deploy(self, application: Application, *, force: bool, fresh: bool) -> None:
        """Start a deployment and follow it, or follow one already running, or skip."""
        app_id = application.application_id
        with self.step(Phase.DEPLOY, Action.UPDATE, "Deploy") as outcome:
            history = [] if fresh else self.client.deployment_all(app_id)
            newest = history[0] if history else None
            if newest is not None and newest.status == "running":
                outcome.action = Action.QUERY
                outcome.summary = "A deployment is already running; following it"
                finished = self._follow(app_id, newest.deployment_id, None)
            elif (
                not force
                and newest is not None
                and newest.status == "done"
                and (application.application_status == "done")
            ):
                outcome.skip("Already deployed with this image; nothing to do")
                return
            else:
                known = {d.deployment_id for d in history}
                self.client.application_deploy(
                    app_id,
                    title=f"AI Stack Portal attempt #{self.attempt.pk}",
                    description=f"{self.attempt.kind} for {self.stack.username}",
                )
                finished = self._follow(app_id, None, known)
            outcome.response = finished.raw
            if finished.status != "done":
                log_tail = self._log_tail(finished.deployment_id)
                message = finished.error_message or f"deployment ended as {finished.status}"
                raise StepFailed(
                    Phase.DEPLOY,
                    "DEPLOY_FAILED",
                    message,
                    {"deployment": finished.raw, "log_tail": log_tail},
                )
            outcome.summary = f"Deployment {finished.deployment_id} finished"

    def _follow(self, app_id: str, deployment_id: str | None, known: set[str] | None) -> Deployment:
        """Poll deployment.all until our deployment appears and leaves 'running'."""
        while True:
            for row in self.client.deployment_all(app_id):
                ours = row.deployment_id == deployment_id or (
                    known is not None and row.deployment_id not in known
                )
                if ours and row.status != "running":
                    return row
            if self.seconds_left() <= 0:
                raise DeadlineExceeded("the deployment did not finish before DEPLOY_TIMEOUT")
            self.wait(min(DEPLOY_POLL_SECONDS, float(settings.HEALTH_INTERVAL) or 0.1))

    def _log_tail(self, deployment_id: str) -> str:
        try:
            return self.client.deployment_read_logs(deployment_id, tail=LOG_TAIL_LINES)
        except DokployError as exc:
            return f"(build log unavailable: {exc})"

    def check_health(self, application_id: str) -> None:
        base = health.stack_base_url(self.target.host)
        with self.step(Phase.HEALTH, Action.QUERY, "Container status") as outcome:
            application = self.client.application_one(application_id)
            result = health.check_container(application.application_status)
            self._record_check(outcome, result)
        with self.step(Phase.HEALTH, Action.QUERY, "GET /health") as outcome:
            timeout = min(float(settings.HEALTH_TIMEOUT), self.seconds_left())
            result = health.wait_until_healthy(
                base, interval=float(settings.HEALTH_INTERVAL), timeout=timeout, wait=self.wait
            )
            self._record_check(outcome, result)
        if settings.STACK_CHECK_DNS:
            with self.step(Phase.HEALTH, Action.QUERY, "DNS and HTTPS") as outcome:
                result = health.check_dns_https(self.target.host, timeout=self._probe_timeout())
                self._record_check(outcome, result)
        with self.step(Phase.HEALTH, Action.QUERY, "Web terminal (ttyd)") as outcome:
            self._record_check(outcome, health.check_ttyd(base, timeout=self._probe_timeout()))

    def _probe_timeout(self) -> float:
        """A health probe's timeout, cut to the attempt's deadline (the step checked it)."""
        return max(0.1, min(10.0, self.seconds_left()))

    def _record_check(self, outcome: StepOutcome, result: health.CheckResult) -> None:
        outcome.summary = result.detail
        outcome.response = {"check": result.name, "ok": result.ok, "tries": result.tries}
        if not result.ok:
            raise StepFailed(Phase.HEALTH, "UNHEALTHY", result.detail)

    # Phases: stop, start, teardown ---------------------------------------------------------

    def _require_application(self) -> str:
        if not self.stack.application_id:
            raise StepFailed(Phase.APPLICATION, "NO_APPLICATION", "this stack has no application")
        return self.stack.application_id

    def stop_stack(self) -> None:
        app_id = self._require_application()
        with self.step(Phase.APPLICATION, Action.UPDATE, "Stop the application") as outcome:
            self.client.application_stop(app_id)
            outcome.summary = "Application stopped (scaled to 0)"
        self._save_stack(
            desired_state=Stack.Desired.STOPPED,
            observed_state=Stack.Observed.STOPPED,
            observed_at=timezone.now(),
        )

    def start_stack(self) -> None:
        app_id = self._require_application()
        self._save_stack(desired_state=Stack.Desired.RUNNING)
        with self.step(Phase.APPLICATION, Action.UPDATE, "Start the application") as outcome:
            self.client.application_start(app_id)
            outcome.summary = "Application started (scaled to 1)"
        self.check_health(app_id)
        now = timezone.now()
        self._save_stack(
            observed_state=Stack.Observed.HEALTHY, observed_at=now, last_healthy_at=now
        )

    def teardown(self) -> None:
        self._save_stack(desired_state=Stack.Desired.ABSENT)
        project, _ = self._teardown_find_project()
        self._teardown_application(project)
        if project is not None:
            self._teardown_project(project.project_id)
        self._save_stack(
            project_id="",
            environment_id="",
            application_id="",
            app_name="",
            domain_id="",
            observed_state=Stack.Observed.ABSENT,
            observed_at=timezone.now(),
        )

    def _teardown_find_project(self) -> tuple[Project | None, int]:
        with self.step(Phase.PROJECT, Action.QUERY, "Look for the stack's project") as outcome:
            project, count = self.find_project()
            if project is None:
                outcome.summary = f"No project {self.target.project_name}"
            else:
                outcome.summary = f"Found project {project.name} ({project.project_id})"
            return project, count

    def _teardown_application(self, project: Project | None) -> None:
        name = self.target.application_name
        ids = {self.stack.application_id} - {""}
        if project is not None:
            for environment in self.client.environment_by_project_id(project.project_id):
                ids |= {a.application_id for a in environment.applications if a.name == name}
        with self.step(Phase.APPLICATION, Action.DELETE, f"Delete application {name}") as outcome:
            if not ids:
                outcome.skip(f"No application {name}")
                return
            for app_id in sorted(ids):
                _ignore_missing(self.client.application_delete, app_id)
            outcome.summary = f"Deleted application {name} with its domains and service"

    def _teardown_project(self, project_id: str) -> None:
        with self.step(Phase.PROJECT, Action.DELETE, "Remove the project") as outcome:
            remaining = _services_in(self.client.project_one(project_id))
            if remaining:
                raise StepFailed(
                    Phase.PROJECT,
                    "PROJECT_NOT_EMPTY",
                    f"project {self.target.project_name} still holds {', '.join(remaining)}; "
                    "it was left in place",
                )
            self.client.project_remove(project_id)
            outcome.summary = f"Removed project {self.target.project_name}"

    # Rollback ------------------------------------------------------------------------------

    def rollback(self) -> list[str]:
        """Undo, newest first, what this attempt created and has not undone yet.

        Each entry of created_resources is marked `undone` as soon as it is, so a run that
        resumes a rollback continues where the dead one stopped. Returns the errors.
        """
        errors: list[str] = []
        created = list(reversed(self.attempt.created_resources))
        app_removed = any(entry["kind"] == "application" for entry in created)
        for entry in created:
            if entry.get("undone"):
                continue
            kind, name = entry["kind"], entry["name"]
            if self.heartbeat.lost.is_set():
                raise LeaseLost("another worker took this attempt over")
            if self.seconds_left() <= 0:
                errors.append(
                    f"the rollback ran past ROLLBACK_TIMEOUT ({settings.ROLLBACK_TIMEOUT:g} s); "
                    f"{kind} {name} and what was created before it were left in place"
                )
                break
            try:
                if kind == "domain" and app_removed:
                    with self.step(
                        Phase.ROLLBACK, Action.DELETE, f"Domain {name}", check=False
                    ) as outcome:
                        outcome.skip(f"Domain {name} goes with its application")
                else:
                    with self.step(
                        Phase.ROLLBACK, Action.DELETE, f"Undo {kind} {name}", check=False
                    ) as outcome:
                        outcome.summary = self._undo(kind, name, entry.get("id"))
            except StepFailed as exc:
                errors.append(f"{kind} {name}: {exc.message}")
                continue
            entry["undone"] = True
            self._save_resources()
        return errors

    def _undo(self, kind: str, name: str, resource_id: str | None) -> str:
        if kind == "domain":
            resource_id = resource_id or self._find_domain_id(name)
            if resource_id:
                _ignore_missing(self.client.domain_delete, resource_id)
            self._save_stack(domain_id="")
            return f"Deleted domain {name}"
        if kind == "application":
            resource_id = resource_id or self._find_application_id(name)
            if resource_id:
                _ignore_missing(self.client.application_delete, resource_id)
            self._save_stack(application_id="", app_name="", domain_id="")
            return f"Deleted application {name}"
        if kind == "project":
            if not resource_id:
                project, _ = self.find_project()
                resource_id = project.project_id if project else None
            if not resource_id:
                return f"Project {name} was never created"
            try:
                remaining = _services_in(self.client.project_one(resource_id))
            except DokployError as exc:
                if exc.status == 404:
                    self._save_stack(project_id="", environment_id="")
                    return f"Project {name} is already gone"
                raise
            if remaining:
                raise StepFailed(
                    Phase.ROLLBACK,
                    "PROJECT_NOT_EMPTY",
                    f"kept project {name}: it holds {', '.join(remaining)}",
                )
            _ignore_missing(self.client.project_remove, resource_id)
            self._save_stack(project_id="", environment_id="")
            return f"Removed project {name}"
        raise StepFailed(Phase.ROLLBACK, "UNKNOWN_RESOURCE", f"cannot undo {kind}")

    def _find_domain_id(self, host: str) -> str | None:
        if not self.stack.application_id:
            return None
        domains = self.client.domain_by_application_id(self.stack.application_id)
        return next((d.domain_id for d in domains if d.host == host), None)

    def _find_application_id(self, name: str) -> str | None:
        if self.stack.application_id:
            return self.stack.application_id
        project, _ = self.find_project()
        if project is None:
            return None
        for environment in self.client.environment_by_project_id(project.project_id):
            for app in environment.applications:
                if app.name == name:
                    return app.application_id
        return None


def count_retries(calls: list[CallRecord]) -> int:
    """Tries beyond the first of each client call; a call's recovery look-ups share its try."""
    retries = 0
    highest = 1
    for call in calls:
        if call.try_number == 1:
            retries += highest - 1
            highest = 1
        highest = max(highest, call.try_number)
    return retries + highest - 1


def _same_domain(domain: Domain, want: dict[str, Any]) -> bool:
    return bool(
        domain.https == want["https"]
        and domain.port == want["port"]
        and domain.certificate_type == want["certificate_type"]
        and (domain.domain_type or "application") == want["domain_type"]
        and (domain.path or "/") == want["path"]
    )


def _services_in(project: Project) -> list[str]:
    """Names of every service still in the project's environments."""
    found: list[str] = []
    for environment in project.environments:
        found.extend(f"application {a.name}" for a in environment.applications)
        found.extend(f"{kind} service" for kind in environment.other_services)
    return found


def _ignore_missing(delete: Callable[[str], object], resource_id: str) -> None:
    """Deleting something that is already gone counts as done."""
    try:
        delete(resource_id)
    except DokployError as exc:
        if exc.status != 404:
            raise


# --- Entry point ------------------------------------------------------------------------------


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
    try:
        return Run(attempt, owner=owner, client=client, on_step=on_step).execute()
    finally:
        queueing.dispatch()
