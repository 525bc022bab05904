from __future__ import annotations

import pytest

from stacks import throttle


class FakeClock:
    def __init__(self, start: float) -> None:
        self.now = start
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.mark.django_db
def test_calls_within_the_rate_do_not_wait():
    clock = FakeClock(1000.25)
    waits = [throttle.acquire("domain", rate=3, sleep=clock.sleep, clock=clock) for _ in range(3)]
    assert waits == [0.0, 0.0, 0.0]
    assert clock.slept == []


@pytest.mark.django_db
def test_excess_calls_wait_for_the_next_second():
    clock = FakeClock(1000.25)
    for _ in range(3):
        throttle.acquire("deploy", rate=3, sleep=clock.sleep, clock=clock)
    waited = throttle.acquire("deploy", rate=3, sleep=clock.sleep, clock=clock)
    assert waited == pytest.approx(0.75)
    assert clock.slept == [pytest.approx(0.75)]


@pytest.mark.django_db
def test_phases_are_paced_separately():
    clock = FakeClock(2000.0)
    for _ in range(2):
        throttle.acquire("project", rate=2, sleep=clock.sleep, clock=clock)
    assert throttle.acquire("health", rate=2, sleep=clock.sleep, clock=clock) == 0.0
    assert clock.slept == []


@pytest.mark.django_db
def test_a_run_paces_its_client_by_phase(settings, monkeypatch, alice):
    import httpx

    from stacks.dokploy.client import DokployClient
    from stacks.models import DeploymentAttempt, Stack
    from stacks.pipeline import Run

    settings.DOKPLOY_PHASE_RATE = 2
    clock = FakeClock(3000.5)
    monkeypatch.setattr(throttle, "_clock", clock)
    monkeypatch.setattr(throttle, "_sleep", clock.sleep)
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json=[]))
    client = DokployClient.from_settings(
        base_url="http://dokploy.test", api_key="k" * 20, transport=transport, breaker=None
    )
    stack = Stack.objects.create(owner=alice, username="alice")
    run = Run(
        DeploymentAttempt.objects.create(stack=stack, kind="create"), owner="w", client=client
    )

    run.phase = "domain"
    for _ in range(3):
        client.domain_by_application_id("app-1")
    assert clock.slept == [pytest.approx(0.5)]
    run.phase = "deploy"
    client.deployment_all("app-1")
    assert len(clock.slept) == 1
