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
