"""Simulated deployments through the real pipeline, then /metrics through the real view: exact
values; the work of two processes in one scrape; every process answering the same."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

import pytest
from django.contrib.auth.models import User
from prometheus_client.parser import text_string_to_metric_families

from stacks import lifecycle, metrics
from stacks.models import DeploymentAttempt, DokployCall
from tests.metrics_scrape import TOKEN, counters_and_histograms, nonzero, scrape, value
from tests.test_crash import ROOT, child_env

Status = DeploymentAttempt.Status
PULL_DENIED = "pull access denied for ghcr.io/ai-stack/opencode-ttyd"
API = "portal_dokploy_request_duration_seconds"


@pytest.fixture
def token(settings) -> str:
    settings.METRICS_TOKEN = TOKEN
    settings.METRICS_ALLOWED_NETWORKS = []
    return TOKEN


def deploy(username: str, kind: str = "create") -> DeploymentAttempt:
    user = User.objects.filter(username=username).first() or User.objects.create_user(username)
    attempt = lifecycle.request_attempt(user, kind)
    attempt.refresh_from_db()
    return attempt


def simulator_calls(sim) -> dict[tuple[str, str], int]:
    """What Dokploy itself saw: requests by endpoint and the status it answered."""
    return dict(Counter((call["endpoint"], str(call["status"])) for call in sim.calls()))


def test_simulated_deployments_scrape_to_exact_values(dokploy, token):
    assert deploy("alice").status == Status.SUCCEEDED
    dokploy.fail("application.create", times=2, status=503)
    assert deploy("bob").status == Status.SUCCEEDED  # two retries
    dokploy.fail_deploy("opencode-carol", message=PULL_DENIED)
    assert deploy("carol").status == Status.ROLLED_BACK
    dokploy.fail("domain.create", times=1, status=400)
    assert deploy("dave").error_code == "BAD_REQUEST"
    dokploy.unhealthy("erin.ai.example.test")
    assert deploy("erin").error_code == "UNHEALTHY"
    dokploy.fail_deploy("opencode-fred", message=PULL_DENIED)
    dokploy.fail("project.remove", times=1, status=400)
    fred = deploy("fred")
    assert (fred.status, fred.error_code) == (Status.FAILED, "DEPLOY_FAILED")  # rollback failed
    assert deploy("alice", "redeploy").status == Status.SUCCEEDED
    dokploy.fail("project.all", times=5, status=503)
    assert deploy("gus").error_code == "BREAKER_OPEN"  # five failures open the breaker
    assert deploy("hal").error_code == "BREAKER_OPEN"  # refused at once, nothing sent

    s = scrape()

    assert nonzero(s, "portal_deployments_total", "kind", "outcome") == {
        ("create", "succeeded"): 2,
        ("create", "rolled_back"): 3,
        ("create", "failed"): 3,
        ("redeploy", "succeeded"): 1,
    }
    assert nonzero(s, "portal_deployment_failures_total", "phase", "code") == {
        ("deploy", "DEPLOY_FAILED"): 2,
        ("domain", "BAD_REQUEST"): 1,
        ("health", "UNHEALTHY"): 1,
        ("project", "BREAKER_OPEN"): 2,
    }
    assert nonzero(s, "portal_rollbacks_total") == {("deploy",): 2, ("domain",): 1, ("health",): 1}
    assert nonzero(s, "portal_rollback_failures_total") == {("deploy",): 1}
    assert nonzero(s, "portal_deployment_retries_total") == {("application",): 2, ("project",): 4}
    assert nonzero(s, f"{API}_count", "endpoint", "status") == simulator_calls(dokploy)
    assert value(s, f"{API}_count", endpoint="application.create", status="503") == 2
    assert value(s, f"{API}_count", endpoint="project.all", status="503") == 5
    assert sum(nonzero(s, f"{API}_count").values()) == DokployCall.objects.count()
    for (endpoint, status), count in simulator_calls(dokploy).items():
        inf = value(s, f"{API}_bucket", endpoint=endpoint, status=status, le="+Inf")
        assert inf == count
    duration = "portal_deployment_duration_seconds"
    # Simulated deployments take well under the first bucket's 15 s.
    assert value(s, f"{duration}_bucket", kind="create", le="15.0") == 2
    assert value(s, f"{duration}_count", kind="create") == 2
    assert value(s, f"{duration}_count", kind="redeploy") == 1
    assert value(s, "portal_queue_wait_seconds_count", kind="create") == 8  # hal never started
    assert value(s, "portal_queue_wait_seconds_bucket", kind="create", le="15.0") == 8
    assert nonzero(s, "portal_breaker_state", "breaker", "state") == {("dokploy", "open"): 1}
    assert value(s, "portal_breaker_opens_total", breaker="dokploy") == 1
    assert value(s, "portal_breaker_consecutive_failures", breaker="dokploy") == 5
    assert nonzero(s, "portal_stacks") == {("healthy",): 2, ("failed",): 6}
    assert value(s, "portal_attempts", status="queued") == 0
    assert value(s, "portal_attempts", status="running") == 0
    assert value(s, "portal_attempts_stuck") == 0

    metrics.fold()  # nothing ended five minutes ago yet: the scrape stays the same
    assert counters_and_histograms(scrape()) == counters_and_histograms(s)


def test_two_processes_work_shows_in_one_scrape(dokploy, settings, token):
    """A `deploy_stack` in another process and one in this process, scraped once."""
    dokploy.fail("application.create", times=1, status=503)
    other = subprocess.run(
        [sys.executable, "manage.py", "deploy_stack", "bob"],
        cwd=ROOT,
        env=child_env(settings),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert other.returncode == 0, other.stdout + other.stderr
    assert deploy("alice").status == Status.SUCCEEDED

    s = scrape()

    assert nonzero(s, "portal_deployments_total", "kind", "outcome") == {("create", "succeeded"): 2}
    assert nonzero(s, "portal_deployment_retries_total") == {("application",): 1}
    assert nonzero(s, f"{API}_count", "endpoint", "status") == simulator_calls(dokploy)
    assert value(s, f"{API}_count", endpoint="application.create", status="200") == 2
    assert nonzero(s, "portal_stacks") == {("healthy",): 2}


def test_another_process_scrapes_the_same_numbers(dokploy, settings, token):
    """Any web worker answers the scrape: another process reads the same totals."""
    dokploy.fail_deploy("opencode-bob", message=PULL_DENIED)
    deploy("alice")
    deploy("bob")
    here = counters_and_histograms(scrape())

    code = (
        "import django; django.setup(); "
        "from prometheus_client import generate_latest; from stacks import metrics; "
        "print(generate_latest(metrics.registry()).decode())"
    )
    other = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=child_env(settings),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    there = {
        (sample.name, tuple(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(other.stdout)
        for sample in family.samples
    }

    assert counters_and_histograms(there) == here
    assert value(there, "portal_deployments_total", kind="create", outcome="rolled_back") == 1
