"""Failure analysis on seeded records (exact counts, bounded queries), the staff pages, and the
admin's list filters, search and links."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import pytest
import time_machine
from django.contrib.auth.models import User
from django.test import Client

from stacks import staff
from stacks.models import (
    DeploymentAttempt,
    DeploymentStep,
    DokployCall,
    ReconcileFinding,
    ReconcileRun,
    Stack,
)

Status = DeploymentAttempt.Status
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def clock():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@dataclass
class Seed:
    stacks: dict[str, Stack]
    attempts: dict[str, DeploymentAttempt]


def stack_for(name: str, **fields) -> Stack:
    user = User.objects.create_user(name)
    return Stack.objects.create(owner=user, username=name, host=f"{name}.ai.example.test", **fields)


def attempt(
    stack: Stack,
    kind: str,
    status: str,
    *,
    hours_ago: float,
    minutes: float = 2,
    phase: str = "",
    code: str = "",
    message: str = "",
    rollback_errors: list[str] | None = None,
) -> DeploymentAttempt:
    queued = NOW - timedelta(hours=hours_ago)
    row = DeploymentAttempt.objects.create(stack=stack, kind=kind, queued_at=queued)
    if status == Status.CANCELLED:
        row.transition(
            Status.CANCELLED, finished_at=queued + timedelta(seconds=5), error_code="CANCELLED"
        )
        return row
    row.transition(Status.RUNNING, started_at=queued)
    if status != Status.RUNNING:
        row.transition(
            status,
            finished_at=queued + timedelta(minutes=minutes),
            failure_phase=phase,
            error_code=code,
            error_message=message,
            rollback_errors=rollback_errors or [],
        )
    return row


def step(row: DeploymentAttempt, seq: int, phase: str, ms: int, **fields) -> DeploymentStep:
    fields.setdefault("status", "succeeded")
    return DeploymentStep.objects.create(
        attempt=row, seq=seq, phase=phase, action="update", duration_ms=ms, **fields
    )


def call(row: DeploymentAttempt, phase: str, *, try_number: int = 1, error: str = "") -> None:
    DokployCall.objects.create(
        attempt=row,
        phase=phase,
        endpoint=f"{phase}.x",
        method="POST",
        status_code=503 if error else 200,
        duration_ms=10,
        try_number=try_number,
        error_code=error,
    )


@pytest.fixture
def seed(db, clock) -> Seed:
    """Eight attempts in the last seven days and one older failure that must not count."""
    s = {name: stack_for(name) for name in ("alice", "bob", "carol", "dave")}
    a: dict[str, DeploymentAttempt] = {}
    a["alice_ok"] = attempt(s["alice"], "create", Status.SUCCEEDED, hours_ago=100)
    for seq, (phase, ms) in enumerate(
        [
            ("project", 100),
            ("application", 200),
            ("deploy", 3000),
            ("health", 500),
            ("health", 700),
        ],
        start=1,
    ):
        step(a["alice_ok"], seq, phase, ms)
    call(a["alice_ok"], "project")
    call(a["alice_ok"], "deploy")

    pull = "pull access denied for ghcr.io/ai-stack/opencode-ttyd"
    a["bob_pull"] = attempt(
        s["bob"], "create", Status.ROLLED_BACK, hours_ago=90,
        phase="deploy", code="DEPLOY_FAILED", message=pull,
    )  # fmt: skip
    step(
        a["bob_pull"], 1, "deploy", 4000, status="failed", error_code="DEPLOY_FAILED",
        error_message=pull, api_response={"log_tail": "Pulling...\nError: pull access denied"},
    )  # fmt: skip
    step(a["bob_pull"], 2, "rollback", 50)
    step(a["bob_pull"], 3, "rollback", 70)
    call(a["bob_pull"], "deploy", try_number=1, error="SERVICE_UNAVAILABLE")
    call(a["bob_pull"], "deploy", try_number=2)

    a["carol_pull"] = attempt(
        s["carol"], "create", Status.ROLLED_BACK, hours_ago=80,
        phase="deploy", code="DEPLOY_FAILED", message=pull,
    )  # fmt: skip
    step(a["carol_pull"], 1, "deploy", 2000, status="failed", error_code="DEPLOY_FAILED")
    a["dave_manifest"] = attempt(
        s["dave"], "create", Status.ROLLED_BACK, hours_ago=70,
        phase="deploy", code="DEPLOY_FAILED", message="manifest unknown",
    )  # fmt: skip
    step(a["dave_manifest"], 1, "deploy", 1000, status="failed", error_code="DEPLOY_FAILED")
    a["dave_domain"] = attempt(
        s["dave"], "create", Status.FAILED, hours_ago=60,
        phase="domain", code="BAD_REQUEST", message="domain.create answered 400",
        rollback_errors=["project ai-stack-dave: Dokploy answered 503"],
    )  # fmt: skip
    step(a["dave_domain"], 1, "domain", 300, status="failed", error_code="BAD_REQUEST", retries=2)
    call(a["dave_domain"], "domain", try_number=1, error="SERVICE_UNAVAILABLE")
    call(a["dave_domain"], "domain", try_number=2, error="SERVICE_UNAVAILABLE")
    call(a["dave_domain"], "domain", try_number=3, error="BAD_REQUEST")
    a["alice_pull"] = attempt(
        s["alice"], "redeploy", Status.ROLLED_BACK, hours_ago=50,
        phase="deploy", code="DEPLOY_FAILED", message=pull,
    )  # fmt: skip
    step(
        a["alice_pull"], 1, "deploy", 5000, status="failed", error_code="DEPLOY_FAILED",
        api_response={"deployment": {}, "log_tail": "docker pull: denied (alice)"},
    )  # fmt: skip
    a["bob_cancel"] = attempt(s["bob"], "stop", Status.CANCELLED, hours_ago=40)
    a["carol_running"] = attempt(s["carol"], "redeploy", Status.RUNNING, hours_ago=1)
    step(a["carol_running"], 1, "project", 120)
    # Ten days ago: outside the period.
    a["old"] = attempt(
        s["bob"], "create", Status.FAILED, hours_ago=240,
        phase="project", code="UNAUTHORIZED", message="old",
    )  # fmt: skip
    step(a["old"], 1, "project", 9999, status="failed", error_code="UNAUTHORIZED")
    call(a["old"], "project", error="UNAUTHORIZED")
    return Seed(s, a)


def test_totals(seed):
    totals = staff.totals(staff.Period.last("7d"))

    assert totals == staff.Totals(
        attempts=8, succeeded=1, failed=1, rolled_back=4, cancelled=1, active=1
    )
    assert totals.failures == 5
    assert totals.failure_percent == 62.5


def test_failures_grouped_by_phase_and_code(seed):
    groups = staff.failure_groups(staff.Period.last("7d"))

    assert [(g.phase, g.error_code, g.count, g.share) for g in groups] == [
        ("deploy", "DEPLOY_FAILED", 4, 0.5),
        ("domain", "BAD_REQUEST", 1, 0.125),
    ]
    deploy = groups[0]
    a = seed.attempts
    assert deploy.first_seen == a["bob_pull"].finished_at
    assert deploy.last_seen == a["alice_pull"].finished_at
    assert [e.attempt_id for e in deploy.examples] == [
        a["alice_pull"].pk,
        a["dave_manifest"].pk,
        a["carol_pull"].pk,
    ]
    pull = "pull access denied for ghcr.io/ai-stack/opencode-ttyd"
    assert [(m.text, m.count) for m in deploy.messages] == [(pull, 3), ("manifest unknown", 1)]
    domain = groups[1]
    assert [(e.username, e.kind, e.status) for e in domain.examples] == [
        ("dave", "create", "failed")
    ]
    assert domain.examples[0].message == "domain.create answered 400"


def test_examples_carry_dokploys_message_and_the_log_tail(seed):
    period = staff.Period(NOW - timedelta(hours=95), NOW - timedelta(hours=85), "bob's failure")

    (group,) = staff.failure_groups(period)

    (example,) = group.examples
    assert example.attempt_id == seed.attempts["bob_pull"].pk
    assert example.log_tail == "Pulling...\nError: pull access denied"
    assert example.message == "pull access denied for ghcr.io/ai-stack/opencode-ttyd"


def test_phase_stats_retries_rollbacks_and_time(seed):
    stats = {p.phase: p for p in staff.phase_stats(staff.Period.last("7d"))}

    assert set(stats) == {"project", "application", "domain", "deploy", "health", "rollback"}
    deploy = stats["deploy"]
    assert (deploy.attempts, deploy.steps, deploy.failed_steps) == (5, 5, 4)
    assert (deploy.total_ms, deploy.average_ms, deploy.slowest_step_ms) == (15000, 3000, 5000)
    assert (deploy.rolled_back, deploy.rollback_failed) == (4, 0)
    assert (deploy.calls, deploy.retried_calls, deploy.failed_calls) == (3, 1, 1)
    domain = stats["domain"]
    assert (domain.retries, domain.rolled_back, domain.rollback_failed) == (2, 0, 1)
    assert (domain.calls, domain.retried_calls, domain.failed_calls) == (3, 2, 3)
    health = stats["health"]
    assert (health.attempts, health.steps, health.total_ms, health.average_ms) == (1, 2, 1200, 1200)
    assert stats["project"].total_ms == 220  # the older attempt's 9999 ms is outside
    assert stats["rollback"].steps == 2


def test_slowest_phase_first(seed):
    phases = [p.phase for p in staff.phase_stats(staff.Period.last("7d"))]

    assert phases == ["deploy", "health", "domain", "application", "rollback", "project"]


def test_slowest_steps(seed):
    slowest = staff.slowest_steps(staff.Period.last("7d"), limit=3)

    assert [(s.username, s.phase, s.duration_ms) for s in slowest] == [
        ("alice", "deploy", 5000),
        ("bob", "deploy", 4000),
        ("alice", "deploy", 3000),
    ]


def test_the_report_takes_a_bounded_number_of_queries(seed, django_assert_max_num_queries):
    with django_assert_max_num_queries(9):
        report = staff.failure_report(staff.Period.last("30d"))

    assert report.totals.attempts == 9  # the older failure is inside thirty days
    assert len(report.groups) == 3


def test_an_empty_period(db, clock):
    report = staff.failure_report(staff.Period.last("24h"))

    assert report.totals == staff.Totals(0, 0, 0, 0, 0, 0)
    assert (report.groups, report.phases, report.slowest) == ([], [], [])
    assert report.totals.failure_percent == 0.0


# --- Pages ------------------------------------------------------------------------------------


@pytest.fixture
def staff_client(db) -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("root", "root@example.com", "password"))
    return client


def test_failure_analysis_page_for_staff_only(seed, staff_client, django_assert_max_num_queries):
    outsider = Client()
    outsider.force_login(User.objects.create_user("mallory", password="password"))

    refused = outsider.get("/admin/stacks/deploymentattempt/failures/")
    with django_assert_max_num_queries(16):
        page = staff_client.get("/admin/stacks/deploymentattempt/failures/?period=7d")

    assert refused.status_code == 302
    assert refused["Location"].startswith("/admin/login/")
    assert page.status_code == 200
    text = page.content.decode()
    assert "Failure analysis" in text
    assert "DEPLOY_FAILED" in text and "BAD_REQUEST" in text
    assert "50.0 %" in text and "62.5 %" in text
    assert "docker pull: denied (alice)" in text  # the newest example's build-log tail
    assert "manifest unknown" in text
    assert "UNAUTHORIZED" not in text  # ten days ago


def test_failure_analysis_page_period_choice(seed, staff_client):
    page = staff_client.get("/admin/stacks/deploymentattempt/failures/?period=30d")

    assert page.context["report"].totals.attempts == 9
    assert "UNAUTHORIZED" in page.content.decode()


def test_reconciler_page_shows_the_last_finished_run(db, staff_client):
    alice = stack_for("alice", project_id="p-alice")
    done = ReconcileRun.objects.create(trigger="schedule", status="ok", projects_seen=3)
    ReconcileFinding.objects.create(
        run=done, kind="orphan_project", username="ghost", project_id="p-ghost",
        project_name="ai-stack-ghost", detail="No stack is named ghost; it is empty",
    )  # fmt: skip
    ReconcileFinding.objects.create(
        run=done, kind="image_drift", stack=alice, username="alice",
        detail="Dokploy runs image x; the stack records y",
    )  # fmt: skip
    ReconcileRun.objects.create(
        trigger="schedule", status="failed", error_message="BREAKER_OPEN: Dokploy unavailable"
    )

    page = staff_client.get("/admin/stacks/reconcilerun/latest/")

    assert page.status_code == 200
    assert page.context["run"] == done
    text = page.content.decode()
    assert "No stack is named ghost; it is empty" in text
    assert "Dokploy runs image x; the stack records y" in text
    assert "did not finish: BREAKER_OPEN: Dokploy unavailable" in text
    # Orphans first, then drift.
    assert [(c.kind, c.count) for c in page.context["counts"]] == [
        ("orphan_project", 1),
        ("image_drift", 1),
    ]
    assert [f.kind for f in page.context["findings"]] == ["orphan_project", "image_drift"]


# --- List filters, search and links -----------------------------------------------------------


def changelist_ids(client: Client, url: str) -> set[int]:
    response = client.get(url)
    assert response.status_code == 200
    return {row.pk for row in response.context["cl"].result_list}


def test_stuck_filter(seed, staff_client, clock):
    running = seed.attempts["carol_running"]
    DeploymentAttempt.objects.filter(pk=running.pk).update(
        lease_owner="w", lease_expires_at=NOW + timedelta(seconds=20)
    )
    assert changelist_ids(staff_client, "/admin/stacks/deploymentattempt/?stuck=yes") == set()

    DeploymentAttempt.objects.filter(pk=running.pk).update(
        lease_expires_at=NOW - timedelta(seconds=1)
    )
    assert changelist_ids(staff_client, "/admin/stacks/deploymentattempt/?stuck=yes") == {
        running.pk
    }


def test_attempt_filters_by_status_kind_phase_code_and_date(seed, staff_client):
    url = "/admin/stacks/deploymentattempt/"
    a = seed.attempts
    by_phase = f"{url}?failure_phase__exact=domain&error_code__exact=BAD_REQUEST"
    assert changelist_ids(staff_client, by_phase) == {a["dave_domain"].pk}
    assert changelist_ids(staff_client, f"{url}?kind__exact=stop") == {a["bob_cancel"].pk}
    assert changelist_ids(staff_client, f"{url}?status__exact=running") == {a["carol_running"].pk}
    since = urlencode({"queued_at__gte": (NOW - timedelta(days=7)).isoformat()})
    in_week = changelist_ids(staff_client, f"{url}?{since}")
    assert a["old"].pk not in in_week
    assert len(in_week) == 8


def test_has_orphans_filter_reads_the_latest_run(db, staff_client):
    alice, bob = stack_for("alice"), stack_for("bob")
    old = ReconcileRun.objects.create(trigger="schedule", status="ok")
    ReconcileFinding.objects.create(run=old, kind="orphan_project", stack=bob, detail="old")
    latest = ReconcileRun.objects.create(trigger="schedule", status="ok")
    ReconcileFinding.objects.create(run=latest, kind="orphan_application", stack=alice, detail="x")
    ReconcileFinding.objects.create(run=latest, kind="image_drift", stack=bob, detail="drift")

    assert changelist_ids(staff_client, "/admin/stacks/stack/?orphans=yes") == {alice.pk}
    assert changelist_ids(staff_client, "/admin/stacks/stack/?orphans=no") == {bob.pk}


def test_search_by_username_and_every_dokploy_id(db, staff_client):
    alice = stack_for(
        "alice", project_id="proj-a1", environment_id="env-a1", application_id="app-a1",
        app_name="opencode-alice-x1y2z3", domain_id="dom-a1",
    )  # fmt: skip
    stack_for("bob", project_id="proj-b1")
    created = DeploymentAttempt.objects.create(stack=alice, kind="create")
    for term in ("alice", "proj-a1", "env-a1", "app-a1", "opencode-alice-x1y2z3", "dom-a1"):
        assert changelist_ids(staff_client, f"/admin/stacks/stack/?q={term}") == {alice.pk}
        assert changelist_ids(staff_client, f"/admin/stacks/deploymentattempt/?q={term}") == {
            created.pk
        }


def test_links_between_a_stack_its_attempts_and_calls(seed, staff_client):
    bob = seed.stacks["bob"]
    page = staff_client.get(f"/admin/stacks/stack/{bob.pk}/change/").content.decode()

    attempts_url = f"/admin/stacks/deploymentattempt/?stack__id__exact={bob.pk}"
    calls_url = f"/admin/stacks/dokploycall/?attempt__stack__id__exact={bob.pk}"
    assert attempts_url in page and calls_url in page
    assert changelist_ids(staff_client, attempts_url) == {
        seed.attempts[k].pk for k in ("bob_pull", "bob_cancel", "old")
    }
    bob_calls = changelist_ids(staff_client, calls_url)
    assert bob_calls == set(
        DokployCall.objects.filter(attempt__stack=bob).values_list("pk", flat=True)
    )
    assert len(bob_calls) == 3
