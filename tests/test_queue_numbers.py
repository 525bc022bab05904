"""The numbers the pages show: the quota, typical durations and expected starts."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from stacks import queueing
from stacks.models import DeploymentAttempt
from tests.pages import attempt, finished, make_stack

Status = DeploymentAttempt.Status
NOON = "2026-03-01 12:00:00+00:00"


@pytest.fixture
def frozen():
    with time_machine.travel(NOON, tick=False):
        yield timezone.now()


def test_quota_counts_deployments_in_the_window(alice, frozen, settings):
    settings.DEPLOY_RATE_LIMIT = 3
    stack = make_stack(alice)
    finished(stack, 30, ago=4000)  # started before the window
    finished(stack, 30, ago=600)
    attempt(stack, Status.CANCELLED)  # cancelled before it started: holds no slot

    quota = queueing.quota(alice.pk)

    assert quota == queueing.Quota(used=1, limit=3, window=timedelta(hours=1), next_start=None)
    assert not quota.used_up


def test_a_used_up_quota_says_when_the_oldest_slot_frees(alice, frozen, settings):
    settings.DEPLOY_RATE_LIMIT = 2
    stack = make_stack(alice)
    oldest = finished(stack, 30, ago=1800)
    finished(stack, 30, ago=600, kind="redeploy")

    quota = queueing.quota(alice.pk)

    assert quota.used == 2
    assert quota.used_up
    assert oldest.started_at is not None
    assert quota.next_start == oldest.started_at + timedelta(hours=1)
    assert queueing.earliest_start(stack) == quota.next_start


def test_stop_and_start_do_not_count(alice, frozen):
    stack = make_stack(alice)
    finished(stack, 5, kind="stop")
    finished(stack, 5, kind="start")

    assert queueing.quota(alice.pk).used == 0


def test_typical_durations_are_medians_of_recent_successes_by_kind(alice, bob, frozen):
    mine, theirs = make_stack(alice), make_stack(bob)
    for seconds in (30, 40, 100):
        finished(mine, seconds)
    finished(theirs, 8, kind="stop")
    attempt(mine, Status.FAILED)  # failures do not count

    assert queueing.typical_durations() == {
        "create": timedelta(seconds=40),
        "stop": timedelta(seconds=8),
    }


def test_typical_durations_use_the_most_recent_sample(alice, frozen):
    stack = make_stack(alice)
    for n in range(queueing.ESTIMATE_SAMPLE):
        finished(stack, 10, ago=100 + n)
    finished(stack, 500, ago=5000)  # older than the sample

    assert queueing.typical_durations() == {"create": timedelta(seconds=10)}


def test_with_a_free_slot_a_queued_attempt_starts_now(alice, frozen):
    queued = attempt(make_stack(alice))

    assert queueing.expected_start(queued, {}) == frozen


def test_a_rate_limited_attempt_starts_at_its_not_before(alice, frozen):
    queued = attempt(make_stack(alice), not_before=frozen + timedelta(minutes=7))

    assert queueing.expected_start(queued, {}) == frozen + timedelta(minutes=7)


def test_with_every_slot_taken_it_starts_when_the_first_frees(
    alice, bob, charlie, frozen, settings
):
    settings.MAX_CONCURRENT_DEPLOYMENTS = 2
    for owner, started_ago in ((bob, 10), (charlie, 30)):
        running = attempt(make_stack(owner), Status.RUNNING)
        DeploymentAttempt.objects.filter(pk=running.pk).update(
            started_at=frozen - timedelta(seconds=started_ago)
        )
    queued = attempt(make_stack(alice))

    start = queueing.expected_start(queued, {"create": timedelta(seconds=60)})

    assert start == frozen + timedelta(seconds=30)  # charlie's, started 30 s ago, of 60


def test_attempts_ahead_take_slots_in_queue_order(alice, bob, charlie, frozen, settings):
    settings.MAX_CONCURRENT_DEPLOYMENTS = 1
    running = attempt(make_stack(bob), Status.RUNNING)
    DeploymentAttempt.objects.filter(pk=running.pk).update(started_at=frozen)
    ahead = attempt(make_stack(charlie), kind="create")
    queued = attempt(make_stack(alice))
    typical = {"create": timedelta(seconds=60)}

    assert queueing.expected_start(ahead, typical) == frozen + timedelta(seconds=60)
    assert queueing.expected_start(queued, typical) == frozen + timedelta(seconds=120)


def test_no_estimate_without_a_typical_duration_for_what_is_ahead(alice, bob, frozen, settings):
    settings.MAX_CONCURRENT_DEPLOYMENTS = 1
    attempt(make_stack(bob), Status.RUNNING)
    queued = attempt(make_stack(alice))

    assert queueing.expected_start(queued, {}) is None


def test_only_queued_attempts_have_an_expected_start(alice, frozen):
    running = attempt(make_stack(alice), Status.RUNNING)

    assert queueing.expected_start(running, {}) is None
