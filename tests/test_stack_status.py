"""What a stack's owner is told about it, and where "Open my AI stack" leads."""

from __future__ import annotations

import pytest

from stacks.models import DeploymentAttempt, Stack, StackStatus
from tests.pages import attempt, deployed_stack, finished, make_stack

Status = DeploymentAttempt.Status


def test_open_url_is_the_public_address_with_a_real_dokploy(alice, settings):
    settings.DOKPLOY_SIMULATED = False
    settings.STACK_URL = "https://{host}"

    assert make_stack(alice).open_url == "https://alice.ai.example.test"


def test_open_url_is_the_simulators_page_with_the_simulator(alice, settings):
    settings.DOKPLOY_SIMULATED = True
    settings.STACK_URL = "http://127.0.0.1:3900/_stack/{host}"

    assert make_stack(alice).open_url == "http://127.0.0.1:3900/_stack/alice.ai.example.test/"


def test_open_url_of_a_stack_without_host(alice):
    assert make_stack(alice, host="").open_url == ""


@pytest.mark.parametrize(
    ("observed", "status"),
    [
        (Stack.Observed.HEALTHY, StackStatus("running", "Running")),
        (Stack.Observed.STOPPED, StackStatus("stopped", "Stopped")),
        (Stack.Observed.UNHEALTHY, StackStatus("unhealthy", "Unhealthy")),
        (Stack.Observed.FAILED, StackStatus("failed", "Failed")),
        (Stack.Observed.PROVISIONING, StackStatus("deploying", "Deploying")),
    ],
)
def test_status_follows_the_observed_state(alice, observed, status):
    assert deployed_stack(alice, observed_state=observed).status(None) == status


@pytest.mark.parametrize(
    ("kind", "key"),
    [
        ("create", "deploying"),
        ("redeploy", "deploying"),
        ("stop", "stopping"),
        ("teardown", "removing"),
    ],
)
def test_status_while_an_attempt_is_active(alice, kind, key):
    stack = deployed_stack(alice)
    active = attempt(stack, Status.RUNNING, kind=kind)

    assert stack.status(active).key == key


def test_last_deployed_is_the_last_successful_create_or_redeploy(alice):
    stack = deployed_stack(alice)
    finished(stack, 30, ago=900)
    redeploy = finished(stack, 30, ago=300, kind="redeploy")
    finished(stack, 5, ago=60, kind="stop")

    assert stack.last_deployed_at() == redeploy.finished_at
