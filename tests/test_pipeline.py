"""Whole-pipeline runs against the Dokploy simulator."""

from __future__ import annotations

import json
import logging
import threading
import time
from datetime import timedelta

import pytest
import time_machine
from django.contrib.auth.models import User
from django.utils import timezone

from stacks import lifecycle, pipeline, queueing
from stacks.models import BreakerState, DeploymentAttempt, DeploymentStep, Stack
from tests.crashes import WorkerKilled, kill_worker_after_created

Status = DeploymentAttempt.Status


def deploy(user: User, kind: str = "create") -> DeploymentAttempt:
    """Queue an attempt; with the test cluster in sync mode it runs to the end right away."""
    attempt = lifecycle.request_attempt(user, kind)
    attempt.refresh_from_db()
    return attempt


def mutations(sim) -> list[str]:
    return [call["endpoint"] for call in sim.calls() if call["method"] == "POST"]


def only(rows: dict[str, dict]) -> dict:
    assert len(rows) == 1, rows
    return next(iter(rows.values()))


def test_happy_path_creates_a_healthy_stack(dokploy, alice):
    attempt = deploy(alice)

    assert attempt.status == Status.SUCCEEDED, attempt.error_message
    state = dokploy.state()
    project = only(state["projects"])
    application = only(state["applications"])
    domain = only(state["domains"])
    assert project["name"] == "ai-stack-alice"
    assert project["description"] == "AI Stack for alice"
    assert application["name"] == "opencode-alice"
    assert application["appName"].startswith("opencode-alice-")
    assert application["sourceType"] == "docker"
    assert application["dockerImage"] == "ghcr.io/ai-stack/opencode-ttyd:latest"
    assert domain["host"] == "alice.ai.example.test"
    assert (domain["https"], domain["port"]) == (True, 8080)
    assert (domain["certificateType"], domain["domainType"]) == ("letsencrypt", "application")

    stack = Stack.objects.get(owner=alice)
    assert stack.observed_state == Stack.Observed.HEALTHY
    assert stack.project_id == project["projectId"]
    assert stack.application_id == application["applicationId"]
    assert stack.app_name == application["appName"]
    assert stack.domain_id == domain["domainId"]
    assert stack.public_url == "https://alice.ai.example.test"
    assert mutations(dokploy) == [
        "project.create",
        "application.create",
        "application.saveDockerProvider",
        "mounts.create",
        "domain.create",
        "application.deploy",
    ]
    phases = list(attempt.steps.values_list("phase", "action", "status"))
    assert phases[:8] == [
        ("project", "create", "succeeded"),
        ("environment", "query", "skipped"),
        ("application", "create", "succeeded"),
        ("application", "update", "skipped"),  # no limits configured
        ("application", "update", "succeeded"),
        ("volume", "create", "succeeded"),
        ("domain", "create", "succeeded"),
        ("deploy", "update", "succeeded"),
    ]
    assert {p for p, _, s in phases[8:]} == {"health"}
    mount = only(dokploy.state()["mounts"])
    assert attempt.created_resources == [
        {"kind": "project", "name": "ai-stack-alice", "id": project["projectId"]},
        {"kind": "application", "name": "opencode-alice", "id": application["applicationId"]},
        {"kind": "mount", "name": "/workspace", "id": mount["mountId"]},
        {"kind": "domain", "name": "alice.ai.example.test", "id": domain["domainId"]},
    ]
    assert all(step.duration_ms is not None for step in attempt.steps.all())


def test_rerun_creates_nothing_new(dokploy, alice):
    assert deploy(alice).status == Status.SUCCEEDED
    before = dokploy.state()
    calls_before = len(dokploy.calls())

    again = deploy(alice)

    assert again.status == Status.SUCCEEDED
    after = dokploy.state()
    for kind in ("projects", "applications", "domains", "deployments"):
        assert after[kind].keys() == before[kind].keys(), kind
    second_run = dokploy.calls()[calls_before:]
    assert [c["endpoint"] for c in second_run if c["method"] == "POST"] == []
    assert again.created_resources == []
    assert again.steps.get(phase="deploy").status == DeploymentStep.Status.SKIPPED


def test_transient_5xx_is_retried(dokploy, alice):
    dokploy.fail("application.create", times=2, status=503)

    attempt = deploy(alice)

    assert attempt.status == Status.SUCCEEDED
    assert len(dokploy.state()["applications"]) == 1
    step = attempt.steps.get(phase="application", action="create")
    assert step.retries == 2


def test_429_waits_for_retry_after(dokploy, alice):
    dokploy.fail("domain.create", times=1, status=429, retry_after=1)

    started = timezone.now()
    attempt = deploy(alice)

    assert attempt.status == Status.SUCCEEDED
    assert attempt.steps.get(phase="domain").retries == 1
    assert (timezone.now() - started).total_seconds() >= 1.0
    assert len(dokploy.state()["domains"]) == 1


def test_401_fails_fast_and_creates_nothing(dokploy, alice, settings):
    settings.DOKPLOY_API_KEY = "wrong-key-0000000000"

    attempt = deploy(alice)

    assert attempt.status == Status.FAILED
    assert attempt.failure_phase == "project"
    assert attempt.error_code == "UNAUTHORIZED"
    assert len(dokploy.calls()) == 1
    assert dokploy.state()["projects"] == {}


def test_400_at_domain_rolls_everything_back_application_first(dokploy, alice):
    dokploy.fail("domain.create", times=1, status=400)

    attempt = deploy(alice)

    assert attempt.status == Status.ROLLED_BACK
    assert attempt.failure_phase == "domain"
    assert attempt.error_code == "BAD_REQUEST"
    state = dokploy.state()
    assert state["projects"] == {} and state["applications"] == {} and state["domains"] == {}
    assert state["services"] == {}
    posts = mutations(dokploy)
    assert posts.count("domain.create") == 1
    assert posts.index("application.delete") < posts.index("project.remove")
    rollback = list(
        attempt.steps.filter(phase="rollback").values_list("action", "status", "summary")
    )
    assert rollback == [
        ("delete", "skipped", "Domain alice.ai.example.test goes with its application"),
        ("delete", "skipped", "Mount /workspace goes with its application"),
        ("delete", "succeeded", "Deleted application opencode-alice"),
        ("delete", "succeeded", "Removed project ai-stack-alice"),
    ]
    stack = Stack.objects.get(owner=alice)
    assert (stack.project_id, stack.application_id, stack.domain_id) == ("", "", "")
    assert stack.observed_state == Stack.Observed.FAILED


def test_create_that_fails_after_taking_effect_makes_no_duplicate(dokploy, alice):
    dokploy.fail("project.create", times=1, status=500, after_effect=True)
    dokploy.fail("application.create", times=1, status=502, after_effect=True)

    attempt = deploy(alice)

    assert attempt.status == Status.SUCCEEDED
    state = dokploy.state()
    assert len(state["projects"]) == 1
    assert len(state["applications"]) == 1
    assert dokploy.call_count("project.create") == 1
    assert dokploy.call_count("application.create") == 1


def test_deploy_ending_in_error_is_reported_and_rolled_back(dokploy, alice):
    dokploy.fail_deploy("opencode-alice", message="pull access denied for the image")

    attempt = deploy(alice)

    assert attempt.status == Status.ROLLED_BACK
    assert attempt.failure_phase == "deploy"
    assert attempt.error_code == "DEPLOY_FAILED"
    step = attempt.steps.get(phase="deploy")
    assert "pull access denied" in json.dumps(step.api_response)
    assert dokploy.state()["applications"] == {}


def test_stack_that_never_gets_healthy_fails(dokploy, alice):
    dokploy.unhealthy("alice.ai.example.test")

    attempt = deploy(alice)

    assert attempt.status == Status.ROLLED_BACK
    assert attempt.failure_phase == "health"
    assert attempt.error_code == "UNHEALTHY"
    health = attempt.steps.get(phase="health", summary__contains="not healthy")
    assert health.api_response is not None
    assert health.api_response["tries"] > 1
    assert dokploy.state()["projects"] == {}


def test_pre_existing_failed_application_is_recreated(dokploy, alice):
    dokploy.fail_deploy("opencode-alice", message="boom")
    assert deploy(alice).status == Status.ROLLED_BACK
    # Leave a failed application behind, as a crashed earlier tool would.
    from stacks.dokploy.client import DokployClient

    client = DokployClient.from_settings()
    created = client.project_create(name="ai-stack-alice", description="AI Stack for alice")
    app = client.application_create(
        name="opencode-alice", environment_id=created.environment.environment_id
    )
    client.application_save_docker_provider(application_id=app.application_id, docker_image="x")
    dokploy.fail_deploy("opencode-alice", message="boom")
    client.application_deploy(app.application_id)
    dokploy.wait_idle()
    assert client.application_one(app.application_id).application_status == "error"

    attempt = deploy(alice)

    assert attempt.status == Status.SUCCEEDED, attempt.error_message
    apps = dokploy.state()["applications"]
    assert len(apps) == 1
    assert app.application_id not in apps
    assert len(dokploy.state()["projects"]) == 1  # the existing project was reused
    assert attempt.created_resources[0]["kind"] == "application"


def test_domain_with_different_config_is_updated(dokploy, alice):
    assert deploy(alice).status == Status.SUCCEEDED
    stack = Stack.objects.get(owner=alice)
    from stacks.dokploy.client import DokployClient

    DokployClient.from_settings().domain_update(
        stack.domain_id,
        host=stack.host,
        https=False,
        port=3000,
        certificate_type="none",
        domain_type="application",
        path="/",
    )

    attempt = deploy(alice)

    assert attempt.status == Status.SUCCEEDED
    domain = only(dokploy.state()["domains"])
    assert (domain["https"], domain["port"], domain["certificateType"]) == (
        True,
        8080,
        "letsencrypt",
    )
    assert attempt.steps.get(phase="domain").action == "update"


def kill_worker_after_application_created(monkeypatch, attempt: DeploymentAttempt) -> None:
    kill_worker_after_created(monkeypatch, attempt, "application")


def test_worker_killed_between_dokploy_and_commit_then_resumed(dokploy, alice, monkeypatch):
    attempt = lifecycle.request_attempt(alice, "create", dispatch=False)
    kill_worker_after_application_created(monkeypatch, attempt)
    attempt.refresh_from_db()
    assert attempt.status == Status.RUNNING
    assert len(dokploy.state()["applications"]) == 1
    assert (
        Stack.objects.get(owner=alice).application_id == ""
    )  # Dokploy answered, we did not commit

    # While the lease is live nobody else may run it; once it expires a new request takes over.
    assert pipeline.run_attempt(attempt.pk, owner="worker-2") is None
    DeploymentAttempt.objects.filter(pk=attempt.pk).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    taken_over = lifecycle.request_attempt(alice, "create")

    assert taken_over.pk == attempt.pk
    attempt.refresh_from_db()
    assert attempt.status == Status.SUCCEEDED, attempt.error_message
    assert attempt.runs == 2
    state = dokploy.state()
    assert (len(state["projects"]), len(state["applications"]), len(state["domains"])) == (1, 1, 1)
    assert dokploy.call_count("application.create") == 1
    assert [r["kind"] for r in attempt.created_resources] == [
        "project",
        "application",
        "mount",
        "domain",
    ]
    assert all(r["id"] for r in attempt.created_resources)
    interrupted = attempt.steps.get(error_code="INTERRUPTED")
    assert (interrupted.phase, interrupted.status) == ("application", "failed")
    assert not attempt.steps.filter(status="running").exists()


def test_unexpected_error_inside_a_step_fails_it_and_rolls_back(dokploy, alice, monkeypatch):
    from stacks.dokploy.client import DokployClient

    def unreadable_answer(self, **fields):
        raise KeyError("domainId")

    monkeypatch.setattr(DokployClient, "domain_create", unreadable_answer)

    attempt = deploy(alice)

    assert attempt.status == Status.ROLLED_BACK
    assert attempt.error_code == "INTERNAL_ERROR"
    step = attempt.steps.get(phase="domain")
    assert step.status == "failed"
    assert "KeyError" in step.error_message
    assert dokploy.state()["applications"] == {}


def test_killed_run_that_then_fails_rolls_back_what_the_dead_run_created(
    dokploy, alice, monkeypatch
):
    attempt = lifecycle.request_attempt(alice, "create", dispatch=False)
    kill_worker_after_application_created(monkeypatch, attempt)
    dokploy.fail("domain.create", times=1, status=400)
    DeploymentAttempt.objects.filter(pk=attempt.pk).update(lease_expires_at=None)

    result = pipeline.run_attempt(attempt.pk, owner="worker-2")

    assert result is not None and result.status == Status.ROLLED_BACK
    state = dokploy.state()
    assert state["projects"] == {} and state["applications"] == {}


def test_cancel_stops_at_the_next_step_and_rolls_back(dokploy, alice):
    attempt = lifecycle.request_attempt(alice, "create", dispatch=False)

    def cancel_after_domain(step):
        if step.phase == "domain":
            lifecycle.cancel_attempt(DeploymentAttempt.objects.get(pk=attempt.pk), by=alice)

    result = pipeline.run_attempt(attempt.pk, on_step=cancel_after_domain)

    assert result is not None
    assert result.status == Status.CANCELLED
    assert not result.steps.filter(phase="deploy", status="succeeded").exists()
    state = dokploy.state()
    assert state["projects"] == {} and state["applications"] == {} and state["domains"] == {}


def test_cancel_a_queued_attempt_ends_it_at_once(dokploy, alice):
    attempt = lifecycle.request_attempt(alice, "create", dispatch=False)

    lifecycle.cancel_attempt(attempt, by=alice)

    attempt.refresh_from_db()
    assert attempt.status == Status.CANCELLED
    assert pipeline.run_attempt(attempt.pk) is None
    assert dokploy.calls() == []


def test_teardown_removes_everything_application_first(dokploy, alice):
    assert deploy(alice).status == Status.SUCCEEDED
    calls_before = len(dokploy.calls())

    attempt = deploy(alice, "teardown")

    assert attempt.status == Status.SUCCEEDED, attempt.error_message
    state = dokploy.state()
    assert state["projects"] == {} and state["applications"] == {}
    assert state["domains"] == {} and state["services"] == {}
    posts = [c["endpoint"] for c in dokploy.calls()[calls_before:] if c["method"] == "POST"]
    assert posts == ["application.delete", "project.remove"]
    stack = Stack.objects.get(owner=alice)
    assert stack.observed_state == Stack.Observed.ABSENT
    assert stack.application_id == "" and stack.project_id == ""


def test_stop_and_start(dokploy, alice):
    assert deploy(alice).status == Status.SUCCEEDED
    host = "alice.ai.example.test"

    assert deploy(alice, "stop").status == Status.SUCCEEDED
    assert Stack.objects.get(owner=alice).observed_state == Stack.Observed.STOPPED
    assert only(dokploy.state()["services"])["replicas"] == 0

    started = deploy(alice, "start")
    assert started.status == Status.SUCCEEDED, started.error_message
    assert Stack.objects.get(owner=alice).observed_state == Stack.Observed.HEALTHY
    assert any(route["host"] == host for route in dokploy.state()["routes"].values())


def test_redeploy_deploys_again(dokploy, alice):
    assert deploy(alice).status == Status.SUCCEEDED
    attempt = deploy(alice, "redeploy")
    assert attempt.status == Status.SUCCEEDED
    assert dokploy.call_count("application.deploy") == 2


def test_eleventh_request_in_an_hour_is_queued_until_the_window_allows(dokploy, alice):
    stack = lifecycle.ensure_stack(alice)
    start = timezone.now() - timedelta(minutes=50)
    for minute in range(10):
        done = DeploymentAttempt.objects.create(stack=stack, kind="redeploy")
        done.transition(Status.RUNNING, started_at=start + timedelta(minutes=minute))
        done.transition(Status.SUCCEEDED)

    attempt = lifecycle.request_attempt(alice, "create")

    attempt.refresh_from_db()
    assert attempt.status == Status.QUEUED
    assert attempt.not_before == start + timedelta(hours=1)
    assert attempt.dispatched_at is None
    assert queueing.queue_position(attempt) == 1
    assert dokploy.calls() == []
    assert queueing.dispatch() == []

    assert queueing.dispatch(now=attempt.not_before + timedelta(seconds=1)) == [attempt.pk]
    attempt.refresh_from_db()
    assert attempt.status == Status.SUCCEEDED


def test_breaker_fails_fast_while_dokploy_is_down(dokploy, alice, bob):
    dokploy.fail("project.all", times=50, status=503)

    first = deploy(alice)

    assert first.status == Status.FAILED
    assert first.error_code == "BREAKER_OPEN"
    assert dokploy.call_count("project.all") == 5
    second = deploy(bob)
    assert second.status == Status.FAILED
    assert second.error_code == "BREAKER_OPEN"
    assert "retry after" in second.error_message.lower()
    assert dokploy.call_count("project.all") == 5


def test_concurrency_limit_holds_attempts_back_with_queue_positions(
    dokploy, alice, bob, charlie, settings, monkeypatch
):
    settings.MAX_CONCURRENT_DEPLOYMENTS = 2
    sent: list[int] = []
    monkeypatch.setattr(queueing, "async_task", lambda func, pk, **kw: sent.append(pk))

    attempts = [lifecycle.request_attempt(user, "create") for user in (alice, bob, charlie)]

    assert sent == [attempts[0].pk, attempts[1].pk]
    attempts[2].refresh_from_db()
    assert queueing.queue_position(attempts[2]) == 1
    assert attempts[2].dispatched_at is None


def test_reaper_resends_attempts_whose_worker_died(dokploy, alice, monkeypatch):
    sent: list[int] = []
    monkeypatch.setattr(queueing, "async_task", lambda func, pk, **kw: sent.append(pk))
    attempt = lifecycle.request_attempt(alice, "create", dispatch=False)
    claimed = pipeline.claim(attempt.pk, "dead-worker")
    assert claimed is not None
    long_ago = timezone.now() - timedelta(minutes=5)
    DeploymentAttempt.objects.filter(pk=attempt.pk).update(
        lease_expires_at=long_ago, dispatched_at=long_ago
    )

    assert queueing.reap() == {"resumed": 1, "redispatched": 0}
    assert sent == [attempt.pk]


@pytest.mark.parametrize("username", ["admin", "Alice", "-bob", "a", "x" * 48, "bob--x", "dokploy"])
def test_invalid_usernames_never_reach_dokploy(dokploy, username):
    user = User.objects.create_user(username)
    with pytest.raises(lifecycle.LifecycleError):
        lifecycle.request_attempt(user, "create")
    assert dokploy.calls() == []
    assert not Stack.objects.exists()


def test_busy_stack_refuses_a_second_request(dokploy, alice):
    attempt = lifecycle.request_attempt(alice, "create", dispatch=False)
    pipeline.claim(attempt.pk, "worker-1")
    with pytest.raises(lifecycle.StackBusy):
        lifecycle.request_attempt(alice, "create")


def test_structured_logs_carry_the_spec_fields_and_no_secret(dokploy, alice, caplog):
    from stacks.logging import JsonFormatter

    caplog.set_level(logging.DEBUG)
    attempt = deploy(alice)

    formatter = JsonFormatter()
    lines = [json.loads(formatter.format(r)) for r in caplog.records if r.name == "stacks.pipeline"]
    step_lines = [line for line in lines if "phase" in line]
    assert step_lines
    for line in step_lines:
        for key in ("timestamp", "level", "phase", "action", "deploymentId", "username"):
            assert key in line, (key, line)
        assert line["deploymentId"] == attempt.pk
        assert line["status"] in {"success", "failure"}
        assert isinstance(line["duration_ms"], int)
    text = "\n".join(formatter.format(r) for r in caplog.records)
    assert dokploy.api_key not in text


def test_attempt_past_deploy_timeout_ends_and_rolls_back(dokploy, alice, settings):
    settings.DEPLOY_TIMEOUT = 0.5
    dokploy.deploy_seconds = 5.0

    attempt = deploy(alice)

    assert attempt.status == Status.ROLLED_BACK
    assert attempt.error_code == "DEADLINE_EXCEEDED"
    assert attempt.failure_phase == "deploy"
    assert attempt.finished_at is not None and attempt.started_at is not None
    assert (attempt.finished_at - attempt.started_at).total_seconds() < 5
    assert dokploy.state()["applications"] == {}


# --- Deadlines, the breaker, resumed rollbacks, leases ----------------------------------------


def with_fake_sleep(monkeypatch, clock) -> None:
    """Every Dokploy retry wait moves the controlled clock instead of sleeping."""
    from stacks.dokploy.client import DokployClient

    # The function under the classmethod, to call with another class argument; mypy does not
    # model __func__ on a bound classmethod.
    original = DokployClient.from_settings.__func__  # type: ignore[attr-defined]

    def from_settings(cls, /, **overrides):
        return original(cls, **{**overrides, "sleep": clock.shift, "jitter": False})

    monkeypatch.setattr(DokployClient, "from_settings", classmethod(from_settings))


def test_deploy_timeout_cuts_the_retries_of_a_call(dokploy, alice, settings, monkeypatch):
    settings.DEPLOY_TIMEOUT = 5.0
    settings.DOKPLOY_RETRY_BASE = 1.0
    dokploy.fail("domain.create", times=6, status=503)

    with time_machine.travel(timezone.now(), tick=True) as clock:
        with_fake_sleep(monkeypatch, clock)
        attempt = deploy(alice)

    assert attempt.status == Status.ROLLED_BACK
    assert (attempt.failure_phase, attempt.error_code) == ("domain", "DEADLINE_EXCEEDED")
    # Tries at about 0, 1 and 3 s; waiting 4 s more would pass the 5 s deadline.
    assert dokploy.call_count("domain.create") == 3
    assert "no time left for try 4" in attempt.error_message
    assert dokploy.state()["applications"] == {}


def test_a_slow_request_is_cut_to_the_deadline(dokploy, alice, settings):
    settings.DEPLOY_TIMEOUT = 2.0
    dokploy.fail("domain.create", times=1, status=200, delay=10.0)  # would answer after 10 s

    attempt = deploy(alice)

    assert attempt.status == Status.ROLLED_BACK
    assert (attempt.failure_phase, attempt.error_code) == ("domain", "DEADLINE_EXCEEDED")
    assert dokploy.call_count("domain.create") == 1
    assert "last try: domain.create failed: TIMEOUT" in attempt.error_message


def test_failing_creates_open_the_breaker_despite_successful_look_ups(dokploy, alice):
    dokploy.fail("domain.create", times=6, status=503)

    attempt = deploy(alice)

    assert (attempt.failure_phase, attempt.error_code) == ("domain", "BREAKER_OPEN")
    assert dokploy.call_count("domain.create") == 5
    assert dokploy.call_count("domain.byApplicationId") == 4
    breaker = BreakerState.objects.get(name="dokploy")
    assert (breaker.state, breaker.consecutive_failures) == ("open", 5)
    # Dokploy is unavailable, so the rollback cannot run either: the attempt says what is left.
    assert attempt.status == Status.FAILED
    assert any("application opencode-alice" in e for e in attempt.rollback_errors)


def kill_worker_during_rollback(monkeypatch, attempt: DeploymentAttempt) -> None:
    """Run the attempt; it fails at deploy, and the worker dies while deleting the application."""
    from stacks.pipeline import rollback

    original = rollback.undo

    def die(run, entry):
        if entry["kind"] == "application":
            raise WorkerKilled
        return original(run, entry)

    monkeypatch.setattr(rollback, "undo", die)
    with pytest.raises(WorkerKilled):
        pipeline.run_attempt(attempt.pk, owner="worker-1")
    monkeypatch.setattr(rollback, "undo", original)


def test_a_run_resumed_during_a_rollback_finishes_it(dokploy, alice, monkeypatch):
    dokploy.fail_deploy("opencode-alice", message="pull access denied")
    attempt = lifecycle.request_attempt(alice, "create", dispatch=False)
    kill_worker_during_rollback(monkeypatch, attempt)
    attempt.refresh_from_db()
    assert attempt.status == Status.RUNNING
    assert attempt.rollback_started_at is not None
    # domain and mount (part of the application) done; the application's deletion was cut short
    assert [e.get("undone", False) for e in attempt.created_resources] == [False, False, True, True]
    DeploymentAttempt.objects.filter(pk=attempt.pk).update(lease_expires_at=None)

    result = pipeline.run_attempt(attempt.pk, owner="worker-2")

    assert result is not None
    assert result.status == Status.ROLLED_BACK
    assert (result.error_code, result.failure_phase) == ("DEPLOY_FAILED", "deploy")
    for endpoint in ("project.create", "application.create", "domain.create"):
        assert dokploy.call_count(endpoint) == 1, endpoint
    assert dokploy.call_count("application.deploy") == 1
    state = dokploy.state()
    assert state["projects"] == {} and state["applications"] == {}
    steps = list(result.steps.order_by("seq").values_list("phase", "summary", "status"))
    assert steps[-4:] == [
        ("queue", "Run 2: resumed after an interrupted run", "succeeded"),
        ("rollback", "Continuing the rollback after DEPLOY_FAILED", "succeeded"),
        ("rollback", "Deleted application opencode-alice", "succeeded"),
        ("rollback", "Removed project ai-stack-alice", "succeeded"),
    ]
    assert all(entry["undone"] for entry in result.created_resources)


def test_a_rollback_killed_too_often_ends_failed_without_calling_dokploy(
    dokploy, alice, monkeypatch
):
    dokploy.fail_deploy("opencode-alice", message="pull access denied")
    attempt = lifecycle.request_attempt(alice, "create", dispatch=False)
    kill_worker_during_rollback(monkeypatch, attempt)
    DeploymentAttempt.objects.filter(pk=attempt.pk).update(
        lease_expires_at=None, runs=pipeline.MAX_RUNS + 1
    )
    calls_before = len(dokploy.calls())

    result = pipeline.run_attempt(attempt.pk, owner="worker-9")

    assert result is not None and result.status == Status.FAILED
    assert result.error_code == "DEPLOY_FAILED"
    assert result.rollback_errors == [f"gave up the rollback after {pipeline.MAX_RUNS + 2} runs"]
    assert len(dokploy.calls()) == calls_before


def test_an_attempt_redelivered_too_often_gives_up_before_provisioning(dokploy, alice):
    attempt = lifecycle.request_attempt(alice, "create", dispatch=False)
    DeploymentAttempt.objects.filter(pk=attempt.pk).update(runs=pipeline.MAX_RUNS)

    result = pipeline.run_attempt(attempt.pk, owner="worker-6")

    assert result is not None and result.status == Status.FAILED
    assert (result.failure_phase, result.error_code) == ("queue", "TOO_MANY_RUNS")
    assert dokploy.calls() == []


def test_the_lease_is_capped_at_thirty_seconds(dokploy, alice, settings):
    settings.LEASE_SECONDS = 300.0
    attempt = lifecycle.request_attempt(alice, "create", dispatch=False)

    before = timezone.now()
    claimed = pipeline.claim(attempt.pk, "worker-1")

    assert claimed is not None and claimed.lease_expires_at is not None
    assert claimed.lease_expires_at <= before + timedelta(seconds=30) + timedelta(seconds=1)
    assert claimed.lease_expires_at >= before + timedelta(seconds=30)


def test_a_live_run_renews_its_lease_so_nobody_takes_it_over(dokploy, alice, settings):
    settings.LEASE_SECONDS = 1.0
    dokploy.deploy_seconds = 3.0
    attempt = lifecycle.request_attempt(alice, "create", dispatch=False)
    runner = threading.Thread(
        target=pipeline.run_attempt, args=(attempt.pk,), kwargs={"owner": "w1"}
    )
    runner.start()
    try:
        end = time.monotonic() + 20
        while not attempt.steps.filter(phase="deploy").exists():
            assert time.monotonic() < end
            time.sleep(0.05)
        time.sleep(1.5)  # longer than the lease: only renewal keeps it

        intruder = pipeline.claim(attempt.pk, "w2")
    finally:
        runner.join(timeout=30)

    assert intruder is None
    attempt.refresh_from_db()
    assert attempt.status == Status.SUCCEEDED
    assert attempt.runs == 1


def test_the_deadline_is_checked_at_each_step_boundary(dokploy, alice, settings):
    settings.DEPLOY_TIMEOUT = 60.0
    attempt = lifecycle.request_attempt(alice, "create", dispatch=False)

    with time_machine.travel(timezone.now(), tick=True) as clock:

        def after(step):
            if step.phase == "project":
                clock.shift(61)

        result = pipeline.run_attempt(attempt.pk, owner="w1", on_step=after)

    assert result is not None
    assert result.error_code == "DEADLINE_EXCEEDED"
    assert "DEPLOY_TIMEOUT" in result.error_message
    # Stopped at the boundary: no step of the next phase was begun.
    assert not result.steps.exclude(phase__in=["project", "rollback"]).exists()
    assert dokploy.call_count("application.create") == 0


def test_every_kind_of_attempt_has_a_handler():
    from stacks.models import AttemptKind

    assert set(pipeline.HANDLERS) == set(AttemptKind.values)


def test_a_retried_call_shows_its_tries_on_the_running_step(dokploy, alice, monkeypatch):
    from stacks.pipeline import journal

    dokploy.fail("domain.create", times=2, status=503)
    seen: list[tuple[int, bool]] = []
    attempt = lifecycle.request_attempt(alice, "create", dispatch=False)
    original = journal.Journal.note_wait

    def spy(self, next_try, seconds):
        original(self, next_try, seconds)
        row = DeploymentStep.objects.get(attempt=attempt, status="running")
        seen.append((row.current_try, row.next_try_at is not None))

    monkeypatch.setattr(journal.Journal, "note_wait", spy)
    result = pipeline.run_attempt(attempt.pk, owner="w1")

    assert result is not None and result.status == Status.SUCCEEDED
    assert seen == [(1, True), (2, True)]
    finished = result.steps.get(phase="domain")
    assert (finished.current_try, finished.next_try_at, finished.retries) == (3, None, 2)


def test_a_stale_running_status_does_not_start_a_second_deployment(dokploy, alice, monkeypatch):
    """A resumed run may read the application while the dead run's deployment still runs;
    once that deployment is done, the run must not deploy again."""
    import dataclasses

    from stacks.dokploy.client import DokployClient

    assert deploy(alice).status == Status.SUCCEEDED
    original = DokployClient.application_one
    reads: list[str] = []

    def stale_first(self, application_id):
        app = original(self, application_id)
        reads.append(application_id)
        return dataclasses.replace(app, application_status="running") if len(reads) == 1 else app

    monkeypatch.setattr(DokployClient, "application_one", stale_first)

    again = deploy(alice)

    assert again.status == Status.SUCCEEDED
    assert dokploy.call_count("application.deploy") == 1
    assert again.steps.get(phase="deploy").status == "skipped"
