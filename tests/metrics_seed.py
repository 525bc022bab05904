"""Seeded records for the metrics and dashboard tests, with known times and values."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.contrib.auth.models import User

from stacks.models import (
    BreakerEvent,
    BreakerState,
    DeploymentAttempt,
    DeploymentStep,
    DokployCall,
    ReconcileFinding,
    ReconcileRun,
    Stack,
)

Status = DeploymentAttempt.Status
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def stack_for(name: str, state: str = "new") -> Stack:
    user = User.objects.create_user(name)
    return Stack.objects.create(owner=user, username=name, observed_state=state)


def ended(
    stack: Stack,
    kind: str,
    status: str,
    *,
    queued: datetime,
    wait: float,
    took: float,
    not_before: datetime | None = None,
    phase: str = "",
    code: str = "",
    created: list[dict] | None = None,
    rollback_errors: list[str] | None = None,
) -> DeploymentAttempt:
    """An attempt queued at `queued`, started `wait` s after it could start, ended `took` s
    after its request."""
    row = DeploymentAttempt.objects.create(
        stack=stack, kind=kind, queued_at=queued, not_before=not_before
    )
    start = (not_before or queued) + timedelta(seconds=wait)
    row.transition(Status.RUNNING, started_at=start)
    failed = status != Status.SUCCEEDED
    row.transition(
        status,
        finished_at=queued + timedelta(seconds=took),
        failure_phase=phase,
        error_code=code,
        rollback_started_at=start + timedelta(seconds=1) if failed else None,
        created_resources=created or [],
        rollback_errors=rollback_errors or [],
    )
    return row


def step(attempt: DeploymentAttempt, seq: int, phase: str, retries: int) -> None:
    assert attempt.started_at is not None
    DeploymentStep.objects.create(
        attempt=attempt,
        seq=seq,
        phase=phase,
        action="create",
        status="succeeded",
        started_at=attempt.started_at,
        finished_at=attempt.started_at + timedelta(seconds=1),
        duration_ms=1000,
        retries=retries,
    )


def call(endpoint: str, ms: int, status: int | None, *, error: str = "", at: datetime) -> None:
    DokployCall.objects.create(
        created_at=at,
        endpoint=endpoint,
        method="POST",
        status_code=status,
        duration_ms=ms,
        error_code=error,
    )


def seed() -> dict[str, DeploymentAttempt]:
    """Records of every kind around NOW (the clock must stand at NOW): attempts that ended in
    every way, one stuck, two queued; steps with retries; Dokploy calls; the breaker's history;
    reconcile runs."""
    alice = stack_for("alice", "healthy")
    bob = stack_for("bob", "failed")
    carol = stack_for("carol", "stopped")
    dave = stack_for("dave", "provisioning")
    erin = stack_for("erin")
    fred = stack_for("fred")
    project = [{"kind": "project", "name": "ai-stack-bob", "id": "p1"}]
    a = {
        # Forty days ago: outside any window, still in the totals.
        "old": ended(
            alice, "create", Status.SUCCEEDED, queued=NOW - timedelta(days=40), wait=2, took=50
        ),
        "alice": ended(
            alice, "create", Status.SUCCEEDED, queued=NOW - timedelta(hours=2), wait=10, took=100
        ),
        "pull": ended(
            bob, "create", Status.ROLLED_BACK, queued=NOW - timedelta(hours=1), wait=3, took=50,
            phase="deploy", code="DEPLOY_FAILED", created=[{**project[0], "undone": True}],
        ),
        "domain": ended(
            bob, "create", Status.FAILED, queued=NOW - timedelta(minutes=50), wait=0.5, took=20,
            phase="domain", code="BAD_REQUEST", created=project,
            rollback_errors=["project ai-stack-bob: Dokploy answered 503"],
        ),
        "breaker": ended(
            carol, "start", Status.FAILED, queued=NOW - timedelta(minutes=45), wait=1, took=2,
            phase="project", code="BREAKER_OPEN",
        ),
        # Waited 600 s for the per-user limit, then 20 s for a worker; 1020 s in all.
        "redeploy": ended(
            alice, "redeploy", Status.SUCCEEDED, queued=NOW - timedelta(minutes=40), wait=20,
            took=1020, not_before=NOW - timedelta(minutes=30),
        ),
    }  # fmt: skip
    cancelled = DeploymentAttempt.objects.create(
        stack=carol, kind="stop", queued_at=NOW - timedelta(minutes=35)
    )
    cancelled.transition(
        Status.CANCELLED, finished_at=NOW - timedelta(minutes=34), error_code="CANCELLED"
    )
    stuck = DeploymentAttempt.objects.create(
        stack=dave, kind="create", queued_at=NOW - timedelta(minutes=20)
    )
    stuck.transition(
        Status.RUNNING, started_at=NOW - timedelta(minutes=19), lease_owner="w1",
        lease_expires_at=NOW - timedelta(minutes=1), deadline=NOW + timedelta(minutes=5),
    )  # fmt: skip
    DeploymentAttempt.objects.create(
        stack=erin, kind="create", queued_at=NOW - timedelta(minutes=5)
    )
    DeploymentAttempt.objects.create(
        stack=fred, kind="create", queued_at=NOW - timedelta(minutes=8),
        not_before=NOW + timedelta(minutes=10),
    )  # fmt: skip
    step(a["alice"], 1, "application", retries=2)
    step(a["pull"], 1, "deploy", retries=0)
    step(a["domain"], 1, "domain", retries=1)
    step(a["old"], 1, "application", retries=3)
    call("project.create", 40, 200, at=NOW - timedelta(hours=2))
    call("application.create", 120, 503, error="SERVICE_UNAVAILABLE", at=NOW - timedelta(hours=2))
    call("application.create", 130, 503, error="SERVICE_UNAVAILABLE", at=NOW - timedelta(hours=2))
    call("application.create", 30, 200, at=NOW - timedelta(hours=2))
    call("project.all", 800, 200, at=NOW - timedelta(minutes=20))
    call("domain.create", 10000, None, error="TIMEOUT", at=NOW - timedelta(minutes=50))
    call("project.create", 25, 200, at=NOW - timedelta(days=40))

    BreakerState.objects.create(name="dokploy", state="open", consecutive_failures=5)
    for minutes, old, new in (
        (10, "closed", "open"),
        (9, "open", "half_open"),
        (8, "half_open", "open"),
    ):
        BreakerEvent.objects.create(
            breaker="dokploy", created_at=NOW - timedelta(minutes=minutes), from_state=old,
            to_state=new, reason="test",
        )  # fmt: skip
    run = ReconcileRun.objects.create(
        trigger="schedule", status="ok", started_at=NOW - timedelta(minutes=20),
        finished_at=NOW - timedelta(minutes=20) + timedelta(seconds=3),
    )  # fmt: skip
    for kind, fix in (
        ("orphan_project", ""),
        ("orphan_application", "removed"),
        ("image_drift", ""),
    ):
        ReconcileFinding.objects.create(run=run, kind=kind, fix=fix, detail="x")
    ReconcileRun.objects.create(
        trigger="schedule", status="failed", started_at=NOW - timedelta(minutes=5),
        finished_at=NOW - timedelta(minutes=5) + timedelta(seconds=1), error_message="BREAKER_OPEN",
    )  # fmt: skip
    return a
