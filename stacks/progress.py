"""What a person sees of one attempt: its phases with state, time and retries, its place in the
queue, and on failure the cause in plain words with what was rolled back.

`load()` runs the queries, a fixed number whatever the number of steps: the steps, and while
the attempt is active the typical durations, the breaker and (queued only) the queue. `build()`
turns rows into the view and reads nothing from the database.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from django.conf import settings
from django.utils import timezone

from stacks import queueing
from stacks.models import AttemptKind, AttemptStatus, DeploymentAttempt, DeploymentStep
from stacks.resilience import MAX_TRIES, CircuitBreaker

Phase = DeploymentStep.Phase
Action = DeploymentStep.Action
StepStatus = DeploymentStep.Status


@dataclass(frozen=True)
class Planned:
    """One line of the timeline: the steps of a phase (of one action, when given)."""

    label: str
    phase: str
    action: str | None = None

    def matches(self, step: DeploymentStep) -> bool:
        return step.phase == self.phase and self.action in (None, step.action)


PROVISION = (
    Planned("Project", Phase.PROJECT),
    Planned("Environment", Phase.ENVIRONMENT),
    Planned("Application", Phase.APPLICATION),
    Planned("Your files", Phase.VOLUME),
    Planned("Domain", Phase.DOMAIN),
    Planned("Deploy", Phase.DEPLOY),
    Planned("Health checks", Phase.HEALTH),
)
TEARDOWN = (
    Planned("Find the project", Phase.PROJECT, Action.QUERY),
    Planned("Delete the application", Phase.APPLICATION),
    Planned("Remove the project", Phase.PROJECT, Action.DELETE),
)
# A teardown asked to delete the files shows that step too.
TEARDOWN_WITH_FILES = (*TEARDOWN[:2], Planned("Delete your files", Phase.VOLUME), TEARDOWN[2])


@dataclass(frozen=True)
class KindView:
    """How an attempt of one kind is shown: its page heading, the tab title while it runs and
    once it succeeded, and the lines of its timeline."""

    heading: str
    doing: str
    done: str
    plan: tuple[Planned, ...]


# One line per kind of attempt (a test checks that every kind has one).
KINDS: dict[str, KindView] = {
    AttemptKind.CREATE: KindView("Creating your AI stack", "Deploying", "Ready", PROVISION),
    AttemptKind.REDEPLOY: KindView("Redeploying your AI stack", "Redeploying", "Ready", PROVISION),
    AttemptKind.STOP: KindView(
        "Stopping your AI stack",
        "Stopping",
        "Stopped",
        (Planned("Stop the application", Phase.APPLICATION),),
    ),
    AttemptKind.START: KindView(
        "Starting your AI stack",
        "Starting",
        "Ready",
        (
            Planned("Start the application", Phase.APPLICATION),
            Planned("Health checks", Phase.HEALTH),
        ),
    ),
    AttemptKind.TEARDOWN: KindView("Deleting your AI stack", "Removing", "Removed", TEARDOWN),
    AttemptKind.REPAIR: KindView("Repairing your AI stack", "Repairing", "Ready", PROVISION),
}


def plan_of(attempt: DeploymentAttempt) -> tuple[Planned, ...]:
    if attempt.kind == AttemptKind.TEARDOWN and attempt.delete_data:
        return TEARDOWN_WITH_FILES
    return KINDS[attempt.kind].plan


class RowState(StrEnum):
    WAITING = "waiting"
    RUNNING = "running"
    DONE = "done"
    SKIPPED = "skipped"
    FAILED = "failed"
    CANCELLED = "cancelled"
    NOT_REACHED = "not_reached"

    @property
    def label(self) -> str:
        return ROW_LABELS[self]


ROW_LABELS = {
    RowState.WAITING: "Waiting",
    RowState.RUNNING: "In progress",
    RowState.DONE: "Done",
    RowState.SKIPPED: "Nothing to do",
    RowState.FAILED: "Failed",
    RowState.CANCELLED: "Stopped by the cancel",
    RowState.NOT_REACHED: "Not reached",
}


@dataclass(frozen=True)
class RetryNote:
    """A Dokploy call being retried: the try that goes out next, and when (None: in flight)."""

    try_number: int
    of: int
    at: datetime | None


@dataclass(frozen=True)
class Row:
    label: str
    state: RowState
    duration: timedelta | None
    retries: int
    summary: str
    retry: RetryNote | None


@dataclass(frozen=True)
class Failure:
    phase: str
    cause: str
    message: str
    log_tail: str
    rollback: list[DeploymentStep]
    rollback_errors: list[str]
    created: list[str]


@dataclass(frozen=True)
class Progress:
    attempt: DeploymentAttempt
    rows: list[Row]
    notes: list[DeploymentStep]  # resumed runs and other steps outside the plan
    rollback: list[DeploymentStep]
    failure: Failure | None
    elapsed: timedelta
    expected_total: timedelta | None
    position: int | None
    expected_start: datetime | None
    dokploy_retry_at: datetime | None  # while the breaker is open: when Dokploy is tried again
    now: datetime

    @property
    def heading(self) -> str:
        return KINDS[self.attempt.kind].heading

    @property
    def current(self) -> int:
        """1-based number of the line in progress (the last one reached)."""
        reached = [n for n, row in enumerate(self.rows, 1) if row.state != RowState.WAITING]
        return reached[-1] if reached else 1

    @property
    def rolling_back(self) -> bool:
        running = self.attempt.status == AttemptStatus.RUNNING
        return running and self.attempt.rollback_started_at is not None

    @property
    def title(self) -> str:
        """The state in a few words, for the tab title: "Deploying 2/6", "Ready", "Failed"."""
        attempt = self.attempt
        if attempt.status == AttemptStatus.QUEUED:
            return "Queued"
        if attempt.status == AttemptStatus.RUNNING:
            if attempt.cancel_requested:
                return "Cancelling"
            if self.rolling_back:
                return "Rolling back"
            return f"{KINDS[attempt.kind].doing} {self.current}/{len(self.rows)}"
        if attempt.status == AttemptStatus.SUCCEEDED:
            return KINDS[attempt.kind].done
        if attempt.status == AttemptStatus.CANCELLED:
            return "Cancelled"
        return "Failed"

    @property
    def opens_stack(self) -> bool:
        """Whether the stack is up at the end of this attempt: show "Open my AI stack"."""
        return self.attempt.status == AttemptStatus.SUCCEEDED and self.attempt.kind in (
            AttemptKind.CREATE,
            AttemptKind.REDEPLOY,
            AttemptKind.START,
        )

    @property
    def can_retry(self) -> bool:
        return self.attempt.status in (
            AttemptStatus.FAILED,
            AttemptStatus.ROLLED_BACK,
            AttemptStatus.CANCELLED,
        )


def load(attempt: DeploymentAttempt, now: datetime | None = None) -> Progress:
    now = now or timezone.now()
    steps = list(attempt.steps.order_by("seq"))
    typical: dict[str, timedelta] = {}
    position = expected_start = retry_at = None
    if attempt.is_active:
        typical = queueing.typical_durations()
        breaker = CircuitBreaker().peek()
        if breaker is not None and breaker.retry_at is not None and breaker.retry_at > now:
            retry_at = breaker.retry_at
    if attempt.status == AttemptStatus.QUEUED:
        position = queueing.queue_position(attempt)
        expected_start = queueing.expected_start(attempt, typical, now)
    return build(
        attempt,
        steps,
        now=now,
        expected_total=typical.get(attempt.kind),
        position=position,
        expected_start=expected_start,
        dokploy_retry_at=retry_at,
    )


def build(
    attempt: DeploymentAttempt,
    steps: list[DeploymentStep],
    *,
    now: datetime,
    expected_total: timedelta | None = None,
    position: int | None = None,
    expected_start: datetime | None = None,
    dokploy_retry_at: datetime | None = None,
) -> Progress:
    plan = plan_of(attempt)
    planned = [step for step in steps if step.phase != Phase.ROLLBACK]
    grouped = [[step for step in planned if line.matches(step)] for line in plan]
    last_reached = max((n for n, group in enumerate(grouped) if group), default=-1)
    rows = [
        _row(line, group, attempt, now, current=n == last_reached)
        for n, (line, group) in enumerate(zip(plan, grouped, strict=True))
    ]
    rollback = [step for step in steps if step.phase == Phase.ROLLBACK]
    notes = [step for step in planned if not any(line.matches(step) for line in plan)]
    return Progress(
        attempt=attempt,
        rows=rows,
        notes=notes,
        rollback=rollback,
        failure=_failure(attempt, steps, rollback) if attempt.failure_phase else None,
        elapsed=_elapsed(attempt, now),
        expected_total=expected_total,
        position=position,
        expected_start=expected_start,
        dokploy_retry_at=dokploy_retry_at,
        now=now,
    )


def _row(
    line: Planned,
    steps: list[DeploymentStep],
    attempt: DeploymentAttempt,
    now: datetime,
    *,
    current: bool,
) -> Row:
    running = next((step for step in steps if step.status == StepStatus.RUNNING), None)
    summary = steps[-1].summary if steps else ""
    return Row(
        label=line.label,
        state=_state(steps, attempt, current=current),
        duration=_duration(steps, now),
        retries=sum(step.retries for step in steps),
        summary="" if summary.lower() == line.label.lower() else summary,
        retry=_retry_note(running) if running is not None else None,
    )


def _state(steps: list[DeploymentStep], attempt: DeploymentAttempt, *, current: bool) -> RowState:
    if not steps:
        if attempt.is_active:
            return RowState.WAITING
        return (
            RowState.SKIPPED if attempt.status == AttemptStatus.SUCCEEDED else RowState.NOT_REACHED
        )
    last = steps[-1].status
    if last == StepStatus.FAILED:
        return RowState.CANCELLED if steps[-1].error_code == "CANCELLED" else RowState.FAILED
    if last == StepStatus.RUNNING:
        return RowState.RUNNING
    # Between two steps of the line being worked on, it is still in progress.
    if current and attempt.status == AttemptStatus.RUNNING and not attempt.failure_phase:
        return RowState.RUNNING
    if all(step.status == StepStatus.SKIPPED for step in steps):
        return RowState.SKIPPED
    return RowState.DONE


def _duration(steps: list[DeploymentStep], now: datetime) -> timedelta | None:
    if not steps:
        return None
    total = timedelta()
    for step in steps:
        if step.duration_ms is not None:
            total += timedelta(milliseconds=step.duration_ms)
        elif step.status == StepStatus.RUNNING:
            total += max(timedelta(), now - step.started_at)
    return total


def _retry_note(step: DeploymentStep) -> RetryNote | None:
    """`current_try` is the try in flight; while a wait runs, `next_try_at` is the next one's."""
    if step.next_try_at is not None:
        return RetryNote(try_number=step.current_try + 1, of=MAX_TRIES, at=step.next_try_at)
    if step.current_try > 1:
        return RetryNote(try_number=step.current_try, of=MAX_TRIES, at=None)
    return None


def _elapsed(attempt: DeploymentAttempt, now: datetime) -> timedelta:
    start = attempt.started_at or attempt.queued_at
    end = attempt.finished_at or now
    return max(timedelta(), end - start)


def _failure(
    attempt: DeploymentAttempt, steps: list[DeploymentStep], rollback: list[DeploymentStep]
) -> Failure:
    failed = [
        step
        for step in steps
        if step.status == StepStatus.FAILED
        and step.phase != Phase.ROLLBACK
        and step.error_code != "INTERRUPTED"
    ]
    step = failed[-1] if failed else None
    phase = attempt.failure_phase
    return Failure(
        phase=Phase(phase).label if phase in Phase.values else phase,
        cause=plain_cause(attempt, step),
        message=attempt.error_message,
        log_tail=_log_tail(step.api_response if step is not None else None),
        rollback=rollback,
        rollback_errors=[str(error) for error in attempt.rollback_errors],
        created=[f"{entry['kind']} {entry['name']}" for entry in attempt.created_resources],
    )


def _log_tail(response: Any) -> str:
    if isinstance(response, dict) and isinstance(response.get("log_tail"), str):
        return str(response["log_tail"]).strip()
    return ""


def plain_cause(attempt: DeploymentAttempt, step: DeploymentStep | None) -> str:
    """The failure in one sentence a person without Dokploy knowledge understands."""
    code = attempt.error_code
    what = "this step"
    if step is not None:
        what = f"{step.get_action_display().lower()} the {step.get_phase_display().lower()}"
    causes = {
        "CANCELLED": "It was cancelled on request.",
        "DEPLOY_FAILED": "Dokploy could not start your stack's container; the build log says why.",
        "UNHEALTHY": "The stack was deployed but did not answer its health checks in time.",
        "BREAKER_OPEN": "Dokploy stopped answering, so the portal stopped sending it requests.",
        "TIMEOUT": "Dokploy did not answer in time, even after several tries.",
        "NETWORK_ERROR": "The portal could not reach Dokploy, even after several tries.",
        "DEADLINE_EXCEEDED": (
            f"It took longer than the {float(settings.DEPLOY_TIMEOUT):g} seconds a run may take."
        ),
        "UNAUTHORIZED": "Dokploy refused the portal's API key; staff need to fix the key.",
        "FORBIDDEN": "Dokploy refused the portal's API key; staff need to fix the key.",
        "NOT_FOUND": f"Dokploy no longer has something needed to {what}.",
        "PROJECT_NOT_EMPTY": "The project holds other services, so it was left in place.",
        "NO_APPLICATION": "There is no deployed application to act on.",
        "TOO_MANY_RUNS": "The workers running it stopped too many times.",
        "INTERNAL_ERROR": "The portal hit an unexpected error; staff can see the details.",
    }
    if code in causes:
        return causes[code]
    if code.startswith(("BAD_REQUEST", "CONFLICT", "UNPROCESSABLE", "PRECONDITION")):
        return f"Dokploy refused to {what}."
    if code in ("INTERNAL_SERVER_ERROR", "BAD_GATEWAY", "SERVICE_UNAVAILABLE", "GATEWAY_TIMEOUT"):
        return f"Dokploy had an internal error and could not {what}, even after several tries."
    return f"Dokploy could not {what}."
