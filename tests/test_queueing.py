"""The reaper: which attempts are handed back to a worker, and when it looks again."""

from __future__ import annotations

import os
import socket
import subprocess
from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone
from django_q.models import Schedule

from stacks import lifecycle, pipeline, queueing
from stacks.models import DeploymentAttempt

Status = DeploymentAttempt.Status


@pytest.fixture
def sent(monkeypatch) -> list[int]:
    resent: list[int] = []
    monkeypatch.setattr(queueing, "async_task", lambda func, pk, **kw: resent.append(pk))
    return resent


@pytest.fixture
def running(alice, sent) -> DeploymentAttempt:
    """An attempt a worker claimed a moment ago (lease live, dispatched now)."""
    attempt = lifecycle.request_attempt(alice, "create", dispatch=False)
    DeploymentAttempt.objects.filter(pk=attempt.pk).update(dispatched_at=timezone.now())
    claimed = pipeline.claim(attempt.pk, "elsewhere:4242:1:abcd")
    assert claimed is not None
    claimed.refresh_from_db()
    return claimed


def dead_owner() -> str:
    """The identity of a process of this host that has exited."""
    child = subprocess.Popen(["true"])
    child.wait()
    return f"{socket.gethostname()}:{child.pid}:0:dead"


def test_a_live_lease_is_left_alone(running, sent):
    assert queueing.reap() == {"resumed": 0, "redispatched": 0}
    assert sent == []


def test_a_dead_holder_on_this_host_is_replaced_at_once(running, sent):
    DeploymentAttempt.objects.filter(pk=running.pk).update(lease_owner=dead_owner())

    assert queueing.reap() == {"resumed": 1, "redispatched": 0}
    assert sent == [running.pk]


def test_a_live_holder_on_this_host_is_left_alone(running, sent):
    me = f"{socket.gethostname()}:{os.getpid()}:0:live"
    DeploymentAttempt.objects.filter(pk=running.pk).update(lease_owner=me)

    assert queueing.reap()["resumed"] == 0


def test_an_expired_lease_on_another_host_is_resumed(running, sent):
    with time_machine.travel(timezone.now() + timedelta(seconds=31), tick=False):
        assert queueing.reap() == {"resumed": 1, "redispatched": 0}
    assert sent == [running.pk]


def test_a_resumed_attempt_is_not_sent_twice_within_a_lease_period(running, sent):
    later = timezone.now() + timedelta(seconds=31)
    with time_machine.travel(later, tick=False):
        queueing.reap()
    with time_machine.travel(later + timedelta(seconds=10), tick=False):
        queueing.reap()  # the new worker has not claimed it yet: let it
    with time_machine.travel(later + timedelta(seconds=31), tick=False):
        queueing.reap()  # still nobody: send it again

    assert sent == [running.pk, running.pk]


def test_the_reaper_wakes_up_just_after_the_earliest_lease_ends(running):
    queueing.reap()

    schedule = Schedule.objects.get(name="reaper-wakeup")

    assert schedule.schedule_type == Schedule.ONCE
    assert schedule.next_run == running.lease_expires_at + timedelta(seconds=1)
    assert schedule.func == "stacks.tasks.reap_attempts"


@pytest.mark.django_db(transaction=True)
def test_a_starting_worker_resumes_what_dead_workers_left(running, sent):
    DeploymentAttempt.objects.filter(pk=running.pk).update(lease_owner=dead_owner())

    queueing.resume_on_start(sender="django_q", proc_name="Process-1")
    queueing.resume_on_start(sender="django_q", proc_name="Process-2")  # same cluster

    assert sent == [running.pk]
