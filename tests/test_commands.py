from __future__ import annotations

import os
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command

from stacks.models import Stack

ROOT = Path(__file__).resolve().parent.parent


def test_deploy_stack_creates_the_user_and_prints_each_step(dokploy):
    out = StringIO()

    call_command("deploy_stack", "dana", stdout=out)

    text = out.getvalue()
    assert "created portal user dana" in text
    assert "project     create succeeded" in text
    assert "dana is healthy at https://dana.ai.example.test" in text
    assert User.objects.filter(username="dana").exists()
    assert Stack.objects.get(username="dana").observed_state == Stack.Observed.HEALTHY


def test_deploy_stack_fails_with_the_cause_when_the_stack_is_unhealthy(dokploy):
    dokploy.unhealthy("erin.ai.example.test")

    with pytest.raises(CommandError, match="UNHEALTHY"):
        call_command("deploy_stack", "erin", stdout=StringIO())


def test_deploy_stack_refuses_a_reserved_name(dokploy):
    with pytest.raises(CommandError, match="reserved"):
        call_command("deploy_stack", "admin", stdout=StringIO())
    assert dokploy.calls() == []


def test_teardown_stack_removes_everything(dokploy):
    call_command("deploy_stack", "frank", stdout=StringIO())
    out = StringIO()

    call_command("teardown_stack", "frank", stdout=out)

    assert "frank's stack is removed" in out.getvalue()
    state = dokploy.state()
    assert state["projects"] == {} and state["applications"] == {} and state["services"] == {}


def test_teardown_stack_of_an_unknown_user(dokploy):
    with pytest.raises(CommandError, match="no portal user"):
        call_command("teardown_stack", "nobody", stdout=StringIO())


HOSTILE_NAMES = [
    "a",
    "x" * 48,
    "x" * 151,
    "Alice",
    "admin",
    "dokploy",
    "-bob",
    "--bob",
    "bob-",
    "bob--x",
    "9lives",
    "al ice",
    "alice\n",
    'bob\r\n{"level": "error", "message": "forged"}',
    "alice\x00",
    "ålice",
    "\uff41\uff4c\uff49\uff43\uff45",  # full-width letters
    "ali\u200bce",  # zero-width space
    "alice;rm -rf /",
    "../etc",
    "alice@example.com",
    "<script>",
]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_deploy_stack_refuses_an_invalid_name_before_creating_anything(dokploy, name):
    with pytest.raises(CommandError) as refused:
        call_command("deploy_stack", name, stdout=StringIO())

    message = str(refused.value)
    assert message.startswith(f"{name!r} is not a valid portal username: ")
    assert "\n" not in message and "\r" not in message
    assert not User.objects.exists()
    assert not Stack.objects.exists()
    assert dokploy.calls() == []


def test_deploy_stack_without_a_name(dokploy):
    with pytest.raises(CommandError, match="a username is required"):
        call_command("deploy_stack", "", stdout=StringIO())
    assert not User.objects.exists()


def test_teardown_stack_refuses_an_invalid_name(dokploy):
    with pytest.raises(CommandError) as refused:
        call_command("teardown_stack", "bob\nEVIL", stdout=StringIO())
    assert str(refused.value).startswith("'bob\\nEVIL' is not a valid portal username")


@pytest.mark.parametrize("name", ['bob\r\n{"level": "error", "message": "forged"}', "-bob"])
def test_a_refused_name_cannot_forge_a_line_of_output(name, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "PYTEST"))}
    env.update(
        DJANGO_SETTINGS_MODULE="portal.settings_test",
        DATABASE_URL=f"sqlite:///{tmp_path / 'unused.sqlite3'}",
    )
    env.pop("REDIS_URL", None)

    done = subprocess.run(
        [sys.executable, "manage.py", "deploy_stack", name],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        f"CommandError: {name!r} is not a valid portal username: Use lowercase letters, digits "
        "and single hyphens between them, starting with a letter."
    ]
