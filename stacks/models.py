"""The portal's records: stacks, deployment attempts and their steps, Dokploy calls, breaker.

State rules live here and in the database: a DeploymentAttempt changes status only along
`ATTEMPT_TRANSITIONS` (checked on save and done as compare-and-set updates), and a partial
unique index lets a stack hold at most one active (queued or running) attempt.

The attempt kinds and statuses are defined once, at module level, and everything else (the
constraints below, the queue, the pipeline, the lifecycle) uses these names. Adding a kind is
one line in AttemptKind, its handler in the pipeline's table, and the migration that follows.
No I/O happens in this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, ClassVar

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from stacks.health import stack_base_url
from stacks.names import USERNAME_MAX, validate_stack_username


class IllegalTransition(Exception):
    """A status change that the attempt state machine does not allow."""


class AttemptKind(models.TextChoices):
    CREATE = "create", "Create"
    REDEPLOY = "redeploy", "Redeploy"
    STOP = "stop", "Stop"
    START = "start", "Start"
    TEARDOWN = "teardown", "Teardown"
    # Brings a drifted stack back to its record (reconciler or staff); not rate-limited.
    REPAIR = "repair", "Repair"


class AttemptStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    ROLLED_BACK = "rolled_back", "Rolled back"
    CANCELLED = "cancelled", "Cancelled"


# Waiting for or holding a worker; a stack has at most one such attempt.
ACTIVE_STATUSES = (AttemptStatus.QUEUED, AttemptStatus.RUNNING)
# Ended for good: a new run is a new attempt.
TERMINAL_STATUSES = (
    AttemptStatus.SUCCEEDED,
    AttemptStatus.FAILED,
    AttemptStatus.ROLLED_BACK,
    AttemptStatus.CANCELLED,
)
# Ended without reaching the goal: these always carry an error code.
UNSUCCESSFUL_STATUSES = (AttemptStatus.FAILED, AttemptStatus.ROLLED_BACK, AttemptStatus.CANCELLED)
# May end without ever having started (cancelled while queued, or given up before a worker).
UNSTARTED_END_STATUSES = (AttemptStatus.CANCELLED, AttemptStatus.FAILED)
# Terminal states have no way out.
ATTEMPT_TRANSITIONS: dict[str, frozenset[str]] = {
    AttemptStatus.QUEUED: frozenset(
        {AttemptStatus.RUNNING, AttemptStatus.CANCELLED, AttemptStatus.FAILED}
    ),
    AttemptStatus.RUNNING: frozenset(TERMINAL_STATUSES),
    **{status: frozenset() for status in TERMINAL_STATUSES},
}


class DesiredState(models.TextChoices):
    RUNNING = "running", "Running"
    STOPPED = "stopped", "Stopped"
    ABSENT = "absent", "Removed"


class ObservedState(models.TextChoices):
    NEW = "new", "Not deployed yet"
    PROVISIONING = "provisioning", "Provisioning"
    HEALTHY = "healthy", "Healthy"
    UNHEALTHY = "unhealthy", "Unhealthy"
    STOPPED = "stopped", "Stopped"
    FAILED = "failed", "Failed"
    ABSENT = "absent", "Removed"


class Stack(models.Model):
    Desired = DesiredState
    Observed = ObservedState

    owner = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="stack"
    )
    username = models.CharField(
        max_length=USERNAME_MAX, unique=True, validators=[validate_stack_username]
    )
    image = models.CharField(max_length=255, blank=True)
    host = models.CharField(max_length=253, blank=True)

    # Dokploy resources this stack owns; blank until created or found.
    project_id = models.CharField(max_length=64, blank=True)
    environment_id = models.CharField(max_length=64, blank=True)
    application_id = models.CharField(max_length=64, blank=True)
    app_name = models.CharField(max_length=63, blank=True, help_text="Dokploy's generated appName")
    domain_id = models.CharField(max_length=64, blank=True)

    # The person's files: a named Docker volume that belongs to this stack (and so to its
    # owner's account), kept through redeploys, updates and teardowns until they ask to delete it.
    volume_name = models.CharField(max_length=128, blank=True)
    # The limits the application was last deployed with (bytes, nano-CPUs); None: no limit.
    memory_limit_bytes = models.BigIntegerField(null=True, blank=True)
    cpu_limit_nanos = models.BigIntegerField(null=True, blank=True)

    desired_state = models.CharField(
        max_length=16, choices=Desired.choices, default=Desired.RUNNING
    )
    observed_state = models.CharField(max_length=16, choices=Observed.choices, default=Observed.NEW)
    observed_at = models.DateTimeField(null=True, blank=True)
    last_healthy_at = models.DateTimeField(null=True, blank=True)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["username"]
        constraints = [
            models.CheckConstraint(
                condition=Q(desired_state__in=DesiredState.values),
                name="stack_desired_state_valid",
            ),
            models.CheckConstraint(
                condition=Q(observed_state__in=ObservedState.values),
                name="stack_observed_state_valid",
            ),
        ]

    def __str__(self) -> str:
        return self.username

    @property
    def public_url(self) -> str:
        return f"https://{self.host}" if self.host else ""

    @property
    def open_url(self) -> str:
        """Where "Open my AI stack" leads: the public URL, or the simulator's page for the stack.

        With the embedded simulator the public host does not resolve, so the link goes where the
        simulator serves the stack (STACK_URL filled in with the host).
        """
        if not self.host:
            return ""
        if settings.DOKPLOY_SIMULATED:
            return f"{stack_base_url(self.host)}/"
        return self.public_url

    def dokploy_resources(self) -> list[str]:
        """What this stack still owns in Dokploy, for refusing to forget it."""
        owned = [
            ("project", self.project_id),
            ("application", self.application_id),
            ("domain", self.domain_id),
        ]
        return [f"{kind} {ident}" for kind, ident in owned if ident]

    def active_attempt(self) -> DeploymentAttempt | None:
        return self.attempts.filter(status__in=ACTIVE_STATUSES).first()

    def last_deployed_at(self) -> datetime | None:
        """When the last successful create or redeploy finished."""
        return (
            self.attempts.filter(
                status=AttemptStatus.SUCCEEDED,
                kind__in=[AttemptKind.CREATE, AttemptKind.REDEPLOY],
            )
            .order_by("-finished_at")
            .values_list("finished_at", flat=True)
            .first()
        )

    def status(self, active: DeploymentAttempt | None) -> StackStatus:
        """What its owner is told: an attempt in progress first, else the observed state."""
        if active is not None:
            return STATUS_DURING.get(active.kind, DEPLOYING)
        return STATUS_OBSERVED[self.observed_state]


@dataclass(frozen=True)
class StackStatus:
    """What a stack's owner is told about it: a key for styling and words to read."""

    key: str
    label: str


DEPLOYING = StackStatus("deploying", "Deploying")
STATUS_DURING: dict[str, StackStatus] = {
    "stop": StackStatus("stopping", "Stopping"),
    "start": StackStatus("starting", "Starting"),
    "teardown": StackStatus("removing", "Being deleted"),
}
STATUS_OBSERVED: dict[str, StackStatus] = {
    Stack.Observed.NEW: StackStatus("new", "Not created yet"),
    Stack.Observed.PROVISIONING: DEPLOYING,
    Stack.Observed.HEALTHY: StackStatus("running", "Running"),
    Stack.Observed.UNHEALTHY: StackStatus("unhealthy", "Unhealthy"),
    Stack.Observed.STOPPED: StackStatus("stopped", "Stopped"),
    Stack.Observed.FAILED: StackStatus("failed", "Failed"),
    Stack.Observed.ABSENT: StackStatus("removed", "Deleted"),
}


class DeploymentAttempt(models.Model):
    # The module-level names, reachable from the model too (DeploymentAttempt.Status.QUEUED).
    Kind = AttemptKind
    Status = AttemptStatus
    ACTIVE: ClassVar[frozenset[str]] = frozenset(ACTIVE_STATUSES)
    TERMINAL: ClassVar[frozenset[str]] = frozenset(TERMINAL_STATUSES)

    # PROTECT: an attempt is an audit record; a stack with a history cannot be deleted.
    stack = models.ForeignKey(Stack, on_delete=models.PROTECT, related_name="attempts")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reason = models.CharField(max_length=200, blank=True)
    image = models.CharField(max_length=255, blank=True)
    # Sent with the form that asked for the attempt: the same request sent twice (a double
    # click, a resubmitted form) finds this attempt instead of making a second one.
    idempotency_key = models.UUIDField(null=True, blank=True, editable=False)

    queued_at = models.DateTimeField(default=timezone.now)
    not_before = models.DateTimeField(
        null=True, blank=True, help_text="Earliest start allowed by the per-user limit"
    )
    dispatched_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    deadline = models.DateTimeField(null=True, blank=True)

    # Crash safety: our own run counter and a short lease renewed while a worker holds it.
    runs = models.PositiveSmallIntegerField(default=0)
    lease_owner = models.CharField(max_length=100, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    cancel_requested = models.BooleanField(default=False)
    # A teardown that also deletes the person's files (asked for explicitly), and what became
    # of the files when a teardown ended.
    delete_data = models.BooleanField(default=False)
    workspace_files = models.CharField(
        max_length=8, choices=[("kept", "Kept"), ("deleted", "Deleted")], blank=True
    )

    # Set when the rollback begins; a run that resumes this attempt continues the rollback.
    rollback_started_at = models.DateTimeField(null=True, blank=True)
    failure_phase = models.CharField(max_length=16, blank=True)
    error_code = models.CharField(max_length=64, blank=True)
    error_message = models.TextField(blank=True, help_text="Redacted")
    created_resources = models.JSONField(
        default=list, blank=True, help_text="Dokploy resources this attempt created, in order"
    )
    rollback_errors = models.JSONField(default=list, blank=True)

    _saved_status: str | None

    class Meta:
        ordering = ["-queued_at", "-id"]
        indexes = [models.Index(fields=["status", "not_before"], name="attempt_queue_idx")]
        constraints = [
            models.UniqueConstraint(
                fields=["stack"],
                condition=Q(status__in=list(ACTIVE_STATUSES)),
                name="one_active_attempt_per_stack",
                violation_error_message="This stack already has a deployment in progress.",
            ),
            models.UniqueConstraint(
                fields=["stack", "idempotency_key"], name="attempt_idempotency_key_unique"
            ),
            models.CheckConstraint(
                condition=Q(status__in=AttemptStatus.values),
                name="attempt_status_valid",
            ),
            models.CheckConstraint(
                condition=Q(kind__in=AttemptKind.values),
                name="attempt_kind_valid",
            ),
            models.CheckConstraint(
                condition=(
                    Q(status__in=list(ACTIVE_STATUSES), finished_at__isnull=True)
                    | (~Q(status__in=list(ACTIVE_STATUSES)) & Q(finished_at__isnull=False))
                ),
                name="attempt_finished_iff_terminal",
            ),
            models.CheckConstraint(
                condition=Q(status=AttemptStatus.QUEUED)
                | Q(started_at__isnull=False)
                | Q(status__in=list(UNSTARTED_END_STATUSES)),
                name="attempt_started_when_run",
            ),
            # A terminal attempt's fields agree with its status: success carries no failure,
            # a failure or rollback carries its cause.
            models.CheckConstraint(
                condition=~Q(status=AttemptStatus.SUCCEEDED) | Q(error_code="", failure_phase=""),
                name="attempt_success_has_no_error",
            ),
            models.CheckConstraint(
                condition=~Q(status__in=list(UNSUCCESSFUL_STATUSES)) | ~Q(error_code=""),
                name="attempt_failure_has_a_cause",
            ),
        ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._saved_status = self.status if self.pk else None

    def __str__(self) -> str:
        return f"#{self.pk} {self.kind} {self.stack_id} ({self.status})"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self._saved_status is not None and not self.can_transition(
            self._saved_status, self.status
        ):
            raise IllegalTransition(f"{self._saved_status} → {self.status} is not allowed")
        if self._saved_status is None and self.status not in self.ACTIVE:
            raise IllegalTransition(f"a new attempt cannot start as {self.status}")
        super().save(*args, **kwargs)
        self._saved_status = self.status

    @classmethod
    def from_db(cls, db: str | None, field_names: Any, values: Any) -> DeploymentAttempt:
        instance = super().from_db(db, field_names, values)
        instance._saved_status = instance.status
        return instance

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE

    @property
    def duration(self) -> timedelta | None:
        """From start to end; None while it runs or when it never started."""
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at

    @classmethod
    def can_transition(cls, current: str, new: str) -> bool:
        return new == current or new in ATTEMPT_TRANSITIONS.get(current, frozenset())

    def transition(self, new: str, **fields: Any) -> None:
        """Move to `new` with a compare-and-set update, so two processes cannot both do it.

        Raises IllegalTransition when the state machine forbids it or when another process
        changed the status first (the instance is refreshed in that case).
        """
        current = self.status
        if not self.can_transition(current, new) or new == current:
            raise IllegalTransition(f"{current} → {new} is not allowed")
        now = timezone.now()
        if new == self.Status.RUNNING:
            fields.setdefault("started_at", self.started_at or now)
        if new in self.TERMINAL:
            fields.setdefault("finished_at", now)
            fields.setdefault("lease_owner", "")
            fields.setdefault("lease_expires_at", None)
        updated = type(self).objects.filter(pk=self.pk, status=current).update(status=new, **fields)
        if updated != 1:
            self.refresh_from_db()
            raise IllegalTransition(f"{current} → {new} lost a race: status is now {self.status}")
        self.status = new
        self._saved_status = new
        for name, value in fields.items():
            setattr(self, name, value)

    def lease_expired(self, now: datetime | None = None) -> bool:
        now = now or timezone.now()
        return self.lease_expires_at is None or self.lease_expires_at <= now


class DeploymentStep(models.Model):
    class Phase(models.TextChoices):
        QUEUE = "queue", "Queue"
        PROJECT = "project", "Project"
        ENVIRONMENT = "environment", "Environment"
        APPLICATION = "application", "Application"
        VOLUME = "volume", "Workspace"
        DOMAIN = "domain", "Domain"
        DEPLOY = "deploy", "Deploy"
        HEALTH = "health", "Health"
        ROLLBACK = "rollback", "Rollback"

    class Action(models.TextChoices):
        CREATE = "create", "Create"
        UPDATE = "update", "Update"
        DELETE = "delete", "Delete"
        QUERY = "query", "Query"

    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        SKIPPED = "skipped", "Skipped"

    attempt = models.ForeignKey(DeploymentAttempt, on_delete=models.CASCADE, related_name="steps")
    seq = models.PositiveIntegerField()
    phase = models.CharField(max_length=16, choices=Phase.choices)
    action = models.CharField(max_length=16, choices=Action.choices)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING)
    summary = models.CharField(max_length=300, blank=True)
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    retries = models.PositiveIntegerField(default=0)
    # The last try its Dokploy call sent (1 is the first request), and while it waits out a
    # backoff or a Retry-After, when try current_try + 1 goes out.
    current_try = models.PositiveSmallIntegerField(default=0)
    next_try_at = models.DateTimeField(null=True, blank=True)
    error_code = models.CharField(max_length=64, blank=True)
    error_message = models.TextField(blank=True, help_text="Redacted")
    api_response = models.JSONField(null=True, blank=True, help_text="Redacted")

    class Meta:
        ordering = ["attempt", "seq"]
        constraints = [
            models.UniqueConstraint(fields=["attempt", "seq"], name="step_seq_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.phase}.{self.action} {self.status}"


class DokployCall(models.Model):
    """One HTTP request to Dokploy: the raw material for latency percentiles and retry counts."""

    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    endpoint = models.CharField(max_length=64)
    method = models.CharField(max_length=8)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField()
    try_number = models.PositiveSmallIntegerField(default=1)
    error_code = models.CharField(max_length=64, blank=True)
    attempt = models.ForeignKey(
        DeploymentAttempt, null=True, blank=True, on_delete=models.SET_NULL, related_name="calls"
    )
    phase = models.CharField(max_length=16, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["endpoint", "created_at"], name="call_endpoint_idx")]

    def __str__(self) -> str:
        return f"{self.method} {self.endpoint} → {self.status_code or self.error_code}"


class BreakerState(models.Model):
    """The circuit breaker's shared state: one row per breaker, changed by conditional updates."""

    class State(models.TextChoices):
        CLOSED = "closed", "Closed"
        OPEN = "open", "Open"
        HALF_OPEN = "half_open", "Half-open"

    name = models.CharField(max_length=64, primary_key=True)
    state = models.CharField(max_length=16, choices=State.choices, default=State.CLOSED)
    consecutive_failures = models.PositiveIntegerField(default=0)
    consecutive_successes = models.PositiveIntegerField(default=0)
    opened_at = models.DateTimeField(null=True, blank=True)
    probe_started_at = models.DateTimeField(
        null=True, blank=True, help_text="Set while the single half-open test request is out"
    )
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.name}: {self.state}"


class OIDCIdentity(models.Model):
    """The person behind a portal account, as the sign-in provider names them.

    Accounts are found by the provider's `sub` at one issuer, never by email or username: email
    addresses change and usernames can be reused, while `sub` is stable and never reassigned.
    The account's username is fixed at the first sign-in, because the person's stack is named
    after it.
    """

    issuer = models.CharField(max_length=255)
    subject = models.CharField(max_length=255, help_text="The provider's `sub` claim")
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="oidc_identity"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "OpenID identity"
        verbose_name_plural = "OpenID identities"
        constraints = [
            models.UniqueConstraint(
                fields=["issuer", "subject"], name="oidc_identity_issuer_subject_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.subject} at {self.issuer}"


# --- Staff operations: the audit trail and the reconciler's records ---------------------------


class AppendOnly(Exception):
    """An audit record may be written once and never changed or deleted."""


class StaffActionType(models.TextChoices):
    RETRY = "retry", "Retry a failed attempt"
    CANCEL = "cancel", "Cancel an attempt"
    RESUME = "resume", "Resume a stuck attempt"
    REDEPLOY = "redeploy", "Redeploy"
    STOP = "stop", "Stop"
    START = "start", "Start"
    TEARDOWN = "teardown", "Tear down"
    REPAIR = "repair", "Queue a repair"
    RESET_BREAKER = "reset_breaker", "Reset the circuit breaker"
    REMOVE_ORPHAN = "remove_orphan", "Remove an orphan from Dokploy"


class StaffOutcome(models.TextChoices):
    DONE = "done", "Done"
    REFUSED = "refused", "Not done"
    FAILED = "failed", "Failed"


class StaffAction(models.Model):
    """One thing staff, or the reconciler, did (or asked for) to one object: append-only.

    Written by `stacks.lifecycle` in the same transaction as the change it records. Requests
    that were refused or failed are recorded too, with the reason why. Entries made by one
    admin submission or one reconciler run share a `batch`.
    """

    Action = StaffActionType
    Outcome = StaffOutcome

    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Kept as text too, so the entry still names its author if the account goes.
    actor_name = models.CharField(max_length=150)
    action = models.CharField(max_length=24, choices=Action.choices)
    target = models.CharField(max_length=300, help_text="What it was done to")
    stack = models.ForeignKey(
        Stack, null=True, blank=True, on_delete=models.PROTECT, related_name="staff_actions"
    )
    attempt = models.ForeignKey(
        DeploymentAttempt,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="staff_actions",
        help_text="The attempt acted on",
    )
    result_attempt = models.ForeignKey(
        DeploymentAttempt,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="staff_requests",
        help_text="The attempt this action queued or handed back to a worker",
    )
    finding = models.ForeignKey(
        "ReconcileFinding",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="staff_actions",
    )
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    message = models.TextField(blank=True, help_text="What happened, or why not")
    reason = models.CharField(max_length=500, help_text="Why, in the words of whoever asked")
    batch = models.UUIDField(db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        permissions = [
            ("operate_stacks", "Can act on stacks, attempts and the breaker from the admin"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(action__in=StaffActionType.values), name="staff_action_action_valid"
            ),
            models.CheckConstraint(
                condition=Q(outcome__in=StaffOutcome.values), name="staff_action_outcome_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.actor_name}: {self.get_action_display()} {self.target} ({self.outcome})"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise AppendOnly("staff actions are never changed")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        raise AppendOnly("staff actions are never deleted")


class ReconcileTrigger(models.TextChoices):
    SCHEDULE = "schedule", "Schedule"
    COMMAND = "command", "Command"


class ReconcileStatus(models.TextChoices):
    RUNNING = "running", "Running"
    OK = "ok", "Finished"
    FAILED = "failed", "Failed"


class ReconcileRun(models.Model):
    """One comparison of Dokploy with the database, and what it did with `fix`."""

    Trigger = ReconcileTrigger
    Status = ReconcileStatus

    started_at = models.DateTimeField(default=timezone.now, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    trigger = models.CharField(max_length=16, choices=Trigger.choices)
    fix = models.BooleanField(default=False, help_text="Removed orphans and queued repairs")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING)
    error_message = models.TextField(blank=True, help_text="Redacted")
    projects_seen = models.PositiveIntegerField(default=0, help_text="ai-stack-* projects")
    stacks_checked = models.PositiveIntegerField(default=0)
    protected = models.PositiveIntegerField(
        default=0, help_text="Projects left unexamined because an attempt on them is in progress"
    )

    class Meta:
        ordering = ["-started_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(trigger__in=ReconcileTrigger.values), name="reconcile_run_trigger_valid"
            ),
            models.CheckConstraint(
                condition=Q(status__in=ReconcileStatus.values), name="reconcile_run_status_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"Reconcile run #{self.pk} ({self.get_status_display().lower()})"

    @property
    def duration_seconds(self) -> float | None:
        if self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


class FindingKind(models.TextChoices):
    ORPHAN_PROJECT = "orphan_project", "Orphan project"
    ORPHAN_APPLICATION = "orphan_application", "Orphan application"
    APPLICATION_MISSING = "application_missing", "Application vanished"
    APPLICATION_ERROR = "application_error", "Application in error"
    DOMAIN_DRIFT = "domain_drift", "Domain drifted"
    IMAGE_DRIFT = "image_drift", "Image drifted"
    SHARED_NAME = "shared_name", "Project name shared"
    ORPHAN_VOLUME = "orphan_volume", "Workspace volume without a stack"


class FindingFix(models.TextChoices):
    NONE = "", "Not fixed"
    REMOVED = "removed", "Removed"
    KEPT = "kept", "Applications removed, project kept"
    REPAIR_QUEUED = "repair_queued", "Repair queued"
    SKIPPED = "skipped", "Left alone"
    FAILED = "failed", "Fix failed"


class ReconcileFinding(models.Model):
    """One difference between Dokploy and the database that a reconcile run found."""

    Kind = FindingKind
    Fix = FindingFix

    ORPHANS: ClassVar[frozenset[str]] = frozenset({Kind.ORPHAN_PROJECT, Kind.ORPHAN_APPLICATION})
    DRIFT: ClassVar[frozenset[str]] = frozenset(
        {Kind.APPLICATION_MISSING, Kind.APPLICATION_ERROR, Kind.DOMAIN_DRIFT, Kind.IMAGE_DRIFT}
    )

    run = models.ForeignKey(ReconcileRun, on_delete=models.CASCADE, related_name="findings")
    kind = models.CharField(max_length=24, choices=Kind.choices)
    stack = models.ForeignKey(
        Stack, null=True, blank=True, on_delete=models.SET_NULL, related_name="reconcile_findings"
    )
    username = models.CharField(max_length=100, blank=True, help_text="From the project's name")
    project_id = models.CharField(max_length=64, blank=True)
    project_name = models.CharField(max_length=255, blank=True)
    application_id = models.CharField(max_length=64, blank=True)
    application_name = models.CharField(max_length=255, blank=True)
    domain_id = models.CharField(max_length=64, blank=True)
    volume_name = models.CharField(max_length=255, blank=True)
    attempt = models.ForeignKey(
        DeploymentAttempt,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The attempt whose failed rollback left it behind",
    )
    detail = models.TextField()
    fix = models.CharField(max_length=16, choices=Fix.choices, default=Fix.NONE, blank=True)
    fix_detail = models.TextField(blank=True)
    fixed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["run", "id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(kind__in=FindingKind.values), name="reconcile_finding_kind_valid"
            ),
            models.CheckConstraint(
                condition=Q(fix__in=FindingFix.values), name="reconcile_finding_fix_valid"
            ),
        ]

    def __str__(self) -> str:
        subject = self.project_name or self.username or self.project_id
        return f"{self.get_kind_display()}: {subject}"
