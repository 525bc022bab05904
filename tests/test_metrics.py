"""/metrics on seeded records: exact values, folding into the stored totals, a fixed number of
queries, and who may scrape."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.contrib.auth.models import User
from django.test import Client

from stacks import metrics
from stacks.models import (
    BreakerEvent,
    BreakerState,
    DeploymentAttempt,
    DeploymentStep,
    DokployCall,
    MetricsRollup,
    ReconcileFinding,
    ReconcileRun,
    Stack,
)
from tests.metrics_scrape import TOKEN, counters_and_histograms, nonzero, pick, scrape, value

Status = DeploymentAttempt.Status
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def clock():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.fixture
def token(settings) -> str:
    settings.METRICS_TOKEN = TOKEN
    settings.METRICS_ALLOWED_NETWORKS = []
    return TOKEN


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


@pytest.fixture
def seeded(db, clock) -> dict[str, DeploymentAttempt]:
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


def test_a_scrape_of_the_records_shows_exact_values(seeded, token):
    s = scrape()

    assert nonzero(s, "portal_deployments_total", "kind", "outcome") == {
        ("create", "succeeded"): 2,
        ("create", "rolled_back"): 1,
        ("create", "failed"): 1,
        ("start", "failed"): 1,
        ("redeploy", "succeeded"): 1,
        ("stop", "cancelled"): 1,
    }
    assert len(pick(s, "portal_deployments_total")) == 6 * 4  # every kind and outcome, even at 0
    assert nonzero(s, "portal_deployment_failures_total", "phase", "code") == {
        ("deploy", "DEPLOY_FAILED"): 1,
        ("domain", "BAD_REQUEST"): 1,
        ("project", "BREAKER_OPEN"): 1,
    }
    # The BREAKER_OPEN failure created nothing, so there was nothing to roll back.
    assert nonzero(s, "portal_rollbacks_total") == {("deploy",): 1, ("domain",): 1}
    assert nonzero(s, "portal_rollback_failures_total") == {("domain",): 1}
    assert value(s, "portal_rollback_failures_total", phase="health") == 0
    assert nonzero(s, "portal_deployment_retries_total") == {("application",): 5, ("domain",): 1}
    assert value(s, "portal_breaker_opens_total", breaker="dokploy") == 2

    # Request to end of the succeeded ones: 50 s and 100 s for creates, 1020 s for the redeploy.
    duration = "portal_deployment_duration_seconds"
    assert value(s, f"{duration}_count", kind="create") == 2
    assert value(s, f"{duration}_sum", kind="create") == 150
    assert value(s, f"{duration}_bucket", kind="create", le="30.0") == 0
    assert value(s, f"{duration}_bucket", kind="create", le="60.0") == 1
    assert value(s, f"{duration}_bucket", kind="create", le="120.0") == 2
    assert value(s, f"{duration}_bucket", kind="redeploy", le="900.0") == 0
    assert value(s, f"{duration}_bucket", kind="redeploy", le="1800.0") == 1
    assert value(s, f"{duration}_bucket", kind="redeploy", le="+Inf") == 1
    assert value(s, f"{duration}_sum", kind="redeploy") == 1020
    assert not pick(s, f"{duration}_count", kind="start")  # it failed

    wait = "portal_queue_wait_seconds"
    assert value(s, f"{wait}_count", kind="create") == 5  # four ended, and the stuck one
    assert value(s, f"{wait}_sum", kind="create") == 2 + 10 + 3 + 0.5 + 60
    assert value(s, f"{wait}_bucket", kind="create", le="1.0") == 1
    assert value(s, f"{wait}_bucket", kind="create", le="5.0") == 3
    assert value(s, f"{wait}_bucket", kind="create", le="15.0") == 4
    assert value(s, f"{wait}_bucket", kind="create", le="60.0") == 5
    assert value(s, f"{wait}_sum", kind="redeploy") == 20  # not the 600 s of the user's limit
    assert value(s, f"{wait}_bucket", kind="redeploy", le="15.0") == 0
    assert value(s, f"{wait}_bucket", kind="redeploy", le="30.0") == 1

    api = "portal_dokploy_request_duration_seconds"
    assert nonzero(s, f"{api}_count", "endpoint", "status") == {
        ("project.create", "200"): 2,
        ("application.create", "503"): 2,
        ("application.create", "200"): 1,
        ("project.all", "200"): 1,
        ("domain.create", "timeout"): 1,
    }
    assert value(s, f"{api}_sum", endpoint="application.create", status="503") == 0.25
    assert value(s, f"{api}_bucket", endpoint="project.create", status="200", le="0.025") == 1
    assert value(s, f"{api}_bucket", endpoint="project.create", status="200", le="0.05") == 2
    assert value(s, f"{api}_bucket", endpoint="application.create", status="503", le="0.1") == 0
    assert value(s, f"{api}_bucket", endpoint="application.create", status="503", le="0.25") == 2
    assert value(s, f"{api}_bucket", endpoint="domain.create", status="timeout", le="5.0") == 0
    assert value(s, f"{api}_bucket", endpoint="domain.create", status="timeout", le="10.0") == 1

    assert value(s, "portal_attempts", status="queued") == 2
    assert value(s, "portal_attempts", status="running") == 1
    assert value(s, "portal_attempts_stuck") == 1
    assert value(s, "portal_queue_oldest_wait_seconds") == 300  # erin's; fred's may not start yet
    assert nonzero(s, "portal_stacks") == {
        ("healthy",): 1,
        ("failed",): 1,
        ("stopped",): 1,
        ("provisioning",): 1,
        ("new",): 2,
    }
    assert value(s, "portal_stacks", state="absent") == 0
    assert nonzero(s, "portal_breaker_state", "breaker", "state") == {("dokploy", "open"): 1}
    assert value(s, "portal_breaker_state", breaker="dokploy", state="closed") == 0
    assert value(s, "portal_breaker_consecutive_failures", breaker="dokploy") == 5
    assert (
        value(s, "portal_breaker_last_change_timestamp_seconds", breaker="dokploy")
        == (NOW - timedelta(minutes=8)).timestamp()
    )
    assert value(s, "portal_reconcile_last_run_success") == 0
    assert value(s, "portal_reconcile_last_run_duration_seconds") == 1
    assert (
        value(s, "portal_reconcile_last_run_timestamp_seconds")
        == (NOW - timedelta(minutes=5) + timedelta(seconds=1)).timestamp()
    )
    assert (
        value(s, "portal_reconcile_last_success_timestamp_seconds")
        == (NOW - timedelta(minutes=20) + timedelta(seconds=3)).timestamp()
    )
    findings = pick(s, "portal_reconcile_findings")
    assert {(dict(key)["kind"], dict(key)["fixed"]): n for (_, key), n in findings.items()} == {
        ("orphan_project", "true"): 0,
        ("orphan_project", "false"): 1,
        ("orphan_application", "true"): 1,
        ("orphan_application", "false"): 0,
        ("image_drift", "true"): 0,
        ("image_drift", "false"): 1,
    }
    assert value(s, "portal_metrics_folded_until_timestamp_seconds") == 0


def test_folding_into_the_stored_totals_changes_no_value(seeded, token, clock):
    before = scrape()

    assert metrics.fold() == NOW - timedelta(minutes=5)
    assert metrics.fold() is None  # nothing new to fold yet

    after = scrape()
    assert after == {
        **before,
        ("portal_metrics_folded_until_timestamp_seconds", ()): (
            NOW - timedelta(minutes=5)
        ).timestamp(),
    }
    rollup = MetricsRollup.objects.get()
    assert rollup.through == NOW - timedelta(minutes=5)


def test_counters_never_go_down_as_time_passes_and_folds_run(seeded, token, clock):
    """Rows that leave every time window stay counted: the totals keep them."""
    before = counters_and_histograms(scrape())

    for days in (1, 2, 45, 90):
        clock.move_to(NOW + timedelta(days=days))
        metrics.fold()
        assert counters_and_histograms(scrape()) == before


def test_rows_that_end_after_a_fold_are_added_once(seeded, token, clock):
    metrics.fold()
    clock.move_to(NOW + timedelta(minutes=30))
    DeploymentAttempt.objects.get(stack__username="erin").transition(
        Status.CANCELLED, finished_at=NOW + timedelta(minutes=15), error_code="CANCELLED"
    )
    late = ended(
        Stack.objects.get(username="erin"), "teardown", Status.SUCCEEDED,
        queued=NOW + timedelta(minutes=20), wait=1, took=30,
    )  # fmt: skip

    live = scrape()
    metrics.fold()
    folded = scrape()
    clock.move_to(NOW + timedelta(hours=3))
    metrics.fold()

    assert value(live, "portal_deployments_total", kind="teardown", outcome="succeeded") == 1
    assert value(live, "portal_deployments_total", kind="create", outcome="cancelled") == 1
    assert counters_and_histograms(folded) == counters_and_histograms(live)
    assert counters_and_histograms(scrape()) == counters_and_histograms(live)
    assert late.finished_at is not None
    assert late.finished_at < MetricsRollup.objects.get().through


def test_a_fold_that_lost_the_race_adds_nothing(seeded, token, clock, monkeypatch):
    """Two folds read the same `through`; the compare-and-set lets only the first one write."""
    metrics.fold()
    read_by_both = MetricsRollup.objects.get()
    clock.move_to(NOW + timedelta(hours=1))
    assert metrics.fold() == NOW + timedelta(minutes=55)
    won = MetricsRollup.objects.get()
    # The second fold read the row before the first one wrote it.
    monkeypatch.setattr(
        MetricsRollup.objects, "get_or_create", lambda **kwargs: (read_by_both, False)
    )

    assert metrics.fold() is None
    assert MetricsRollup.objects.get().totals == won.totals
    assert MetricsRollup.objects.get().through == won.through


def test_a_scrape_takes_a_fixed_number_of_queries(db, clock, token, django_assert_max_num_queries):
    with django_assert_max_num_queries(metrics.QUERIES):
        scrape()


def test_the_same_number_of_queries_with_records_and_a_fold(
    seeded, token, clock, django_assert_max_num_queries
):
    metrics.fold()
    with django_assert_max_num_queries(metrics.QUERIES):
        scrape()


# --- Who may scrape -----------------------------------------------------------------------------


@pytest.fixture
def empty(db, settings):
    settings.METRICS_TOKEN = ""
    settings.METRICS_ALLOWED_NETWORKS = []
    settings.METRICS_TRUSTED_PROXIES = []
    settings.DEBUG = False


def get(**headers) -> int:
    return Client().get("/metrics", **headers).status_code


def test_not_configured_is_not_there(empty):
    assert get() == 404
    assert get(HTTP_AUTHORIZATION="Bearer anything") == 404


def test_not_configured_with_debug_serves_loopback_only(empty, settings):
    settings.DEBUG = True

    assert get(REMOTE_ADDR="127.0.0.1") == 200
    assert get(REMOTE_ADDR="::1") == 200
    assert get(REMOTE_ADDR="10.1.2.3") == 403


def test_the_token_is_required(empty, settings):
    settings.METRICS_TOKEN = TOKEN

    refused = Client().get("/metrics")

    assert refused.status_code == 401
    assert refused["WWW-Authenticate"] == 'Bearer realm="metrics"'
    assert b"portal_" not in refused.content
    assert get(HTTP_AUTHORIZATION=f"Bearer {TOKEN}x") == 401
    assert get(HTTP_AUTHORIZATION=f"Basic {TOKEN}") == 401
    assert get(HTTP_AUTHORIZATION=TOKEN) == 401
    assert get(HTTP_AUTHORIZATION=f"bearer {TOKEN}") == 200
    assert get(HTTP_AUTHORIZATION=f"Bearer {TOKEN}") == 200


def test_only_get(empty, settings):
    settings.METRICS_TOKEN = TOKEN

    answer = Client().post("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")

    assert answer.status_code == 405


def test_allowed_networks(empty, settings):
    settings.METRICS_ALLOWED_NETWORKS = ["10.0.0.0/8", "192.168.7.9/32", "fd00::/8"]

    assert get(REMOTE_ADDR="10.20.30.40") == 200
    assert get(REMOTE_ADDR="192.168.7.9") == 200
    assert get(REMOTE_ADDR="fd00::5") == 200
    assert get(REMOTE_ADDR="::ffff:10.0.0.1") == 200  # IPv4 on a dual-stack socket
    assert get(REMOTE_ADDR="192.168.7.10") == 403
    assert get(REMOTE_ADDR="8.8.8.8") == 403
    assert get(REMOTE_ADDR="") == 403


def test_forwarded_for_from_an_undeclared_proxy_is_never_believed(empty, settings):
    """The proxy's own address is inside the allowed network; the person behind it is not."""
    settings.METRICS_ALLOWED_NETWORKS = ["172.16.0.0/12"]

    assert get(REMOTE_ADDR="172.18.0.5") == 200
    assert get(REMOTE_ADDR="172.18.0.5", HTTP_X_FORWARDED_FOR="203.0.113.9") == 403
    assert get(REMOTE_ADDR="172.18.0.5", HTTP_X_FORWARDED_FOR="172.18.0.7") == 403
    assert get(REMOTE_ADDR="172.18.0.5", HTTP_FORWARDED="for=203.0.113.9") == 403
    assert get(REMOTE_ADDR="172.18.0.5", HTTP_X_REAL_IP="203.0.113.9") == 403


def test_forwarded_for_from_a_trusted_proxy(empty, settings):
    settings.METRICS_ALLOWED_NETWORKS = ["10.0.0.0/8"]
    settings.METRICS_TRUSTED_PROXIES = ["172.18.0.2"]
    proxy = {"REMOTE_ADDR": "172.18.0.2"}

    assert get(**proxy, HTTP_X_FORWARDED_FOR="10.1.1.1") == 200
    assert get(**proxy, HTTP_X_FORWARDED_FOR="203.0.113.9") == 403
    # A client cannot put an allowed address in front: the proxy appends the real one.
    assert get(**proxy, HTTP_X_FORWARDED_FOR="10.1.1.1, 203.0.113.9") == 403
    assert get(**proxy, HTTP_X_FORWARDED_FOR="nonsense, 10.1.1.1") == 200
    assert get(**proxy, HTTP_X_FORWARDED_FOR="10.1.1.1, nonsense") == 403
    assert get(**proxy) == 403  # the proxy itself is not in the allowed network


def test_a_chain_of_trusted_proxies(empty, settings):
    settings.METRICS_ALLOWED_NETWORKS = ["10.0.0.0/8"]
    settings.METRICS_TRUSTED_PROXIES = ["172.18.0.0/16", "192.0.2.1"]

    chain = "10.9.9.9, 192.0.2.1"
    assert get(REMOTE_ADDR="172.18.0.2", HTTP_X_FORWARDED_FOR=chain) == 200
    chain = "10.9.9.9, 198.51.100.1, 192.0.2.1"
    assert get(REMOTE_ADDR="172.18.0.2", HTTP_X_FORWARDED_FOR=chain) == 403


def test_token_and_networks_are_both_required_when_both_are_set(empty, settings):
    settings.METRICS_TOKEN = TOKEN
    settings.METRICS_ALLOWED_NETWORKS = ["10.0.0.0/8"]
    bearer = f"Bearer {TOKEN}"

    assert get(REMOTE_ADDR="10.0.0.3", HTTP_AUTHORIZATION=bearer) == 200
    assert get(REMOTE_ADDR="10.0.0.3") == 401
    assert get(REMOTE_ADDR="8.8.8.8", HTTP_AUTHORIZATION=bearer) == 403


def test_the_answer_is_never_cached(empty, settings):
    settings.METRICS_TOKEN = TOKEN

    answer = Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")

    assert answer["Cache-Control"] == "max-age=0, no-cache, no-store, must-revalidate, private"
