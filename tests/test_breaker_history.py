"""The breaker's history: one BreakerEvent per change of state, written by the process whose
conditional UPDATE made it, with the reason; append-only."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from stacks.models import AlertState, AppendOnly, BreakerEvent, BreakerState
from stacks.resilience import CircuitBreaker
from tests.test_resilience import OPENED, RACERS, _claim_probe, _open_long_ago, _race, fail, succeed


@pytest.fixture
def clock() -> Iterator[time_machine.Traveller]:
    with time_machine.travel(OPENED, tick=False) as traveller:
        yield traveller


@pytest.fixture
def breaker(db: None) -> CircuitBreaker:
    return CircuitBreaker("dokploy", failures=5, reset=60.0, successes=3, probe_timeout=15.0)


def history() -> list[tuple[str, str, str]]:
    return list(BreakerEvent.objects.order_by("id").values_list("from_state", "to_state", "reason"))


def test_every_change_is_recorded_once_with_its_reason(breaker, clock):
    fail(breaker, 5)
    clock.shift(timedelta(seconds=60))
    fail(breaker, 1)  # the probe fails
    clock.shift(timedelta(seconds=60))
    succeed(breaker, 3)

    assert history() == [
        ("closed", "open", "5 consecutive failures"),
        ("open", "half_open", "60 s passed: a probe"),
        ("half_open", "open", "the probe failed"),
        ("open", "half_open", "60 s passed: a probe"),
        ("half_open", "closed", "3 probes succeeded in a row"),
    ]
    times = list(BreakerEvent.objects.order_by("id").values_list("created_at", flat=True))
    assert times == [
        OPENED,
        OPENED + timedelta(seconds=60),
        OPENED + timedelta(seconds=60),
        OPENED + timedelta(seconds=120),
        OPENED + timedelta(seconds=120),
    ]


def test_failures_and_successes_that_change_no_state_write_nothing(breaker, clock):
    fail(breaker, 4)
    succeed(breaker, 10)

    assert history() == []


def test_a_reset_by_hand_is_recorded_from_the_state_it_left(breaker, clock):
    breaker.reset_breaker()  # already closed: no change
    fail(breaker, 5)
    breaker.reset_breaker()
    fail(breaker, 5)
    clock.shift(timedelta(seconds=60))
    breaker.claim()  # half-open, probe out
    breaker.reset_breaker()

    assert [(old, new) for old, new, _ in history()] == [
        ("closed", "open"),
        ("open", "closed"),
        ("closed", "open"),
        ("open", "half_open"),
        ("half_open", "closed"),
    ]
    assert history()[1][2] == "reset by hand"
    assert BreakerState.objects.get().state == "closed"


def test_events_are_append_only(breaker, clock):
    fail(breaker, 5)
    event = BreakerEvent.objects.get()

    event.reason = "rewritten"
    with pytest.raises(AppendOnly):
        event.save()
    with pytest.raises(AppendOnly):
        event.delete()


@pytest.mark.django_db(transaction=True)
def test_processes_racing_for_the_half_open_claim_write_one_event():
    _open_long_ago()
    BreakerEvent.objects.create(
        breaker="dokploy",
        created_at=timezone.now() - timedelta(seconds=120),
        from_state="closed",
        to_state="open",
        reason="5 consecutive failures",
    )
    AlertState.objects.create(key="breaker:dokploy", active=True, count=1)

    outcomes = _race(_claim_probe)

    assert sorted(outcomes) == ["BREAKER_OPEN"] * (RACERS - 1) + ["probe"]
    assert [(old, new) for old, new, _ in history()] == [
        ("closed", "open"),
        ("open", "half_open"),
    ]
