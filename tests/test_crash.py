"""A real worker process killed with SIGKILL mid-pipeline, then `deploy_stack` run again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from io import StringIO
from pathlib import Path

from django.core.management import call_command
from django.db import connection

from stacks import lifecycle
from stacks.models import DeploymentAttempt, DeploymentStep, Stack

ROOT = Path(__file__).resolve().parent.parent


def database_url() -> str:
    """The test database as a URL, so a child process opens the very same one."""
    config = connection.settings_dict
    if config["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{config['NAME']}"
    user = config.get("USER") or ""
    host = config.get("HOST") or "127.0.0.1"
    port = config.get("PORT") or 5432
    return f"postgres://{user}@{host}:{port}/{config['NAME']}"


def child_env(settings) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="portal.settings_test",
        DATABASE_URL=database_url(),
        DOKPLOY_URL=settings.DOKPLOY_URL,
        DOKPLOY_API_KEY=settings.DOKPLOY_API_KEY,
        DOKPLOY_RETRY_BASE="0",
        STACK_URL=settings.STACK_URL,
        STACK_DOMAIN=settings.STACK_DOMAIN,
        STACK_CHECK_DNS="false",
        HEALTH_INTERVAL="0.05",
        LOG_LEVEL="WARNING",
    )
    return env


def wait_for(predicate, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.05)


def test_sigkilled_deploy_is_finished_by_the_next_deploy_stack(dokploy, settings, alice):
    dokploy.deploy_seconds = 3.0  # long enough to kill the worker while it follows the deploy
    child = subprocess.Popen(
        [sys.executable, "manage.py", "deploy_stack", "alice"],
        cwd=ROOT,
        env=child_env(settings),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(lambda: DeploymentStep.objects.filter(phase="domain").exists())
        wait_for(lambda: dokploy.call_count("application.deploy") == 1)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
    attempt = DeploymentAttempt.objects.get()
    assert attempt.status == DeploymentAttempt.Status.RUNNING
    assert attempt.lease_expires_at is not None
    dokploy.deploy_seconds = 0.05

    out = StringIO()
    call_command("deploy_stack", "alice", stdout=out)

    attempt.refresh_from_db()
    assert attempt.status == DeploymentAttempt.Status.SUCCEEDED, out.getvalue()
    assert attempt.runs == 2
    assert DeploymentAttempt.objects.count() == 1
    state = dokploy.state()
    assert (len(state["projects"]), len(state["applications"]), len(state["domains"])) == (1, 1, 1)
    assert dokploy.call_count("project.create") == 1
    assert dokploy.call_count("application.create") == 1
    assert dokploy.call_count("domain.create") == 1
    # The resumed run followed the deployment the dead one had started instead of a second one.
    assert dokploy.call_count("application.deploy") == 1
    assert "resumed" in out.getvalue()
    assert Stack.objects.get().observed_state == Stack.Observed.HEALTHY


def start_cluster(settings) -> subprocess.Popen[bytes]:
    """A real django-q2 cluster on the test database, in a process group of its own."""
    env = child_env(settings)
    env["DJANGO_SETTINGS_MODULE"] = "tests.worker_settings"
    return subprocess.Popen(
        [sys.executable, "manage.py", "qcluster"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def kill_cluster(cluster: subprocess.Popen[bytes]) -> None:
    """SIGKILL every process of the cluster at once, as a lost machine would."""
    os.killpg(cluster.pid, signal.SIGKILL)
    cluster.wait(timeout=10)


def stop_cluster(cluster: subprocess.Popen[bytes]) -> None:
    if cluster.poll() is None:
        cluster.send_signal(signal.SIGTERM)
        try:
            cluster.wait(timeout=20)
        except subprocess.TimeoutExpired:
            kill_cluster(cluster)


def attempt_status(pk: int) -> str:
    return DeploymentAttempt.objects.values_list("status", flat=True).get(pk=pk)


def test_cluster_killed_during_a_rollback_finishes_the_rollback(dokploy, settings, alice):
    dokploy.fail_deploy("opencode-alice", message="pull access denied for the image")
    dokploy.fail("application.delete", times=1, status=200, delay=4.0)  # slow, but it works
    attempt = lifecycle.request_attempt(alice, "create", dispatch=False)

    cluster = start_cluster(settings)
    try:
        wait_for(
            lambda: attempt.steps.filter(phase="rollback", status="running").exists(), timeout=60
        )
    finally:
        kill_cluster(cluster)
    attempt.refresh_from_db()
    assert attempt.status == DeploymentAttempt.Status.RUNNING
    assert attempt.rollback_started_at is not None
    lease_of_the_dead = attempt.lease_expires_at
    assert lease_of_the_dead is not None

    cluster = start_cluster(settings)
    try:
        wait_for(lambda: attempt_status(attempt.pk) == "rolled_back", timeout=60)
    finally:
        stop_cluster(cluster)

    attempt.refresh_from_db()
    assert (attempt.error_code, attempt.failure_phase) == ("DEPLOY_FAILED", "deploy")
    assert attempt.runs == 2
    for endpoint in ("project.create", "application.create", "domain.create"):
        assert dokploy.call_count(endpoint) == 1, endpoint
    assert dokploy.call_count("application.deploy") == 1
    assert dokploy.call_count("project.remove") == 1
    state = dokploy.state()
    assert state["projects"] == {} and state["applications"] == {} and state["services"] == {}
    assert not attempt.steps.filter(status="running").exists()
    resumed = attempt.steps.get(summary="Run 2: resumed after an interrupted run")
    # The new cluster took over at its start because the holder's process was gone, without
    # waiting for the dead worker's lease to run out.
    assert resumed.started_at < lease_of_the_dead
