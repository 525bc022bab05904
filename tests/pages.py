"""Rows for page tests: stacks, attempts and steps in the states the pipeline leaves them in."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib.auth.models import User
from django.utils import timezone

from stacks.models import DeploymentAttempt, DeploymentStep, Stack

Status = DeploymentAttempt.Status


def make_stack(owner: User, **fields: Any) -> Stack:
    fields.setdefault("username", owner.username)
    fields.setdefault("host", f"{owner.username}.ai.example.test")
    fields.setdefault("image", "ghcr.io/ai-stack/opencode-ttyd:latest")
    return Stack.objects.create(owner=owner, **fields)


def deployed_stack(owner: User, **fields: Any) -> Stack:
    """A stack the pipeline created and found healthy."""
    now = timezone.now()
    fields = {
        "project_id": "p1",
        "environment_id": "e1",
        "application_id": "a1",
        "app_name": f"opencode-{owner.username}-abc123",
        "domain_id": "d1",
        "observed_state": Stack.Observed.HEALTHY,
        "last_healthy_at": now,
        **fields,
    }
    return make_stack(owner, **fields)


def attempt(stack: Stack, status: str = Status.QUEUED, **fields: Any) -> DeploymentAttempt:
    """An attempt in `status`, moved there along the state machine like the pipeline does."""
    fields.setdefault("kind", DeploymentAttempt.Kind.CREATE)
    fields.setdefault("requested_by", stack.owner)
    if status in (Status.FAILED, Status.ROLLED_BACK, Status.CANCELLED):
        # The database wants every failure to carry its cause.
        fields.setdefault("error_code", "CANCELLED" if status == Status.CANCELLED else "UNHEALTHY")
    row = DeploymentAttempt.objects.create(stack=stack, **fields)
    if status != Status.QUEUED:
        if status != Status.CANCELLED:
            # Held by a live worker elsewhere, so nobody takes it over.
            row.transition(
                Status.RUNNING,
                lease_owner="worker-host:4242:0a1b2c3d",
                lease_expires_at=timezone.now() + timedelta(minutes=5),
            )
        if status != Status.RUNNING:
            row.transition(status)
    return row


def finished(
    stack: Stack, seconds: float, kind: str = "create", ago: float = 600
) -> DeploymentAttempt:
    """A succeeded attempt that ran `seconds`, finished `ago` seconds before now."""
    row = attempt(stack, Status.SUCCEEDED, kind=kind)
    end = timezone.now() - timedelta(seconds=ago)
    DeploymentAttempt.objects.filter(pk=row.pk).update(
        started_at=end - timedelta(seconds=seconds), finished_at=end
    )
    row.refresh_from_db()
    return row


def step(
    row: DeploymentAttempt, phase: str, status: str = "succeeded", **fields: Any
) -> DeploymentStep:
    fields.setdefault("action", "create")
    fields.setdefault("summary", f"{phase} {fields['action']}")
    if status != "running":
        fields.setdefault("duration_ms", 1200)
        fields.setdefault("finished_at", timezone.now())
    seq = row.steps.count() + 1
    return DeploymentStep.objects.create(attempt=row, seq=seq, phase=phase, status=status, **fields)
