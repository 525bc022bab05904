"""A new user's first steps on an empty database: `migrate`, then a deployment, nothing else."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def test_migrate_alone_prepares_a_database_for_a_deployment(simulator, tmp_path):
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "REDIS_", "DATABASE_", "PYTEST"))
    }
    env.update(
        DJANGO_SETTINGS_MODULE="portal.settings",
        DEBUG="false",
        SECRET_KEY="fresh-database-test-key-0123456789abcdef0123456789",
        DATABASE_URL=f"sqlite:///{tmp_path / 'fresh.sqlite3'}",
        DOKPLOY_URL=simulator.url,
        DOKPLOY_API_KEY=simulator.api_key,
        DOKPLOY_RETRY_BASE="0",
        STACK_URL=simulator.stack_url_template,
        STACK_CHECK_DNS="false",
        HEALTH_INTERVAL="0.05",
        LOG_LEVEL="WARNING",
    )

    migrated = manage("migrate", "--noinput", env=env)
    deployed = manage("deploy_stack", "alice", env=env)

    assert migrated.returncode == 0, migrated.stderr
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    assert "alice is healthy at https://alice.ai.localhost" in deployed.stdout
    assert simulator.call_count("application.deploy") == 1
