from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from stacks.models import DeploymentAttempt, IllegalTransition, Stack

Status = DeploymentAttempt.Status


@pytest.fixture
def stack(alice) -> Stack:
    return Stack.objects.create(owner=alice, username="alice", host="alice.ai.localhost")


def new_attempt(stack: Stack, **fields) -> DeploymentAttempt:
    fields.setdefault("kind", "create")
    return DeploymentAttempt.objects.create(stack=stack, **fields)


def test_a_new_attempt_is_queued(stack):
    attempt = new_attempt(stack)
    assert attempt.status == Status.QUEUED
    assert attempt.is_active
    assert stack.active_attempt() == attempt


def test_second_active_attempt_is_refused_by_the_database(stack):
    new_attempt(stack)
    with pytest.raises(IntegrityError), transaction.atomic():
        new_attempt(stack)


def test_second_active_attempt_refused_even_when_the_first_is_running(stack):
    first = new_attempt(stack)
    first.transition(Status.RUNNING)
    # Bypass every Python check: the partial unique index alone must refuse it.
    with pytest.raises(IntegrityError), transaction.atomic():
        DeploymentAttempt.objects.bulk_create(
            [DeploymentAttempt(stack=stack, kind="redeploy", status=Status.QUEUED)]
        )


def test_new_attempt_allowed_once_the_previous_one_ended(stack):
    first = new_attempt(stack)
    first.transition(Status.RUNNING)
    first.transition(Status.SUCCEEDED)
    second = new_attempt(stack, kind="redeploy")
    assert stack.active_attempt() == second


def test_other_stacks_are_independent(stack, bob):
    other = Stack.objects.create(owner=bob, username="bob")
    new_attempt(stack)
    assert new_attempt(other).is_active


@pytest.mark.parametrize(
    ("path", "illegal"),
    [
        ([], Status.SUCCEEDED),
        ([], Status.ROLLED_BACK),
        ([Status.RUNNING, Status.SUCCEEDED], Status.RUNNING),
        ([Status.RUNNING, Status.FAILED], Status.SUCCEEDED),
        ([Status.CANCELLED], Status.QUEUED),
        ([Status.RUNNING, Status.ROLLED_BACK], Status.QUEUED),
        ([Status.RUNNING], Status.QUEUED),
    ],
)
def test_illegal_transitions_are_rejected(stack, path, illegal):
    attempt = new_attempt(stack)
    for status in path:
        failed = status in (Status.FAILED, Status.ROLLED_BACK, Status.CANCELLED)
        attempt.transition(status, **({"error_code": "TEST"} if failed else {}))
    with pytest.raises(IllegalTransition):
        attempt.transition(illegal)
    attempt.refresh_from_db()
    assert attempt.status == (path[-1] if path else Status.QUEUED)


def test_illegal_transition_through_save_is_rejected(stack):
    attempt = new_attempt(stack)
    attempt.transition(Status.RUNNING)
    attempt.transition(Status.FAILED, error_code="TEST")
    loaded = DeploymentAttempt.objects.get(pk=attempt.pk)
    loaded.status = Status.RUNNING
    with pytest.raises(IllegalTransition):
        loaded.save()
    assert DeploymentAttempt.objects.get(pk=attempt.pk).status == Status.FAILED


def test_attempt_cannot_be_created_in_a_terminal_state(stack):
    with pytest.raises(IllegalTransition):
        new_attempt(stack, status=Status.SUCCEEDED)


def test_transition_is_compare_and_set(stack):
    attempt = new_attempt(stack)
    stale = DeploymentAttempt.objects.get(pk=attempt.pk)
    attempt.transition(Status.CANCELLED, error_code="CANCELLED")
    with pytest.raises(IllegalTransition, match="lost a race"):
        stale.transition(Status.RUNNING)
    assert stale.status == Status.CANCELLED


def test_terminal_transition_stamps_finish_and_drops_lease(stack):
    attempt = new_attempt(stack, lease_owner="worker-1", lease_expires_at=timezone.now())
    attempt.transition(Status.RUNNING)
    assert attempt.started_at is not None
    attempt.transition(Status.ROLLED_BACK, failure_phase="domain", error_code="BAD_REQUEST")
    attempt.refresh_from_db()
    assert attempt.finished_at is not None
    assert attempt.lease_owner == ""
    assert attempt.failure_phase == "domain"


def test_database_refuses_a_success_that_carries_an_error(stack):
    attempt = new_attempt(stack)
    attempt.transition(Status.RUNNING)
    with pytest.raises(IntegrityError), transaction.atomic():
        attempt.transition(Status.SUCCEEDED, error_code="DEPLOY_FAILED", failure_phase="deploy")


def test_database_refuses_a_failure_without_its_cause(stack):
    attempt = new_attempt(stack)
    attempt.transition(Status.RUNNING)
    with pytest.raises(IntegrityError), transaction.atomic():
        attempt.transition(Status.FAILED)


def test_database_refuses_terminal_status_without_finish_time(stack):
    attempt = new_attempt(stack)
    with pytest.raises(IntegrityError), transaction.atomic():
        DeploymentAttempt.objects.filter(pk=attempt.pk).update(status=Status.SUCCEEDED)


def test_database_refuses_unknown_status(stack):
    attempt = new_attempt(stack)
    with pytest.raises(IntegrityError), transaction.atomic():
        DeploymentAttempt.objects.filter(pk=attempt.pk).update(status="exploded")


def test_one_stack_per_user(stack, alice):
    with pytest.raises(IntegrityError), transaction.atomic():
        Stack.objects.create(owner=alice, username="alice2")
