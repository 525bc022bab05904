"""The admin is for audit: the pipeline's records are append-only, for superusers too."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from stacks.models import BreakerState, DeploymentAttempt, DeploymentStep, DokployCall, Stack


@pytest.fixture
def staff_client(client, db):
    User.objects.create_superuser("staff", "staff@example.com", "password")
    client.login(username="staff", password="password")
    return client


@pytest.fixture
def records(alice):
    stack = Stack.objects.create(owner=alice, username="alice", project_id="p1")
    attempt = DeploymentAttempt.objects.create(stack=stack, kind="create")
    step = DeploymentStep.objects.create(
        attempt=attempt,
        seq=1,
        phase="domain",
        action="create",
        status="failed",
        summary="Create domain",
        error_code="BAD_REQUEST",
    )
    call = DokployCall.objects.create(
        endpoint="domain.create", method="POST", status_code=400, duration_ms=12, attempt=attempt
    )
    breaker = BreakerState.objects.create(name="dokploy", consecutive_failures=2)
    return {"stack": stack, "attempt": attempt, "step": step, "call": call, "breaker": breaker}


def counts() -> tuple[int, ...]:
    return (
        Stack.objects.count(),
        DeploymentAttempt.objects.count(),
        DeploymentStep.objects.count(),
        DokployCall.objects.count(),
        BreakerState.objects.count(),
    )


def test_staff_audit_an_attempt_with_its_steps(staff_client, records):
    attempt = records["attempt"]
    listing = staff_client.get("/admin/stacks/deploymentattempt/")
    detail = staff_client.get(f"/admin/stacks/deploymentattempt/{attempt.pk}/change/")

    assert listing.status_code == 200
    assert detail.status_code == 200
    assert b"BAD_REQUEST" in detail.content


@pytest.mark.parametrize("model", ["deploymentattempt", "dokploycall", "breakerstate", "stack"])
def test_records_cannot_be_added_by_hand(staff_client, model):
    assert staff_client.get(f"/admin/stacks/{model}/add/").status_code == 403


@pytest.mark.parametrize(
    ("model", "key"),
    [("deploymentattempt", "attempt"), ("dokploycall", "call"), ("breakerstate", "breaker")],
)
def test_records_cannot_be_deleted_one_by_one(staff_client, records, model, key):
    pk = records[key].pk
    before = counts()

    page = staff_client.get(f"/admin/stacks/{model}/{pk}/delete/")
    posted = staff_client.post(f"/admin/stacks/{model}/{pk}/delete/", {"post": "yes"})

    assert (page.status_code, posted.status_code) == (403, 403)
    assert counts() == before


@pytest.mark.parametrize(
    ("model", "key", "answer"),
    [
        # A list with staff actions answers an unknown action with "No action selected." and
        # a redirect back to it; a list without actions just shows itself again.
        ("deploymentattempt", "attempt", 302),
        ("dokploycall", "call", 200),
        ("breakerstate", "breaker", 302),
    ],
)
def test_records_cannot_be_bulk_deleted(staff_client, records, model, key, answer):
    pk = records[key].pk
    before = counts()

    listing = staff_client.get(f"/admin/stacks/{model}/")
    posted = staff_client.post(
        f"/admin/stacks/{model}/",
        {"action": "delete_selected", "_selected_action": [pk], "post": "yes"},
    )

    assert b"delete_selected" not in listing.content
    assert posted.status_code == answer
    assert counts() == before


def test_attempt_fields_cannot_be_changed(staff_client, records):
    attempt = records["attempt"]
    detail = staff_client.get(f"/admin/stacks/deploymentattempt/{attempt.pk}/change/")
    posted = staff_client.post(
        f"/admin/stacks/deploymentattempt/{attempt.pk}/change/",
        {"kind": "teardown", "status": "succeeded", "error_code": "FORGED"},
    )

    assert b'name="error_code"' not in detail.content  # shown as text, not as an input
    assert posted.status_code == 403
    attempt.refresh_from_db()
    assert (attempt.kind, attempt.status, attempt.error_code) == ("create", "queued", "")


def test_steps_cannot_be_changed_or_deleted_through_their_attempt(staff_client, records):
    attempt, step = records["attempt"], records["step"]
    detail = staff_client.get(f"/admin/stacks/deploymentattempt/{attempt.pk}/change/")

    assert b"steps-0-DELETE" not in detail.content
    assert b'name="steps-0-summary"' not in detail.content
    step.refresh_from_db()
    assert step.summary == "Create domain"


def test_breaker_cannot_be_edited(staff_client, records):
    posted = staff_client.post(
        "/admin/stacks/breakerstate/dokploy/change/",
        {"state": "closed", "consecutive_failures": 0, "consecutive_successes": 0},
    )

    assert posted.status_code == 403
    assert BreakerState.objects.get().consecutive_failures == 2


def test_stack_fields_cannot_be_edited(staff_client, records):
    stack = records["stack"]
    posted = staff_client.post(
        f"/admin/stacks/stack/{stack.pk}/change/",
        {"username": "mallory", "host": "evil.example.com", "project_id": ""},
    )

    assert posted.status_code == 403
    stack.refresh_from_db()
    assert (stack.username, stack.project_id) == ("alice", "p1")


def test_deleting_a_stack_that_owns_dokploy_resources_points_to_teardown(staff_client, records):
    stack = records["stack"]
    before = counts()

    response = staff_client.post(
        f"/admin/stacks/stack/{stack.pk}/delete/", {"post": "yes"}, follow=True
    )

    assert counts() == before
    text = response.content.decode()
    assert "still owns project p1" in text
    assert "teardown_stack alice" in text


def test_a_stack_with_history_keeps_it(staff_client, records):
    stack = records["stack"]
    Stack.objects.filter(pk=stack.pk).update(project_id="")
    before = counts()

    page = staff_client.get(f"/admin/stacks/stack/{stack.pk}/delete/")
    staff_client.post(f"/admin/stacks/stack/{stack.pk}/delete/", {"post": "yes"})

    assert b"Cannot delete stack" in page.content
    assert counts() == before


def test_an_empty_stack_row_can_be_deleted(staff_client, bob):
    stack = Stack.objects.create(owner=bob, username="bob")

    listing = staff_client.get("/admin/stacks/stack/")
    response = staff_client.post(f"/admin/stacks/stack/{stack.pk}/delete/", {"post": "yes"})

    assert b"delete_selected" not in listing.content
    assert response.status_code == 302
    assert not Stack.objects.filter(pk=stack.pk).exists()
