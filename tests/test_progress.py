"""What the progress page makes of an attempt's rows: lines, states, titles, causes."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from stacks import progress
from stacks.models import BreakerState, DeploymentAttempt
from stacks.resilience import CircuitBreaker
from tests.pages import attempt, deployed_stack, make_stack, step

Status = DeploymentAttempt.Status
State = progress.RowState


def view(row: DeploymentAttempt, now=None) -> progress.Progress:
    return progress.build(row, list(row.steps.order_by("seq")), now=now or timezone.now())


def states(shown: progress.Progress) -> list[str]:
    return [row.state.value for row in shown.rows]


def test_a_running_create_counts_its_lines(alice):
    running = attempt(make_stack(alice), Status.RUNNING)
    step(running, "project")
    step(running, "environment", status="skipped")
    step(running, "application", action="query")  # one step of the line done, more to come

    shown = view(running)

    assert states(shown) == ["done", "skipped", "running"] + ["waiting"] * 4
    assert shown.title == "Deploying 3/7"
    assert shown.heading == "Creating your AI stack"


def test_durations_add_up_and_a_running_step_counts_until_now(alice):
    running = attempt(make_stack(alice), Status.RUNNING)
    now = timezone.now()
    step(running, "health", duration_ms=300, action="query")
    step(running, "health", status="running", action="query", started_at=now - timedelta(seconds=2))

    row = view(running, now).rows[6]

    assert row.duration == timedelta(seconds=2.3)
    assert row.state == State.RUNNING


def test_retries_are_summed_and_the_live_retry_is_read_from_the_running_step(alice):
    running = attempt(make_stack(alice), Status.RUNNING)
    when = timezone.now() + timedelta(seconds=4)
    step(running, "project", retries=2)
    step(running, "environment", status="running", current_try=2, next_try_at=when)

    rows = view(running).rows

    assert rows[0].retries == 2
    assert rows[0].retry is None
    assert rows[1].retry == progress.RetryNote(try_number=3, of=6, at=when)


def test_a_failed_create_names_the_phase_and_lists_the_rollback(alice):
    failed = attempt(
        make_stack(alice),
        Status.ROLLED_BACK,
        failure_phase="domain",
        error_code="BAD_REQUEST",
        error_message="domain.create failed: 400 BAD_REQUEST bad host",
        created_resources=[{"kind": "project", "name": "ai-stack-alice", "id": "p1"}],
    )
    step(failed, "project")
    step(failed, "domain", status="failed", error_code="BAD_REQUEST")
    undo = step(failed, "rollback", action="delete", summary="Removed project ai-stack-alice")

    shown = view(failed)

    assert (
        states(shown)
        == ["done", "not_reached", "not_reached", "not_reached", "failed"] + ["not_reached"] * 2
    )
    assert shown.title == "Failed"
    assert shown.failure == progress.Failure(
        phase="Domain",
        cause="Dokploy refused to create the domain.",
        message="domain.create failed: 400 BAD_REQUEST bad host",
        log_tail="",
        rollback=[undo],
        rollback_errors=[],
        created=["project ai-stack-alice"],
    )
    assert shown.can_retry
    assert not shown.opens_stack


def test_an_interrupted_step_is_not_taken_for_the_failure(alice):
    failed = attempt(
        make_stack(alice), Status.FAILED, failure_phase="deploy", error_code="DEPLOY_FAILED"
    )
    step(failed, "deploy", status="failed", error_code="INTERRUPTED", action="update")
    step(
        failed,
        "deploy",
        status="failed",
        action="update",
        error_code="DEPLOY_FAILED",
        api_response={"deployment": {}, "log_tail": "  step 3/4\nexit 1\n"},
    )

    failure = view(failed).failure
    assert failure is not None
    assert failure.log_tail == "step 3/4\nexit 1"


def test_a_cancelled_run_marks_where_it_stopped(alice):
    cancelled = attempt(
        make_stack(alice), Status.CANCELLED, failure_phase="deploy", error_code="CANCELLED"
    )
    step(cancelled, "deploy", status="failed", error_code="CANCELLED", action="update")

    shown = view(cancelled)

    assert shown.rows[5].state == State.CANCELLED
    assert shown.title == "Cancelled"
    assert shown.failure is not None
    assert shown.failure.cause == "It was cancelled on request."


@pytest.mark.parametrize(
    ("status", "fields", "title"),
    [
        (Status.QUEUED, {}, "Queued"),
        (Status.RUNNING, {"cancel_requested": True}, "Cancelling"),
        (
            Status.RUNNING,
            {"failure_phase": "domain", "rollback_started_at": timezone.now()},
            "Rolling back",
        ),
        (Status.SUCCEEDED, {}, "Ready"),
        (Status.FAILED, {}, "Failed"),
        (Status.ROLLED_BACK, {}, "Failed"),
        (Status.CANCELLED, {}, "Cancelled"),
    ],
)
def test_the_tab_title_says_the_state(alice, status, fields, title):
    row = attempt(make_stack(alice), status)
    for name, value in fields.items():
        setattr(row, name, value)

    assert view(row).title == title


@pytest.mark.parametrize(
    ("kind", "title", "lines"),
    [
        ("stop", "Stopped", ["Stop the application"]),
        ("start", "Ready", ["Start the application", "Health checks"]),
        (
            "teardown",
            "Removed",
            ["Find the project", "Delete the application", "Remove the project"],
        ),
    ],
)
def test_each_kind_has_its_own_lines(alice, kind, title, lines):
    done = attempt(deployed_stack(alice), Status.SUCCEEDED, kind=kind)

    shown = view(done)

    assert [row.label for row in shown.rows] == lines
    assert shown.title == title
    assert shown.opens_stack is (kind == "start")


def test_teardown_tells_its_two_project_steps_apart(alice):
    running = attempt(deployed_stack(alice), Status.RUNNING, kind="teardown")
    step(running, "project", action="query")
    step(running, "application", action="delete")
    step(running, "project", action="delete", status="running")

    shown = view(running)

    assert states(shown) == ["done", "done", "running"]
    assert shown.title == "Removing 3/3"


def test_a_resumed_run_is_noted_outside_the_lines(alice):
    running = attempt(make_stack(alice), Status.RUNNING)
    note = step(running, "queue", action="query", summary="Run 2: resumed after an interrupted run")

    assert view(running).notes == [note]


def test_a_summary_that_only_repeats_the_line_is_left_out(alice):
    running = attempt(make_stack(alice), Status.RUNNING)
    step(running, "deploy", action="update", summary="Deploy", status="running")

    assert view(running).rows[5].summary == ""


def test_load_reads_the_open_breaker_without_writing(alice, settings):
    settings.BREAKER_RESET = 60
    running = attempt(make_stack(alice), Status.RUNNING)
    assert CircuitBreaker().peek() is None
    opened = timezone.now() - timedelta(seconds=10)
    BreakerState.objects.create(name="dokploy", state="open", opened_at=opened)

    shown = progress.load(running)

    assert shown.dokploy_retry_at == opened + timedelta(seconds=60)
    assert BreakerState.objects.count() == 1


@pytest.mark.parametrize(
    ("code", "cause"),
    [
        ("UNHEALTHY", "The stack was deployed but did not answer its health checks in time."),
        ("BREAKER_OPEN", "Dokploy stopped answering, so the portal stopped sending it requests."),
        (
            "SERVICE_UNAVAILABLE",
            "Dokploy had an internal error and could not create the domain, "
            "even after several tries.",
        ),
        ("UNAUTHORIZED", "Dokploy refused the portal's API key; staff need to fix the key."),
        ("SOMETHING_NEW", "Dokploy could not create the domain."),
    ],
)
def test_causes_in_plain_words(alice, code, cause):
    failed = attempt(make_stack(alice), Status.FAILED, failure_phase="domain", error_code=code)
    failing = step(failed, "domain", status="failed", error_code=code)

    assert progress.plain_cause(failed, failing) == cause


def test_every_kind_of_attempt_is_shown_with_its_own_timeline():
    assert set(progress.KINDS) == set(DeploymentAttempt.Kind.values)
