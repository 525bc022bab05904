"""Lifecycle rules the pages rely on: one attempt per request, trying again, nothing to do."""

from __future__ import annotations

import uuid

import pytest
from django.db import IntegrityError, transaction

from stacks import lifecycle
from stacks.models import DeploymentAttempt, Stack
from tests.pages import attempt, deployed_stack, make_stack

Status = DeploymentAttempt.Status


def test_the_same_key_twice_returns_the_first_attempt(alice):
    key = uuid.uuid4()

    first = lifecycle.request_attempt(alice, "create", idempotency_key=key, dispatch=False)
    second = lifecycle.request_attempt(alice, "create", idempotency_key=key, dispatch=False)

    assert second.pk == first.pk
    assert DeploymentAttempt.objects.count() == 1


def test_the_same_key_finds_the_attempt_even_after_it_ended(alice):
    key = uuid.uuid4()
    done = attempt(make_stack(alice), Status.FAILED, idempotency_key=key)

    again = lifecycle.request_attempt(alice, "create", idempotency_key=key, dispatch=False)

    assert again.pk == done.pk
    assert DeploymentAttempt.objects.count() == 1


def test_a_new_key_is_a_new_request(alice):
    attempt(make_stack(alice), Status.FAILED, idempotency_key=uuid.uuid4())

    made = lifecycle.request_attempt(alice, "create", idempotency_key=uuid.uuid4(), dispatch=False)

    assert made.status == Status.QUEUED
    assert DeploymentAttempt.objects.count() == 2


def test_a_key_belongs_to_its_stack(alice, bob):
    key = uuid.uuid4()
    theirs = lifecycle.request_attempt(bob, "create", idempotency_key=key, dispatch=False)

    mine = lifecycle.request_attempt(alice, "create", idempotency_key=key, dispatch=False)

    assert mine.pk != theirs.pk
    assert mine.stack.owner == alice


def test_the_database_refuses_a_key_twice_on_one_stack(alice):
    stack = make_stack(alice)
    key = uuid.uuid4()
    attempt(stack, Status.FAILED, idempotency_key=key)

    with pytest.raises(IntegrityError), transaction.atomic():
        DeploymentAttempt.objects.create(stack=stack, kind="create", idempotency_key=key)


def test_a_key_used_for_another_kind_is_refused(alice):
    stack = deployed_stack(alice)
    key = uuid.uuid4()
    attempt(stack, Status.SUCCEEDED, kind="redeploy", idempotency_key=key)

    with pytest.raises(lifecycle.LifecycleError, match="This form was already used"):
        lifecycle.request_attempt(alice, "stop", idempotency_key=key, dispatch=False)


def test_retry_asks_again_for_the_same_kind(alice):
    failed = attempt(deployed_stack(alice), Status.ROLLED_BACK, kind="redeploy")

    again = lifecycle.retry_attempt(failed, by=alice)

    assert (again.kind, again.status, again.requested_by) == ("redeploy", Status.QUEUED, alice)
    assert again.reason == f"Try again after attempt #{failed.pk}"


def test_retry_by_staff_is_recorded_as_theirs(alice, bob):
    bob.is_staff = True
    bob.save()
    failed = attempt(make_stack(alice), Status.CANCELLED)

    again = lifecycle.retry_attempt(failed, by=bob)

    assert again.stack.owner == alice
    assert again.requested_by == bob


@pytest.mark.parametrize(
    ("status", "message"),
    [
        (Status.SUCCEEDED, "This create succeeded; there is nothing to try again."),
        (Status.RUNNING, "This create has not ended yet."),
        (Status.QUEUED, "This create has not ended yet."),
    ],
)
def test_retry_only_of_what_failed_or_was_cancelled(alice, status, message):
    row = attempt(make_stack(alice), status)

    with pytest.raises(lifecycle.LifecycleError) as raised:
        lifecycle.retry_attempt(row, by=alice)

    assert str(raised.value) == message
    assert DeploymentAttempt.objects.count() == 1


@pytest.mark.parametrize(
    ("kind", "observed", "message"),
    [
        (
            "stop",
            Stack.Observed.STOPPED,
            "Your stack is already stopped; nothing to stop.",
        ),
        (
            "start",
            Stack.Observed.HEALTHY,
            "Your stack is already running; nothing to start.",
        ),
    ],
)
def test_nothing_to_stop_or_start_is_refused(alice, kind, observed, message):
    deployed_stack(alice, observed_state=observed)

    with pytest.raises(lifecycle.LifecycleError) as raised:
        lifecycle.request_attempt(alice, kind, dispatch=False)

    assert str(raised.value) == message
    assert DeploymentAttempt.objects.count() == 0


@pytest.mark.parametrize(
    ("kind", "observed"),
    [
        ("stop", Stack.Observed.HEALTHY),
        ("stop", Stack.Observed.UNHEALTHY),
        ("start", Stack.Observed.STOPPED),
        ("start", Stack.Observed.FAILED),
    ],
)
def test_stop_and_start_when_there_is_something_to_do(alice, kind, observed):
    deployed_stack(alice, observed_state=observed)

    made = lifecycle.request_attempt(alice, kind, dispatch=False)

    assert made.kind == kind
