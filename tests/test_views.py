"""The self-service pages through the Django test client: every page, action and rule."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta

import pytest
import time_machine
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from stacks.models import BreakerState, DeploymentAttempt, DeploymentStep, DokployCall, Stack
from tests.pages import attempt, deployed_stack, finished, make_stack, step

Status = DeploymentAttempt.Status

HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def as_alice(client: Client, alice: User) -> Client:
    client.force_login(alice)
    return client


@pytest.fixture
def as_bob(bob: User) -> Client:
    other = Client()
    other.force_login(bob)
    return other


def page(response) -> str:
    return str(response.content.decode())


def form_key(html: str) -> str:
    match = re.search(r'name="key" value="([0-9a-f-]{36})"', html)
    assert match, "no idempotency key in the page"
    return match.group(1)


def messages_of(response) -> list[str]:
    return [str(message) for message in response.context["messages"]]


def row_counts() -> tuple[int, ...]:
    return (
        User.objects.count(),
        Stack.objects.count(),
        DeploymentAttempt.objects.count(),
        DeploymentStep.objects.count(),
        BreakerState.objects.count(),
    )


# --- Home ---------------------------------------------------------------------------------------


def test_home_signed_out_offers_sign_in(client, db):
    response = client.get("/")

    assert response.status_code == 200
    assert 'href="/sign-in"' in page(response)
    assert 'id="create-button"' not in page(response)


def test_home_signed_in_without_stack_shows_the_button_and_the_quota(as_alice):
    response = as_alice.get("/")

    html = page(response)
    assert response.status_code == 200
    assert 'id="create-button">Create my AI stack</button>' in html
    assert 'action="/stack/create"' in html
    assert "0 of 10 deployments used in the last hour." in html
    assert "https://alice.ai.localhost" in html
    uuid.UUID(form_key(html))
    assert Stack.objects.count() == 0  # a GET creates nothing


@time_machine.travel("2026-03-01 12:00:00+00:00", tick=False)
def test_home_when_the_quota_is_used_up_says_when_the_next_one_can_start(as_alice, alice, settings):
    settings.DEPLOY_RATE_LIMIT = 2
    stack = make_stack(alice)
    finished(stack, 30, ago=1200)  # started 11:39:30
    finished(stack, 30, ago=600)  # started 11:49:30

    html = page(as_alice.get("/"))

    assert "You have used all 2 deployments allowed in the last hour." in html
    # The older of the two started at 11:39:30; its slot frees one hour later.
    assert '<time datetime="2026-03-01T12:39:30Z" data-local="time">12:39:30 UTC</time>' in html
    assert "(in 39 min)" in html
    assert "your request waits in the queue and starts then by itself" in html


def test_home_with_a_deployed_stack_goes_to_the_stack_page(as_alice, alice):
    deployed_stack(alice)

    response = as_alice.get("/")

    assert response.status_code == 302
    assert response["Location"] == "/stack/"


def test_home_tells_a_person_whose_username_cannot_own_a_stack(client, db):
    client.force_login(User.objects.create_user("Bad_Name"))

    html = page(client.get("/"))

    assert "cannot own a stack" in html
    assert 'id="create-button"' not in html


def test_home_links_a_failed_last_attempt_and_an_active_one(as_alice, alice):
    stack = make_stack(alice)
    failed = attempt(stack, Status.ROLLED_BACK, failure_phase="domain", error_code="BAD_REQUEST")

    html = page(as_alice.get("/"))
    assert f'href="/attempts/{failed.pk}/"' in html
    assert "ended as <strong>rolled back</strong>" in html

    active = attempt(stack, Status.RUNNING)
    html = page(as_alice.get("/"))
    assert f'href="/attempts/{active.pk}/" id="follow-link"' in html
    assert 'id="create-button"' not in html


# --- Asking for a change --------------------------------------------------------------------------


def test_create_makes_one_attempt_and_lands_on_its_progress_page(as_alice, alice):
    key = form_key(page(as_alice.get("/")))

    response = as_alice.post("/stack/create", {"key": key})

    created = DeploymentAttempt.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/attempts/{created.pk}/"
    assert (created.kind, created.status, created.requested_by) == ("create", "queued", alice)
    assert created.idempotency_key == uuid.UUID(key)


def test_a_double_click_on_create_makes_one_attempt(as_alice):
    key = str(uuid.uuid4())

    first = as_alice.post("/stack/create", {"key": key})
    second = as_alice.post("/stack/create", {"key": key})

    assert DeploymentAttempt.objects.count() == 1
    assert first["Location"] == second["Location"]
    assert messages_of(as_alice.get(second["Location"])) == []


def test_the_same_key_is_not_reused_for_another_action(as_alice, alice):
    stack = deployed_stack(alice)
    key = uuid.uuid4()
    attempt(stack, Status.SUCCEEDED, kind="stop", idempotency_key=key)
    Stack.objects.filter(pk=stack.pk).update(observed_state=Stack.Observed.STOPPED)

    response = as_alice.post("/stack/start", {"key": str(key)}, follow=True)

    assert DeploymentAttempt.objects.count() == 1
    assert messages_of(response) == ["This form was already used; reload the page and try again."]


def test_a_form_without_its_key_asks_nothing(as_alice):
    response = as_alice.post("/stack/create", {}, follow=True)

    assert DeploymentAttempt.objects.count() == 0
    assert messages_of(response) == ["That form was incomplete; please use the button again."]


def test_create_while_busy_shows_the_attempt_in_progress(as_alice, alice):
    busy = attempt(make_stack(alice), Status.RUNNING)

    response = as_alice.post("/stack/create", {"key": str(uuid.uuid4())}, follow=True)

    assert response.redirect_chain == [(f"/attempts/{busy.pk}/", 302)]
    assert messages_of(response) == [
        "A create of this stack is already running. Follow it here; it must end first."
    ]
    assert DeploymentAttempt.objects.count() == 1


@pytest.mark.parametrize(
    ("action", "observed", "message"),
    [
        ("stop", None, "There is no deployed stack to stop yet; create it first."),
        ("start", None, "There is no deployed stack to start yet; create it first."),
        ("redeploy", None, "There is no deployed stack to redeploy yet; create it first."),
        ("stop", "stopped", "Your stack is already stopped; nothing to stop."),
        ("start", "healthy", "Your stack is already running; nothing to start."),
    ],
)
def test_lifecycle_refusals_become_messages(as_alice, alice, action, observed, message):
    if observed is None:
        make_stack(alice)
    else:
        deployed_stack(alice, observed_state=observed)

    response = as_alice.post(f"/stack/{action}", {"key": str(uuid.uuid4())}, follow=True)

    assert response.status_code == 200
    assert messages_of(response) == [message]
    assert DeploymentAttempt.objects.count() == 0


def test_an_invalid_username_is_a_message_not_an_error(client, db):
    client.force_login(User.objects.create_user("root"))

    response = client.post("/stack/create", {"key": str(uuid.uuid4())}, follow=True)

    assert response.status_code == 200
    assert messages_of(response) == [
        "'root' cannot own a stack: “root” is reserved; choose another username."
    ]


def test_an_unknown_action_is_404(as_alice):
    assert as_alice.post("/stack/explode", {"key": str(uuid.uuid4())}).status_code == 404


@pytest.mark.parametrize("url", ["/stack/create", "/stack/stop", "/stack/delete", "/sign-out"])
def test_every_change_needs_the_csrf_token(alice, url):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(alice)

    response = browser.post(url, {"key": str(uuid.uuid4())})

    assert response.status_code == 403
    assert "This form has expired" in page(response)
    assert DeploymentAttempt.objects.count() == 0


def test_a_post_with_the_csrf_token_goes_through(alice):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(alice)
    html = page(browser.get("/"))
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html)
    assert token

    response = browser.post(
        "/stack/create", {"key": form_key(html), "csrfmiddlewaretoken": token.group(1)}
    )

    assert response.status_code == 302
    assert DeploymentAttempt.objects.count() == 1


@pytest.mark.parametrize("url", ["/stack/create", "/sign-out", "/attempts/1/retry"])
def test_changes_are_never_gets(as_alice, url):
    assert as_alice.get(url).status_code == 405


def test_no_page_changes_anything_on_get(as_alice, alice, settings):
    settings.DEBUG = True  # the sign-in form too
    stack = deployed_stack(alice)
    running = attempt(stack, Status.RUNNING)
    before = row_counts()

    expected = {
        "/": 302,  # to the stack page
        "/stack/": 200,
        "/stack/delete": 200,
        f"/attempts/{running.pk}/": 200,
        f"/attempts/{running.pk}/cancel": 200,
        "/history/": 200,
        "/sign-in": 200,
    }
    answered = {url: as_alice.get(url).status_code for url in expected}
    polled = {url: as_alice.get(url, **HTMX).status_code for url in expected}

    assert answered == polled == expected

    assert row_counts() == before
    running.refresh_from_db()
    assert (running.status, running.cancel_requested) == (Status.RUNNING, False)


# --- The stack page -----------------------------------------------------------------------------


def test_stack_page_shows_state_address_times_and_actions(as_alice, alice, settings):
    stack = deployed_stack(alice)
    finished(stack, 40, ago=120)
    settings.STACK_URL = "http://127.0.0.1:3900/_stack/{host}"

    html = page(as_alice.get("/stack/"))

    assert '<p class="badge badge--stack-running" id="stack-status">Running</p>' in html
    assert 'id="open-stack" href="http://127.0.0.1:3900/_stack/alice.ai.example.test/"' in html
    assert "https://alice.ai.example.test" in html
    assert "Last deployed</dt><dd><time" in html
    assert "(2 min ago)" in html
    assert 'id="redeploy-button"' in html
    assert 'id="stop-button"' in html
    assert 'id="start-button"' not in html
    assert 'href="/stack/delete"' in html
    assert 'id="update-available"' not in html


def test_stack_page_says_when_an_update_is_available(as_alice, alice, settings):
    deployed_stack(alice, image="ghcr.io/ai-stack/opencode-ttyd:1.0")
    settings.STACK_IMAGE = "ghcr.io/ai-stack/opencode-ttyd:1.1"

    html = page(as_alice.get("/stack/"))

    assert 'id="update-available">Update available' in html
    assert "Deploy the new image <code>ghcr.io/ai-stack/opencode-ttyd:1.1</code>." in html


def test_a_stopped_stack_offers_start(as_alice, alice):
    deployed_stack(alice, observed_state=Stack.Observed.STOPPED)

    html = page(as_alice.get("/stack/"))

    assert ">Stopped</p>" in html
    assert 'id="start-button"' in html
    assert 'id="stop-button"' not in html
    assert 'id="open-stack"' not in html


def test_while_an_attempt_runs_the_stack_page_links_it_and_offers_no_actions(as_alice, alice):
    busy = attempt(deployed_stack(alice), Status.RUNNING, kind="stop")

    html = page(as_alice.get("/stack/"))

    assert ">Stopping</p>" in html
    assert f'href="/attempts/{busy.pk}/" id="follow-link"' in html
    assert 'id="redeploy-button"' not in html


def test_stack_page_without_a_stack_goes_home(as_alice):
    assert as_alice.get("/stack/")["Location"] == "/"


@pytest.mark.parametrize("action", ["redeploy", "stop"])
def test_actions_start_an_attempt(as_alice, alice, action):
    deployed_stack(alice)

    response = as_alice.post(f"/stack/{action}", {"key": str(uuid.uuid4())})

    made = DeploymentAttempt.objects.get()
    assert made.kind == action
    assert response["Location"] == f"/attempts/{made.pk}/"


def test_start_of_a_stopped_stack(as_alice, alice):
    deployed_stack(alice, observed_state=Stack.Observed.STOPPED)

    as_alice.post("/stack/start", {"key": str(uuid.uuid4())})

    assert DeploymentAttempt.objects.get().kind == "start"


def test_delete_confirmation_names_what_is_removed_and_changes_nothing(as_alice, alice):
    deployed_stack(alice)
    before = row_counts()

    html = page(as_alice.get("/stack/delete"))

    assert row_counts() == before
    assert "the application <code>opencode-alice</code>" in html
    assert "its domain <code>alice.ai.example.test</code> and its running service" in html
    assert "the project <code>ai-stack-alice</code>" in html
    assert "Your files in <code>/workspace</code> are <strong>kept</strong>" in html
    assert '<input type="checkbox" name="delete_data" id="id_delete_data">' in html


def test_confirmed_delete_starts_a_teardown_that_keeps_the_files(as_alice, alice):
    deployed_stack(alice)
    key = form_key(page(as_alice.get("/stack/delete")))

    response = as_alice.post("/stack/delete", {"key": key})

    made = DeploymentAttempt.objects.get()
    assert (made.kind, made.delete_data) == ("teardown", False)
    assert response["Location"] == f"/attempts/{made.pk}/"


def test_the_ticked_box_deletes_the_files_too(as_alice, alice):
    deployed_stack(alice)
    key = form_key(page(as_alice.get("/stack/delete")))

    as_alice.post("/stack/delete", {"key": key, "delete_data": "on"})

    made = DeploymentAttempt.objects.get()
    assert (made.kind, made.delete_data) == ("teardown", True)


def test_the_stack_page_says_where_the_files_are_kept_and_the_limits(as_alice, alice, settings):
    stack = deployed_stack(alice)
    Stack.objects.filter(pk=stack.pk).update(
        memory_limit_bytes=2 * 1024**3, cpu_limit_nanos=1_500_000_000
    )
    settings.STACK_MEMORY_LIMIT_BYTES = None  # changed since: applies at the next redeploy

    html = page(as_alice.get("/stack/"))

    assert "Kept in <code>/workspace</code>" in html
    assert '<dd id="limits">Memory 2 GiB, CPU 1.5 CPUs</dd>' in html


def test_delete_without_a_stack_goes_home_with_a_message(as_alice):
    response = as_alice.get("/stack/delete", follow=True)

    assert messages_of(response) == ["There is no stack to delete."]


# --- The progress page --------------------------------------------------------------------------


def test_progress_page_of_a_queued_attempt(as_alice, alice):
    queued = attempt(make_stack(alice))

    response = as_alice.get(f"/attempts/{queued.pk}/")

    html = page(response)
    assert response.status_code == 200
    assert "<title>Queued · Create #" in html
    assert f'hx-get="/attempts/{queued.pk}/" hx-trigger="every 1s"' in html
    assert "Waiting for its turn: number 1 in line." in html
    assert 'id="cancel-button"' in html
    assert '<noscript><meta http-equiv="refresh" content="5"></noscript>' in html


def test_the_polled_partial_carries_the_tab_title_and_keeps_polling(as_alice, alice):
    running = attempt(make_stack(alice), Status.RUNNING)
    step(running, "project")
    step(running, "environment", status="running", action="query")

    response = as_alice.get(f"/attempts/{running.pk}/", **HTMX)

    html = page(response)
    assert response.status_code == 200
    assert html.lstrip().startswith("<title>Deploying 2/7 · Create #")
    assert "<html" not in html
    assert 'class="step step--done"' in html
    assert 'class="step step--running" aria-current="step"' in html
    assert html.count('class="step step--waiting"') == 5


def test_polling_stops_with_286_once_the_attempt_ended(as_alice, alice, settings):
    settings.STACK_URL = "http://127.0.0.1:3900/_stack/{host}"
    done = attempt(deployed_stack(alice), Status.SUCCEEDED)
    for phase in ("project", "environment", "application", "domain", "deploy", "health"):
        step(done, phase)

    response = as_alice.get(f"/attempts/{done.pk}/", **HTMX)

    html = page(response)
    assert response.status_code == 286
    assert html.lstrip().startswith("<title>Ready · Create #")
    assert 'id="open-stack" href="http://127.0.0.1:3900/_stack/alice.ai.example.test/"' in html
    assert "hx-trigger" not in html
    assert html.count('class="step step--done"') == 6


def test_a_finished_page_does_not_poll(as_alice, alice):
    done = attempt(make_stack(alice), Status.CANCELLED, error_message="Cancelled by alice")

    html = page(as_alice.get(f"/attempts/{done.pk}/"))

    assert "hx-trigger" not in html
    assert "<title>Cancelled · Create #" in html
    assert "Nothing had been created, so there was nothing to clean up." in html
    assert 'id="retry-button"' in html


@time_machine.travel("2026-03-01 12:00:00+00:00", tick=False)
def test_a_retried_call_shows_when_and_which_try(as_alice, alice):
    running = attempt(make_stack(alice), Status.RUNNING)
    step(running, "project")
    step(
        running,
        "environment",
        status="running",
        current_try=2,
        next_try_at=timezone.now() + timedelta(seconds=4),
    )

    html = page(as_alice.get(f"/attempts/{running.pk}/", **HTMX))

    assert "retrying in 4 s, try 3 of 6" in html


def test_a_try_in_flight_after_retries_shows_its_number(as_alice, alice):
    running = attempt(make_stack(alice), Status.RUNNING)
    step(running, "project", status="running", current_try=4)

    html = page(as_alice.get(f"/attempts/{running.pk}/", **HTMX))

    assert "try 4 of 6</p>" in html
    assert "retrying" not in html


@time_machine.travel("2026-03-01 12:00:00+00:00", tick=False)
def test_an_open_breaker_is_explained_with_when_dokploy_is_tried_again(as_alice, alice, settings):
    settings.BREAKER_RESET = 60
    BreakerState.objects.create(
        name="dokploy", state="open", opened_at=timezone.now() - timedelta(seconds=20)
    )
    running = attempt(make_stack(alice), Status.RUNNING)

    html = page(as_alice.get(f"/attempts/{running.pk}/", **HTMX))

    assert 'id="breaker-note">Dokploy is not answering right now' in html
    assert '<time datetime="2026-03-01T12:00:40Z" data-local="time">' in html
    assert "(in 40 s)" in html


def test_the_progress_page_reads_the_breaker_without_creating_it(as_alice, alice):
    running = attempt(make_stack(alice), Status.RUNNING)
    before = row_counts()

    html = page(as_alice.get(f"/attempts/{running.pk}/"))

    assert row_counts() == before
    assert "breaker-note" not in html


def test_a_failure_shows_the_phase_the_cause_dokploy_message_and_the_rollback(as_alice, alice):
    failed = attempt(
        make_stack(alice),
        Status.ROLLED_BACK,
        failure_phase="domain",
        error_code="BAD_REQUEST",
        error_message="domain.create failed: 400 BAD_REQUEST Domain already exists",
        created_resources=[
            {"kind": "project", "name": "ai-stack-alice", "id": "p1"},
            {"kind": "application", "name": "opencode-alice", "id": "a1"},
        ],
    )
    for phase in ("project", "environment", "application"):
        step(failed, phase)
    step(failed, "domain", status="failed", error_code="BAD_REQUEST")
    step(failed, "rollback", action="delete", summary="Deleted application opencode-alice")
    step(failed, "rollback", action="delete", summary="Removed project ai-stack-alice")

    html = page(as_alice.get(f"/attempts/{failed.pk}/"))

    assert "<title>Failed · Create #" in html
    assert "<dt>Failed at</dt><dd>Domain</dd>" in html
    assert 'id="failure-cause">Dokploy refused to create the domain.</dd>' in html
    assert "<summary>Dokploy's message</summary>" in html
    assert "Domain already exists</pre>" in html
    assert "Deleted application opencode-alice" in html
    assert "Removed project ai-stack-alice" in html
    assert 'class="step step--failed"' in html
    assert html.count('class="step step--not_reached"') == 3
    assert 'id="retry-button">Try again' in html
    assert 'id="cancel-button"' not in html


def test_a_deploy_failure_shows_the_build_log_tail(as_alice, alice):
    failed = attempt(
        make_stack(alice),
        Status.FAILED,
        failure_phase="deploy",
        error_code="DEPLOY_FAILED",
        error_message="Simulated deployment failure",
        rollback_errors=["project ai-stack-alice: kept project"],
    )
    step(
        failed,
        "deploy",
        status="failed",
        action="update",
        error_code="DEPLOY_FAILED",
        api_response={"deployment": {"status": "error"}, "log_tail": "pulling image\nno space\n"},
    )

    html = page(as_alice.get(f"/attempts/{failed.pk}/"))

    assert "Dokploy could not start your stack&#x27;s container; the build log says why." in html
    assert "<summary>Dokploy's message and the build log</summary>" in html
    assert "pulling image\nno space</pre>" in html
    assert "Some of it could not be removed and is still in Dokploy" in html
    assert "project ai-stack-alice: kept project" in html


def test_while_rolling_back_the_cause_and_the_cleanup_are_live(as_alice, alice):
    running = attempt(
        make_stack(alice),
        Status.RUNNING,
        failure_phase="domain",
        error_code="BAD_REQUEST",
        rollback_started_at=timezone.now(),
    )
    step(running, "domain", status="failed")
    step(running, "rollback", status="running", action="delete", summary="Undo application x")

    html = page(as_alice.get(f"/attempts/{running.pk}/", **HTMX))

    assert html.lstrip().startswith("<title>Rolling back")
    assert "It failed at <strong>Domain</strong>: Dokploy refused to create the domain." in html
    assert "<h2>Cleaning up</h2>" in html
    assert "Undo application x" in html


def test_a_teardown_has_its_own_timeline(as_alice, alice):
    running = attempt(deployed_stack(alice), Status.RUNNING, kind="teardown")
    step(running, "project", action="query", summary="Found project ai-stack-alice (p1)")
    step(running, "application", action="delete", status="running")

    html = page(as_alice.get(f"/attempts/{running.pk}/"))

    assert "<title>Removing 2/3" in html
    assert "Deleting your AI stack" in html
    assert "Remove the project" in html


@pytest.mark.parametrize("steps", [3, 40])
def test_the_partial_costs_a_fixed_number_of_queries(
    as_alice, alice, django_assert_num_queries, steps
):
    """Session, user, attempt, steps, typical durations, breaker: as many for 3 steps as 40."""
    running = attempt(make_stack(alice), Status.RUNNING)
    for n in range(steps):
        step(running, "health", action="query", summary=f"check {n}", retries=1)
        DokployCall.objects.create(
            endpoint="application.one", method="GET", duration_ms=5, attempt=running, phase="health"
        )

    with django_assert_num_queries(6):
        response = as_alice.get(f"/attempts/{running.pk}/", **HTMX)

    assert response.status_code == 200
    assert page(response).count("step-summary") == 1


@pytest.mark.parametrize("ahead", [0, 30])
def test_the_queued_partial_costs_nine_queries(
    as_alice, alice, bob, django_assert_num_queries, settings, ahead
):
    """Plus the queue: the position, the attempts out and the attempts waiting."""
    settings.MAX_CONCURRENT_DEPLOYMENTS = 1
    finished(make_stack(bob), 40)
    attempt(bob.stack, Status.RUNNING)
    for n in range(ahead):
        attempt(make_stack(User.objects.create_user(f"user{n}")))
    queued = attempt(make_stack(alice))

    with django_assert_num_queries(9):
        response = as_alice.get(f"/attempts/{queued.pk}/", **HTMX)

    assert f"number {ahead + 1} in line" in page(response)
    assert "Expected to start at" in page(response)


def test_a_finished_partial_costs_four_queries(as_alice, alice, django_assert_num_queries):
    done = attempt(make_stack(alice), Status.SUCCEEDED)
    for phase in ("project", "environment", "application", "domain", "deploy", "health"):
        step(done, phase)

    with django_assert_num_queries(4):
        response = as_alice.get(f"/attempts/{done.pk}/", **HTMX)

    assert response.status_code == 286


# --- Cancel and try again -----------------------------------------------------------------------


def test_cancel_asks_for_confirmation_first(as_alice, alice):
    queued = attempt(make_stack(alice))

    html = page(as_alice.get(f"/attempts/{queued.pk}/cancel"))

    queued.refresh_from_db()
    assert queued.status == Status.QUEUED
    assert "Cancel this create?" in html
    assert "It has not started yet, so it simply leaves the queue." in html


def test_cancel_of_a_queued_attempt_ends_it(as_alice, alice):
    queued = attempt(make_stack(alice))

    response = as_alice.post(f"/attempts/{queued.pk}/cancel")

    queued.refresh_from_db()
    assert response["Location"] == f"/attempts/{queued.pk}/"
    assert queued.status == Status.CANCELLED


def test_cancel_of_a_running_attempt_asks_the_pipeline_to_stop(as_alice, alice):
    running = attempt(make_stack(alice), Status.RUNNING)

    as_alice.post(f"/attempts/{running.pk}/cancel")

    running.refresh_from_db()
    assert (running.status, running.cancel_requested) == (Status.RUNNING, True)
    html = page(as_alice.get(f"/attempts/{running.pk}/"))
    assert "<title>Cancelling" in html
    assert 'id="cancel-button"' not in html


def test_cancel_of_a_finished_attempt_is_a_message(as_alice, alice):
    done = attempt(make_stack(alice), Status.SUCCEEDED)

    response = as_alice.post(f"/attempts/{done.pk}/cancel", follow=True)

    assert messages_of(response) == ["This create already ended (Succeeded)."]
    page_response = as_alice.get(f"/attempts/{done.pk}/cancel", follow=True)
    assert messages_of(page_response) == ["This attempt has already ended."]


def test_try_again_makes_a_new_attempt_of_the_same_kind_once(as_alice, alice):
    failed = attempt(make_stack(alice), Status.ROLLED_BACK, failure_phase="domain")
    key = form_key(page(as_alice.get(f"/attempts/{failed.pk}/")))

    first = as_alice.post(f"/attempts/{failed.pk}/retry", {"key": key})
    second = as_alice.post(f"/attempts/{failed.pk}/retry", {"key": key})

    again = DeploymentAttempt.objects.exclude(pk=failed.pk).get()
    assert first["Location"] == second["Location"] == f"/attempts/{again.pk}/"
    assert (again.kind, again.status, again.requested_by) == ("create", "queued", alice)
    assert again.reason == f"Try again after attempt #{failed.pk}"


def test_try_again_of_a_success_is_a_message(as_alice, alice):
    done = attempt(make_stack(alice), Status.SUCCEEDED)

    response = as_alice.post(f"/attempts/{done.pk}/retry", {"key": str(uuid.uuid4())}, follow=True)

    assert messages_of(response) == ["This create succeeded; there is nothing to try again."]
    assert DeploymentAttempt.objects.count() == 1


# --- Another person's objects -------------------------------------------------------------------


def test_another_persons_attempt_is_404_and_stays_unchanged(as_bob, alice):
    running = attempt(make_stack(alice), Status.RUNNING)
    failed = attempt(make_stack(User.objects.create_user("carol")), Status.FAILED)
    before = row_counts()

    responses = [
        as_bob.get(f"/attempts/{running.pk}/"),
        as_bob.get(f"/attempts/{running.pk}/", **HTMX),
        as_bob.get(f"/attempts/{running.pk}/cancel"),
        as_bob.post(f"/attempts/{running.pk}/cancel"),
        as_bob.post(f"/attempts/{failed.pk}/retry", {"key": str(uuid.uuid4())}),
    ]

    assert [r.status_code for r in responses] == [404] * 5
    assert "Not found" in page(responses[0])
    running.refresh_from_db()
    assert (running.status, running.cancel_requested) == (Status.RUNNING, False)
    assert row_counts() == before


def test_another_persons_attempts_are_not_in_the_history(as_bob, alice, bob):
    attempt(make_stack(alice), Status.SUCCEEDED)
    mine = attempt(make_stack(bob), Status.SUCCEEDED)

    html = page(as_bob.get("/history/"))

    assert re.findall(r'href="/attempts/(\d+)/"', html) == [str(mine.pk)]


def test_signed_out_pages_ask_to_sign_in(client, db):
    for url in ("/stack/", "/history/", "/attempts/1/", "/stack/delete"):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"] == f"/sign-in?next={url}"


def test_a_poll_after_signing_out_sends_the_tab_to_the_sign_in_page(client, alice):
    queued = attempt(make_stack(alice))

    response = client.get(f"/attempts/{queued.pk}/", **HTMX)

    assert response.status_code == 403
    assert response["HX-Redirect"] == f"/sign-in?next=/attempts/{queued.pk}/"
    assert response.content == b""


# --- History ------------------------------------------------------------------------------------


def test_history_lists_every_attempt_newest_first_with_who_asked(as_alice, alice):
    stack = deployed_stack(alice)
    staff = User.objects.create_user("carol", is_staff=True)
    first = finished(stack, 75, ago=3000)
    second = attempt(
        stack, Status.ROLLED_BACK, kind="redeploy", requested_by=staff, failure_phase="deploy"
    )
    third = attempt(stack, Status.SUCCEEDED, kind="stop", requested_by=None)

    html = page(as_alice.get("/history/"))

    assert re.findall(r'href="/attempts/(\d+)/"', html) == [
        str(third.pk),
        str(second.pk),
        str(first.pk),
    ]
    assert "<td>1 min 15 s</td>" in html
    assert "<td>Deploy</td>" in html
    assert "<td>staff (carol)</td>" in html
    assert "<td>the portal</td>" in html
    assert "<td>you</td>" in html


def test_history_is_paginated(as_alice, alice):
    stack = make_stack(alice)
    for _ in range(25):
        attempt(stack, Status.CANCELLED)

    first = page(as_alice.get("/history/"))
    second = page(as_alice.get("/history/?page=2"))

    assert len(re.findall(r'href="/attempts/\d+/"', first)) == 20
    assert len(re.findall(r'href="/attempts/\d+/"', second)) == 5
    assert "Page 1 of 2" in first
    assert 'href="?page=2" rel="next">Older' in first


def test_history_is_in_the_navigation_of_every_page(as_alice, alice):
    queued = attempt(make_stack(alice))
    for url in ("/", "/history/", f"/attempts/{queued.pk}/", "/sign-in"):
        assert 'href="/history/"' in page(as_alice.get(url, follow=True))


# --- Sign in and out ----------------------------------------------------------------------------


def test_without_sso_and_debug_off_sign_in_is_not_configured(client, db, settings):
    settings.DEBUG = False
    settings.OIDC_ENABLED = False

    response = client.get("/sign-in")
    posted = client.post("/sign-in", {"username": "alice"})

    assert "Sign-in is not configured here" in page(response)
    assert 'href="/admin/login/?next=/admin/"' in page(response)
    assert posted.status_code == 405
    assert User.objects.count() == 0


def test_local_sign_in_creates_the_account_and_signs_in(client, db, settings):
    settings.DEBUG = True
    settings.OIDC_ENABLED = False

    form = client.get("/sign-in?next=/history/")
    response = client.post("/sign-in", {"username": "dora", "next": "/history/"})

    assert 'name="username"' in page(form)
    assert response["Location"] == "/history/"
    user = User.objects.get(username="dora")
    assert not user.has_usable_password()
    assert "dora</span>" in page(client.get("/history/"))


def test_local_sign_in_refuses_invalid_names_staff_and_foreign_next(client, db, settings):
    settings.DEBUG = True
    settings.OIDC_ENABLED = False
    User.objects.create_user("boss", is_staff=True)

    invalid = client.post("/sign-in", {"username": "Not Valid"})
    staff = client.post("/sign-in", {"username": "boss"})
    foreign = client.post("/sign-in", {"username": "erin", "next": "https://evil.example/"})

    assert "Use lowercase letters" in page(invalid)
    assert "Staff accounts sign in through the admin." in page(staff)
    assert User.objects.filter(username="Not Valid").exists() is False
    assert foreign["Location"] == "/"


def test_with_sso_sign_in_goes_to_the_provider(client, db, settings):
    settings.OIDC_ENABLED = True

    response = client.get("/sign-in?next=/history/")

    assert response.status_code == 302
    assert response["Location"] == "/oidc/authenticate/?next=%2Fhistory%2F"


def test_sign_out_ends_the_session(as_alice):
    response = as_alice.post("/sign-out", follow=True)

    assert messages_of(response) == ["You are signed out."]
    assert as_alice.get("/history/").status_code == 302


def test_the_header_shows_who_is_signed_in_and_a_sign_out_button(as_alice):
    html = page(as_alice.get("/"))

    assert '<span class="who" title="Signed in">alice</span>' in html
    assert '<form method="post" action="/sign-out"' in html


# --- Good manners -------------------------------------------------------------------------------


def test_pages_load_htmx_locally_and_no_inline_script(as_alice, alice):
    html = page(as_alice.get("/"))

    assert '<script src="/static/django_htmx/htmx-2.min.js" defer></script>' in html
    assert '<script src="/static/js/localtime.js" defer></script>' in html
    assert re.findall(r"<script(?![^>]*\bsrc=)", html) == []
    assert "https://" not in "".join(re.findall(r"<(?:script|link)[^>]*>", html))
    assert 'hx-headers=\'{"X-CSRFToken": "' in html
    assert 'rel="icon"' in html


def test_unknown_addresses_get_the_portal_404(client, db):
    response = client.get("/no-such-page")

    assert response.status_code == 404
    assert "There is nothing at this address, or it is not yours." in page(response)


def test_the_500_page_renders_without_a_request(db):
    from django.template.loader import render_to_string

    html = render_to_string("500.html")

    assert "Something went wrong on our side" in html
    assert "Sign in" not in html
