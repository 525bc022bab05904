from __future__ import annotations

from io import StringIO

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command

from stacks.models import Stack


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
