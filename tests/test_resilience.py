"""The retry policy and the shared circuit breaker: every transition, with the clock controlled."""

from __future__ import annotations

import logging
import multiprocessing
import queue
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
import respx
import time_machine
from django.db import connection, connections

from stacks.dokploy.client import DokployClient
from stacks.dokploy.errors import DokployError, parse_retry_after
from stacks.models import BreakerState
from stacks.resilience import CircuitBreaker, RetryPolicy, Ticket
from tests.dokploy.client_fixtures import API, make_client, trpc_error

OPENED = datetime(2026, 3, 1, 14, 2, 27, tzinfo=UTC)


@pytest.fixture
def clock() -> Iterator[time_machine.Traveller]:
    with time_machine.travel(OPENED, tick=False) as traveller:
        yield traveller


@pytest.fixture
def breaker(db: None) -> CircuitBreaker:
    return CircuitBreaker("dokploy", failures=5, reset=60.0, successes=3, probe_timeout=15.0)


@pytest.fixture
def api() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=False) as router:
        yield router


def fail(breaker: CircuitBreaker, times: int = 1) -> None:
    for _ in range(times):
        breaker.record_failure(breaker.claim())


def succeed(breaker: CircuitBreaker, times: int = 1) -> None:
    for _ in range(times):
        breaker.record_success(breaker.claim())


def outage() -> httpx.Response:
    return httpx.Response(503, json=trpc_error(503, "SERVICE_UNAVAILABLE", "down", "x"))


# --- Retry policy -----------------------------------------------------------------------------


def test_backoff_doubles_from_the_base():
    policy = RetryPolicy(base=1.5, jitter=False)

    assert [policy.backoff(n) for n in range(1, 6)] == [1.5, 3.0, 6.0, 12.0, 24.0]


def test_jitter_adds_at_most_a_quarter(monkeypatch):
    policy = RetryPolicy(base=2.0, jitter=True)
    monkeypatch.setattr("stacks.resilience.random.uniform", lambda low, high: high)
    assert policy.backoff(3) == 8.0 * 1.25
    monkeypatch.setattr("stacks.resilience.random.uniform", lambda low, high: low)
    assert policy.backoff(3) == 8.0


def test_retry_after_wins_over_backoff_and_is_capped():
    policy = RetryPolicy(base=1.0, retry_after_max=10.0, jitter=False)
    limited = DokployError(
        endpoint="x",
        code="TOO_MANY_REQUESTS",
        message="",
        status=429,
        retryable=True,
        retry_after=4.0,
    )
    very_limited = DokployError(
        endpoint="x",
        code="TOO_MANY_REQUESTS",
        message="",
        status=429,
        retryable=True,
        retry_after=400.0,
    )
    unlimited = DokployError(
        endpoint="x", code="TOO_MANY_REQUESTS", message="", status=429, retryable=True
    )

    assert policy.wait_after(limited, 3) == 4.0
    assert policy.wait_after(very_limited, 1) == 10.0
    assert policy.wait_after(unlimited, 3) == 4.0


def test_retry_after_parses_seconds_and_dates(clock):
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(" 2.5 ") == 2.5
    assert parse_retry_after(format_datetime(OPENED + timedelta(seconds=9), usegmt=True)) == 9.0
    assert parse_retry_after(format_datetime(OPENED - timedelta(seconds=9), usegmt=True)) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_policy_stops_at_the_first_permanent_error():
    waits: list[float] = []
    tries: list[int] = []
    policy = RetryPolicy(base=1.0, jitter=False, sleep=waits.append)

    def attempt(try_number: int) -> None:
        tries.append(try_number)
        status = 503 if try_number < 3 else 400
        raise DokployError(
            endpoint="x", code="C", message="", status=status, retryable=status == 503
        )

    with pytest.raises(DokployError) as caught:
        policy.run(attempt, endpoint="x")

    assert tries == [1, 2, 3]
    assert waits == [1.0, 2.0]
    assert caught.value.status == 400


# --- Closed -----------------------------------------------------------------------------------


def test_closed_opens_after_exactly_five_consecutive_failures(breaker, clock, caplog):
    fail(breaker, 4)
    assert breaker.snapshot().state == "closed"
    assert breaker.snapshot().consecutive_failures == 4

    fail(breaker)

    snapshot = breaker.snapshot()
    assert snapshot.state == "open"
    assert snapshot.consecutive_failures == 5
    assert snapshot.opened_at == OPENED
    assert snapshot.retry_at == OPENED + timedelta(seconds=60)
    [warning] = [r for r in caplog.records if r.name == "stacks.resilience"]
    assert warning.levelno == logging.WARNING
    assert "open after 5 consecutive failures" in warning.getMessage()


def test_a_success_resets_the_failure_count(breaker, clock):
    fail(breaker, 4)
    succeed(breaker)
    fail(breaker, 4)

    assert breaker.snapshot().state == "closed"
    assert breaker.snapshot().consecutive_failures == 4


def test_client_errors_never_count_as_failures(breaker, api, clock):
    api.get(f"{API}/project.all").mock(
        return_value=httpx.Response(400, json=trpc_error(400, "BAD_REQUEST", "no", "x"))
    )

    with make_client(breaker=breaker) as client:
        for _ in range(7):
            with pytest.raises(DokployError):
                client.project_all()

    assert breaker.snapshot().state == "closed"
    assert breaker.snapshot().consecutive_failures == 0


def test_a_client_error_shows_dokploy_is_up_and_resets_the_count(breaker, api, clock):
    waits: list[float] = []
    api.get(f"{API}/project.all").mock(
        side_effect=[outage(), outage(), httpx.Response(404, json={"message": "gone"})]
    )

    with make_client(breaker=breaker, waits=waits) as client, pytest.raises(DokployError):
        client.project_all()

    assert breaker.snapshot().consecutive_failures == 0


def test_a_429_counts_neither_way(api, db, clock):
    breaker = CircuitBreaker(failures=3, reset=60.0, successes=3)
    route = api.get(f"{API}/project.all").mock(
        side_effect=[outage(), httpx.Response(429), outage(), outage(), outage()]
    )

    with make_client(breaker=breaker, waits=[]) as client, pytest.raises(DokployError) as err:
        client.project_all()

    # Three failures around the 429 open the breaker: the 429 neither counted nor reset.
    assert route.call_count == 4
    assert err.value.code == "BREAKER_OPEN"


def test_the_breaker_stops_a_calls_own_retries(breaker, api, clock):
    waits: list[float] = []
    route = api.get(f"{API}/deployment.all").mock(return_value=outage())

    with make_client(breaker=breaker, waits=waits) as client, pytest.raises(DokployError) as err:
        client.deployment_all("app_1")

    assert route.call_count == 5
    assert waits == [1.0, 2.0, 4.0, 8.0]
    assert err.value.code == "BREAKER_OPEN"
    assert str(err.value) == "Dokploy unavailable, retry after 14:03:27"
    assert isinstance(err.value.__cause__, DokployError)
    assert err.value.__cause__.status == 503


# --- Open -------------------------------------------------------------------------------------


def test_open_fails_fast_without_a_request(breaker, api, clock):
    fail(breaker, 5)
    route = api.post(f"{API}/project.create")
    calls: list[Any] = []

    with make_client(breaker=breaker, calls=calls) as client, pytest.raises(DokployError) as err:
        client.project_create(name="ai-stack-alice")

    assert route.call_count == 0
    assert calls == []
    error = err.value
    assert error.code == "BREAKER_OPEN"
    assert error.retry_at == datetime(2026, 3, 1, 14, 3, 27, tzinfo=UTC)
    assert str(error) == "Dokploy unavailable, retry after 14:03:27"
    assert not error.retryable
    assert not error.ambiguous


def test_open_stays_open_until_reset_seconds_have_passed(breaker, clock):
    fail(breaker, 5)
    clock.shift(timedelta(seconds=59.9))

    with pytest.raises(DokployError) as err:
        breaker.claim("project.all")

    assert err.value.code == "BREAKER_OPEN"
    assert err.value.endpoint == "project.all"
    assert breaker.snapshot().state == "open"


# --- Half-open --------------------------------------------------------------------------------


@pytest.fixture
def half_open_due(breaker: CircuitBreaker, clock: time_machine.Traveller) -> CircuitBreaker:
    fail(breaker, 5)
    clock.shift(timedelta(seconds=60))
    return breaker


def test_after_reset_exactly_one_probe_goes_through(half_open_due):
    probe = half_open_due.claim()

    assert probe.probe
    assert half_open_due.snapshot().state == "half_open"
    for _ in range(3):
        with pytest.raises(DokployError) as err:
            half_open_due.claim()
        assert err.value.code == "BREAKER_OPEN"
    assert BreakerState.objects.get(name="dokploy").probe_started_at == probe.probe_claimed_at


def test_a_failed_probe_opens_again(half_open_due, clock):
    half_open_due.record_failure(half_open_due.claim())

    snapshot = half_open_due.snapshot()
    assert snapshot.state == "open"
    assert snapshot.opened_at == OPENED + timedelta(seconds=60)
    with pytest.raises(DokployError) as err:
        half_open_due.claim()
    assert str(err.value) == "Dokploy unavailable, retry after 14:04:27"
    clock.shift(timedelta(seconds=60))
    assert half_open_due.claim().probe


def test_three_successful_probes_close(half_open_due, caplog):
    for expected in (1, 2):
        ticket = half_open_due.claim()
        assert ticket.probe
        half_open_due.record_success(ticket)
        snapshot = half_open_due.snapshot()
        assert (snapshot.state, snapshot.consecutive_successes) == ("half_open", expected)

    half_open_due.record_success(half_open_due.claim())

    snapshot = half_open_due.snapshot()
    assert snapshot.state == "closed"
    assert snapshot.consecutive_failures == 0
    assert snapshot.opened_at is None
    assert not half_open_due.claim().probe
    assert any("closed" in r.getMessage() for r in caplog.records)


def test_two_successes_then_a_failure_open_again(half_open_due):
    succeed(half_open_due, 2)
    assert half_open_due.snapshot().consecutive_successes == 2

    fail(half_open_due)

    snapshot = half_open_due.snapshot()
    assert snapshot.state == "open"
    assert snapshot.consecutive_successes == 0
    half_open_due.reset = 0.0
    succeed(half_open_due, 2)
    assert half_open_due.snapshot().state == "half_open"  # the count started again


def test_a_stale_probe_may_be_taken_over(half_open_due, clock):
    lost = half_open_due.claim()
    clock.shift(timedelta(seconds=14))
    with pytest.raises(DokployError):
        half_open_due.claim()

    clock.shift(timedelta(seconds=2))
    taken_over = half_open_due.claim()

    assert taken_over.probe
    half_open_due.record_success(lost)  # the lost probe's late answer changes nothing
    assert half_open_due.snapshot().consecutive_successes == 0
    half_open_due.record_success(taken_over)
    assert half_open_due.snapshot().consecutive_successes == 1


def test_a_429_probe_gives_the_claim_back(half_open_due, api):
    api.get(f"{API}/project.all").mock(side_effect=[httpx.Response(429), outage()])

    with make_client(breaker=half_open_due, waits=[]) as client, pytest.raises(DokployError):
        client.project_all()

    # The 429 released the claim, so the retry could probe: its 503 opened the breaker again.
    assert half_open_due.snapshot().state == "open"


def test_probes_through_the_client_close_the_breaker(half_open_due, api):
    route = api.get(f"{API}/project.all").respond(json=[])

    with make_client(breaker=half_open_due) as client:
        for _ in range(3):
            client.project_all()

    assert route.call_count == 3
    assert half_open_due.snapshot().state == "closed"


def test_a_non_probe_answer_arriving_late_changes_nothing(half_open_due):
    half_open_due.record_failure(Ticket())
    half_open_due.record_success(Ticket())

    assert half_open_due.snapshot().state == "open"


def test_reset_breaker_closes_it(breaker, clock):
    fail(breaker, 5)

    breaker.reset_breaker()

    snapshot = breaker.snapshot()
    assert (snapshot.state, snapshot.consecutive_failures, snapshot.retry_at) == ("closed", 0, None)
    assert not breaker.claim().probe


def test_breakers_with_different_names_are_separate(breaker, clock):
    other = CircuitBreaker("other", failures=5, reset=60.0, successes=3)
    fail(breaker, 5)

    assert other.snapshot().state == "closed"
    assert not other.claim().probe


# --- Processes racing for the probe -----------------------------------------------------------

RACERS = 6


def _open_long_ago(name: str = "dokploy") -> None:
    from django.utils import timezone

    BreakerState.objects.update_or_create(
        name=name,
        defaults={
            "state": BreakerState.State.OPEN,
            "consecutive_failures": 5,
            "opened_at": timezone.now() - timedelta(seconds=120),
            "probe_started_at": None,
        },
    )


def _child(db_name: str, barrier: Any, results: Any, work: Any) -> None:
    """Runs in a forked process: its own database connection, then `work()` at the barrier."""
    try:
        connections["default"].settings_dict["NAME"] = db_name
        barrier.wait(timeout=20)
        results.put(work())
    except BaseException as exc:
        results.put(f"crashed: {exc!r}")
    finally:
        connections.close_all()


def _claim_probe() -> str:
    try:
        ticket = CircuitBreaker(reset=60.0, probe_timeout=60.0).claim()
    except DokployError as error:
        return error.code
    return "probe" if ticket.probe else "closed"


def _race(work: Any, *, release: threading.Event | None = None) -> list[str]:
    """Start RACERS forked processes together; their results, once all have answered."""
    db_name = connection.settings_dict["NAME"]
    connections.close_all()  # children must open their own connections
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(RACERS)
    results = context.Queue()
    children = [
        context.Process(target=_child, args=(db_name, barrier, results, work), daemon=True)
        for _ in range(RACERS)
    ]
    for child in children:
        child.start()
    outcomes: list[str] = []
    try:
        while len(outcomes) < RACERS:
            if release is not None and len(outcomes) == RACERS - 1:
                release.set()
            outcomes.append(results.get(timeout=30))
    except queue.Empty:
        pass
    finally:
        if release is not None:
            release.set()
        for child in children:
            child.join(timeout=10)
            if child.is_alive():
                child.kill()
                child.join()
    return outcomes


@pytest.mark.django_db(transaction=True)
def test_processes_racing_for_the_half_open_claim_get_exactly_one_probe():
    _open_long_ago()

    outcomes = _race(_claim_probe)

    assert sorted(outcomes) == ["BREAKER_OPEN"] * (RACERS - 1) + ["probe"]
    row = BreakerState.objects.get(name="dokploy")
    assert row.state == BreakerState.State.HALF_OPEN
    assert row.probe_started_at is not None


class _CountingHandler(BaseHTTPRequestHandler):
    server: _CountingServer

    def do_GET(self) -> None:
        with self.server.lock:
            self.server.hits += 1
        # Hold the probe's answer until every other process has been turned away.
        self.server.release.wait(timeout=30)
        body = b"[]"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _CountingServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _CountingHandler)
        self.hits = 0
        self.lock = threading.Lock()
        self.release = threading.Event()


@pytest.fixture
def counting_server() -> Iterator[_CountingServer]:
    server = _CountingServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.release.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.mark.django_db(transaction=True)
def test_processes_calling_dokploy_through_a_half_open_breaker_send_one_request(counting_server):
    _open_long_ago()
    url = f"http://127.0.0.1:{counting_server.server_address[1]}"

    def call_dokploy() -> str:
        breaker = CircuitBreaker(reset=60.0, probe_timeout=60.0)
        with DokployClient(
            base_url=url, api_key="race-key-123456", breaker=breaker, timeout=30.0, jitter=False
        ) as client:
            try:
                client.project_all()
            except DokployError as error:
                return error.code
        return "answered"

    outcomes = _race(call_dokploy, release=counting_server.release)

    assert sorted(outcomes) == ["BREAKER_OPEN"] * (RACERS - 1) + ["answered"]
    assert counting_server.hits == 1
    row = BreakerState.objects.get(name="dokploy")
    assert (row.state, row.consecutive_successes, row.probe_started_at) == ("half_open", 1, None)


# --- Recovery look-ups and deadlines ----------------------------------------------------------


def test_recovery_look_ups_do_not_reset_the_failure_count(breaker, api, clock):
    """domain.create failing six times with 503: each try is followed by a successful look-up
    for what it may have created; the look-ups show nothing about domain.create itself."""
    create = api.post(f"{API}/domain.create").mock(return_value=outage())
    no_domains = httpx.Response(200, json=[])
    lookup = api.get(f"{API}/domain.byApplicationId").mock(return_value=no_domains)

    with make_client(breaker=breaker, waits=[]) as client, pytest.raises(DokployError) as err:
        client.domain_create(host="alice.ai.example.com", application_id="app_1", port=8080)

    assert create.call_count == 5
    assert lookup.call_count == 4
    assert err.value.code == "BREAKER_OPEN"
    snapshot = breaker.snapshot()
    assert (snapshot.state, snapshot.consecutive_failures) == ("open", 5)


def test_a_failed_recovery_look_up_counts_as_a_failure(breaker, api, clock):
    api.post(f"{API}/domain.create").mock(return_value=outage())
    api.get(f"{API}/domain.byApplicationId").mock(return_value=outage())

    with make_client(breaker=breaker, waits=[]) as client, pytest.raises(DokployError):
        client.domain_create(host="alice.ai.example.com", application_id="app_1", port=8080)

    # create, look-up (fails: counts), ... until five failures in a row open the breaker.
    assert breaker.snapshot().state == "open"
    assert api.calls.call_count == 5


def test_a_retry_wait_longer_than_the_time_left_ends_the_call(api, clock, db):
    route = api.get(f"{API}/deployment.all").mock(return_value=outage())
    waits: list[float] = []
    deadline = datetime(2026, 3, 1, 14, 2, 32, tzinfo=UTC)  # five seconds from now

    def time_left() -> float:
        return (deadline - datetime.now(UTC)).total_seconds()

    def wait(seconds: float) -> None:
        waits.append(seconds)
        clock.shift(seconds)

    with (
        make_client(retry_base=1.0, time_left=time_left, sleep=wait) as client,
        pytest.raises(DokployError) as err,
    ):
        client.deployment_all("app_1")

    # Tries at 0, 1 and 3 s; the next wait (4 s) would end past the deadline at 5 s.
    assert route.call_count == 3
    assert waits == [1.0, 2.0]
    assert err.value.code == "DEADLINE_EXCEEDED"
    assert "no time left for try 4 (2.0 s to the deadline)" in err.value.message
    assert "503 SERVICE_UNAVAILABLE" in err.value.message


def test_a_request_timeout_is_cut_to_the_time_left(api, db):
    seen: list[float] = []

    def slow(request: httpx.Request) -> httpx.Response:
        seen.append(request.extensions["timeout"]["read"])
        return httpx.Response(200, json=[])

    api.get(f"{API}/deployment.all").mock(side_effect=slow)

    with make_client(timeout=10.0, time_left=lambda: 2.5) as client:
        client.deployment_all("app_1")

    assert seen == [2.5]


def test_no_time_left_sends_nothing(api, db):
    route = api.get(f"{API}/deployment.all")

    with (
        make_client(time_left=lambda: 0.0) as client,
        pytest.raises(DokployError) as err,
    ):
        client.deployment_all("app_1")

    assert route.call_count == 0
    assert err.value.code == "DEADLINE_EXCEEDED"
