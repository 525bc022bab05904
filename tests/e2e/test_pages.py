"""What a person does in the browser, end to end: real Chromium, live server, real worker."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.utils import timezone
from playwright.sync_api import expect

from stacks.dokploy.simulator import trpc_error_body
from stacks.models import DeploymentAttempt, Stack
from tests.e2e.conftest import STACK_DOMAIN, Visit

pytestmark = [
    pytest.mark.e2e,
    # pytest-base-url (which pytest-playwright uses) defines its session fixture in a way
    # pytest 9 deprecates; nothing of ours to change.
    pytest.mark.filterwarnings(
        "ignore:Session-scoped fixtures defined as instance methods:pytest.PytestRemovedIn10Warning"
    ),
]

Status = DeploymentAttempt.Status


def create_and_wait_until_ready(visit: Visit) -> None:
    visit.go("/")
    visit.page.get_by_role("button", name="Create my AI stack").click()
    expect(visit.page).to_have_title(re.compile(r"^Ready · Create #"))


def test_create_watch_it_get_ready_open_it_and_find_it_in_history(visit, e2e_simulator):
    page = visit.page
    e2e_simulator.deploy_seconds = 3.0  # long enough to see the deploy phase running
    visit.go("/")
    expect(page.get_by_role("link", name="Sign in")).to_have_count(2)
    visit.check("home-signed-out", photo=True)
    visit.settings.DEBUG = True  # the local "sign in as" form exists only with DEBUG on
    visit.go("/sign-in")
    expect(page.get_by_label("Username")).to_be_visible()
    visit.check("sign-in", photo=True)
    visit.settings.DEBUG = False
    visit.sign_in("alice")

    visit.go("/")
    expect(page.locator("#quota")).to_have_text("0 of 10 deployments used in the last hour.")
    visit.check("home", photo=True)
    page.get_by_role("button", name="Create my AI stack").click()

    expect(page).to_have_url(re.compile(r"/attempts/\d+/$"))
    page.evaluate("window.stillTheSamePage = true")
    expect(page).to_have_title(re.compile(r"^Deploying 6/7 · Create #"))
    expect(page.locator(".step--running .step-name")).to_have_text("Deploy")
    visit.check("progress-running", photo=True)
    expect(page).to_have_title(re.compile(r"^Ready · Create #"))
    assert page.evaluate("window.stillTheSamePage") is True  # updated in place, no reload
    expect(page.locator(".step--done")).to_have_count(6)
    expect(page.locator(".step--skipped .step-name")).to_have_text("Environment")
    # Times are shown in the viewer's zone (Berlin), not in the UTC the server renders.
    expect(page.locator(".meta time")).not_to_contain_text("UTC")
    visit.check("progress-ready", photo=True)
    page.set_viewport_size({"width": 390, "height": 844})  # a phone
    visit.check("progress-ready-phone", photo=True)
    page.set_viewport_size({"width": 1100, "height": 760})

    page.get_by_role("link", name="Open my AI stack").click()
    expect(page).to_have_url(f"{e2e_simulator.url}/_stack/alice.{STACK_DOMAIN}/")
    expect(page).to_have_title("ttyd - opencode")
    expect(page.locator("#terminal-container")).to_contain_text("opencode @ opencode-alice")

    page.go_back()
    visit.nav("History")
    row = page.locator("tbody tr")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("Create")
    expect(row).to_contain_text("Succeeded")
    expect(row).to_contain_text("you")
    visit.check("history", photo=True)
    visit.nav("My AI stack")
    expect(page.locator("#stack-status")).to_have_text("Running")
    visit.check("stack", photo=True)


def test_a_failure_says_where_and_why_and_what_was_rolled_back(visit, e2e_simulator):
    page = visit.page
    message = f"Domain frank.{STACK_DOMAIN} is already used by another application"
    e2e_simulator.fail("domain.create", status=400, body=trpc_error_body(400, message, None))
    visit.sign_in("frank")

    visit.go("/")
    page.get_by_role("button", name="Create my AI stack").click()

    expect(page).to_have_title(re.compile(r"^Failed · Create #"))
    failure = page.locator(".failure")
    expect(failure.locator("dd").first).to_have_text("Domain")
    expect(page.locator("#failure-cause")).to_have_text("Dokploy refused to create the domain.")
    expect(page.locator("#rollback")).to_contain_text("Deleted application opencode-frank")
    expect(page.locator("#rollback")).to_contain_text("Removed project ai-stack-frank")
    page.get_by_text("Dokploy's message").click()
    expect(failure.locator("pre")).to_contain_text(message)
    visit.check("progress-failed", photo=True)
    state = e2e_simulator.state()
    assert (state["projects"], state["applications"], state["domains"]) == ({}, {}, {})

    page.get_by_role("button", name="Try again").click()
    expect(page).to_have_title(re.compile(r"^Ready · Create #"))
    assert DeploymentAttempt.objects.filter(status=Status.SUCCEEDED).count() == 1


def test_stop_start_and_delete_from_the_stack_page(visit, e2e_simulator):
    page = visit.page
    visit.sign_in("dave")
    create_and_wait_until_ready(visit)

    visit.go("/stack/")
    page.get_by_role("button", name="Stop").click()
    expect(page).to_have_title(re.compile(r"^Stopped · Stop #"))
    visit.nav("My AI stack")
    expect(page.locator("#stack-status")).to_have_text("Stopped")
    visit.check("stack-stopped")

    page.get_by_role("button", name="Start").click()
    expect(page).to_have_title(re.compile(r"^Ready · Start #"))
    expect(page.get_by_role("link", name="Open my AI stack")).to_be_visible()

    visit.go("/stack/")
    page.get_by_role("link", name="Delete…").click()
    removed = page.locator("#removed")
    expect(removed).to_contain_text("the application opencode-dave")
    expect(removed).to_contain_text(f"its domain dave.{STACK_DOMAIN}")
    expect(removed).to_contain_text("the project ai-stack-dave")
    expect(page.get_by_label("Also delete my files")).not_to_be_checked()
    visit.check("delete-confirmation", photo=True)
    page.get_by_label("Also delete my files").check()
    page.get_by_role("button", name="Yes, delete my AI stack").click()
    expect(page).to_have_title(re.compile(r"^Removed · Teardown #"))
    expect(page.locator("#files-outcome")).to_have_text("Your files were deleted too.")
    assert e2e_simulator.state()["projects"] == {}
    assert e2e_simulator.state()["volumes"] == {}

    visit.go("/")
    expect(page.get_by_role("button", name="Create my AI stack")).to_be_visible()


def test_over_the_limit_a_request_is_queued_with_its_start_time(visit, settings):
    page = visit.page
    settings.DEPLOY_RATE_LIMIT = 2
    visit.sign_in("erin")
    stack = Stack.objects.create(
        owner=User.objects.get(username="erin"), username="erin", host=f"erin.{STACK_DOMAIN}"
    )
    first_start = timezone.now().replace(microsecond=0) - timedelta(minutes=50)
    for started in (first_start, first_start + timedelta(minutes=10)):
        done = DeploymentAttempt.objects.create(stack=stack, kind="create")
        done.transition(Status.RUNNING)
        done.transition(Status.SUCCEEDED)
        DeploymentAttempt.objects.filter(pk=done.pk).update(
            started_at=started, finished_at=started + timedelta(seconds=40)
        )

    visit.go("/")
    expect(page.locator("#quota")).to_contain_text(
        "You have used all 2 deployments allowed in the last hour."
    )
    next_start = (first_start + timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    expect(page.locator(f'#quota time[datetime="{next_start}"]')).to_have_count(1)
    visit.check("home-limit-reached", photo=True)
    page.get_by_role("button", name="Create my AI stack").click()

    expect(page).to_have_title(re.compile(r"^Queued · Create #"))
    expect(page.locator("#queue-note")).to_contain_text("Your deployment limit lets it start at")
    expect(page.locator(f'#queue-note time[datetime="{next_start}"]')).to_have_count(1)
    visit.check("progress-queued", photo=True)
    page.get_by_role("link", name="Cancel").click()
    page.get_by_role("button", name="Yes, cancel it").click()
    expect(page).to_have_title(re.compile(r"^Cancelled · Create #"))
    expect(page.locator("#rollback")).to_contain_text("Cancelled by erin before it started")


def test_while_every_slot_is_busy_a_request_waits_its_turn(visit, bob, charlie):
    """Two slots (tests.e2e.settings), both taken; creates usually take 45 s here."""
    page = visit.page
    busy_since = timezone.now().replace(microsecond=0)
    for owner, seconds in ((bob, 40), (charlie, 50)):
        stack = Stack.objects.create(owner=owner, username=owner.username)
        done = DeploymentAttempt.objects.create(stack=stack, kind="create")
        done.transition(Status.RUNNING)
        done.transition(Status.SUCCEEDED)
        end = timezone.now() - timedelta(hours=2)
        DeploymentAttempt.objects.filter(pk=done.pk).update(
            started_at=end - timedelta(seconds=seconds), finished_at=end
        )
        busy = DeploymentAttempt.objects.create(stack=stack, kind="create")
        # Held by a live worker elsewhere for the length of the test.
        busy.transition(
            Status.RUNNING,
            started_at=busy_since,
            lease_owner="elsewhere:1:00000000",
            lease_expires_at=timezone.now() + timedelta(minutes=10),
        )
    visit.sign_in("grace")

    visit.go("/")
    page.get_by_role("button", name="Create my AI stack").click()

    expect(page).to_have_title(re.compile(r"^Queued · Create #"))
    note = page.locator("#queue-note")
    expect(note).to_contain_text("Waiting for its turn: number 1 in line.")
    expect(note).to_contain_text("Expected to start at")
    # When the first of the two is expected to finish.
    start = (busy_since + timedelta(seconds=45)).isoformat().replace("+00:00", "Z")
    expect(note.locator(f'time[datetime="{start}"]')).to_have_count(1)
    expect(page.locator(".meta")).to_contain_text("This usually takes about 45 s.")
    page.get_by_role("link", name="Cancel").click()
    page.get_by_role("button", name="Yes, cancel it").click()
    expect(page).to_have_title(re.compile(r"^Cancelled · Create #"))


def test_another_persons_pages_do_not_exist(visit, alice):
    stack = Stack.objects.create(owner=alice, username="alice", host=f"alice.{STACK_DOMAIN}")
    theirs = DeploymentAttempt.objects.create(stack=stack, kind="create")
    theirs.transition(  # held by a live worker elsewhere for the length of the test
        Status.RUNNING,
        lease_owner="elsewhere:1:00000000",
        lease_expires_at=timezone.now() + timedelta(minutes=10),
    )
    visit.sign_in("bob")

    for path in (f"/attempts/{theirs.pk}/", f"/attempts/{theirs.pk}/cancel"):
        response = visit.page.goto(visit.url(path))
        assert response is not None
        assert response.status == 404
        expect(visit.page).to_have_title("Not found · AI Stack Portal")
    visit.check("not-found", photo=True)
    theirs.refresh_from_db()
    assert (theirs.status, theirs.cancel_requested) == (Status.RUNNING, False)


def test_cancel_a_running_deployment_and_see_it_cleaned_up(visit, e2e_simulator):
    page = visit.page
    # Long enough to cancel during the deploy phase. The simulator cannot cut a deployment
    # short, so this test comes last: the next one would wait for its simulated deployment.
    e2e_simulator.deploy_seconds = 8.0
    visit.sign_in("carol")
    visit.go("/")
    page.get_by_role("button", name="Create my AI stack").click()
    expect(page).to_have_title(re.compile(r"^Deploying 6/7"))

    page.get_by_role("link", name="Cancel").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Cancel this create?")
    visit.check("cancel-confirmation")
    page.get_by_role("button", name="Yes, cancel it").click()

    expect(page).to_have_title(re.compile(r"^Cancelled · Create #"))
    expect(page.locator(".failure h2")).to_have_text("Cancelled")
    expect(page.locator(".step--cancelled .step-name")).to_have_text("Deploy")
    expect(page.locator("#rollback")).to_contain_text("Deleted application opencode-carol")
    visit.check("progress-cancelled")
    state = e2e_simulator.state()
    assert (state["projects"], state["applications"]) == ({}, {})
