"""Staff actions from the admin: permission, confirmation, audit entry, and the outcome on the
Dokploy simulator through the real pipeline (the test cluster runs tasks inline)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.utils import timezone

from stacks import lifecycle, pipeline
from stacks.models import AppendOnly, DeploymentAttempt, Stack, StaffAction
from stacks.resilience import CircuitBreaker
from tests.crashes import kill_worker_after_created

Status = DeploymentAttempt.Status
REASON = "Ticket 4711: the user asked on chat"


def operator_user(username: str = "olga", *, operate: bool = True) -> User:
    user = User.objects.create_user(username, f"{username}@example.com", "password", is_staff=True)
    codenames = ["view_stack", "view_deploymentattempt", "view_breakerstate", "view_staffaction"]
    if operate:
        codenames.append("operate_stacks")
    user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    return user


@pytest.fixture
def olga(transactional_db) -> User:
    return operator_user()


@pytest.fixture
def olga_client(olga) -> Client:
    client = Client()
    client.force_login(olga)
    return client


def deploy(user: User, kind: str = "create") -> DeploymentAttempt:
    attempt = lifecycle.request_attempt(user, kind)
    attempt.refresh_from_db()
    return attempt


def act(
    client: Client, model: str, action: str, ids: Sequence[int | str], reason: str | None = REASON
):
    data: dict[str, object] = {"action": action, "_selected_action": [str(i) for i in ids]}
    if reason is not None:
        data.update(confirm="yes", reason=reason)
    return client.post(f"/admin/stacks/{model}/", data, follow=reason is not None)


def shown_messages(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def stack_of(user: User) -> Stack:
    return Stack.objects.get(owner=user)


def the_entry() -> StaffAction:
    return StaffAction.objects.get()


# --- Permission and confirmation --------------------------------------------------------------


def test_a_signed_in_user_who_is_not_staff_is_refused(dokploy, alice, bob):
    assert deploy(alice).status == Status.SUCCEEDED
    client = Client()
    client.force_login(bob)

    response = client.post(
        "/admin/stacks/stack/",
        {
            "action": "redeploy",
            "_selected_action": [stack_of(alice).pk],
            "confirm": "yes",
            "reason": "x",
        },
    )

    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")
    assert not StaffAction.objects.exists()
    assert DeploymentAttempt.objects.count() == 1


def test_staff_without_the_operate_permission_is_refused(dokploy, alice):
    assert deploy(alice).status == Status.SUCCEEDED
    viewer = operator_user("vera", operate=False)
    client = Client()
    client.force_login(viewer)

    listing = client.get("/admin/stacks/stack/")
    response = act(client, "stack", "redeploy", [stack_of(alice).pk])

    assert listing.status_code == 200
    assert b'value="redeploy"' not in listing.content
    # The action is not offered, so the admin just shows the list again.
    assert response.status_code == 200
    assert shown_messages(response) == []
    assert not StaffAction.objects.exists()
    assert DeploymentAttempt.objects.count() == 1


def test_the_confirmation_page_names_the_action_and_each_object(dokploy, alice, bob, olga_client):
    for user in (alice, bob):
        assert deploy(user).status == Status.SUCCEEDED
    ids = [stack_of(alice).pk, stack_of(bob).pk]

    page = act(olga_client, "stack", "teardown", ids, reason=None)

    assert page.status_code == 200
    assert page.templates[0].name == "admin/stacks/confirm_action.html"
    text = page.content.decode()
    assert "Tear down stacks: are you sure?" in text
    for user in (alice, bob):
        project = stack_of(user).project_id
        assert (
            f"<li><strong>{user.username}&#x27;s stack</strong>: queue a teardown: its "
            f"application, domains and service are deleted, then project {project}</li>"
        ) in text
    assert 'name="reason"' in text
    assert not StaffAction.objects.exists()
    assert DeploymentAttempt.objects.count() == 2


def test_a_reason_is_required(dokploy, alice, olga_client):
    assert deploy(alice).status == Status.SUCCEEDED

    page = act(olga_client, "stack", "stop", [stack_of(alice).pk], reason="   ")

    assert page.status_code == 200
    assert page.templates[0].name == "admin/stacks/confirm_action.html"
    assert "This field is required." in page.content.decode()
    assert not StaffAction.objects.exists()
    assert DeploymentAttempt.objects.count() == 1


# --- Each action: audit entry and outcome -----------------------------------------------------


def assert_entry(entry: StaffAction, *, by: User, action: str, outcome: str, target: str) -> None:
    assert entry.actor == by
    assert entry.actor_name == by.username
    assert entry.action == action
    assert entry.outcome == outcome
    assert entry.target == target
    assert entry.reason == REASON


def test_redeploy(dokploy, alice, olga, olga_client):
    assert deploy(alice).status == Status.SUCCEEDED

    response = act(olga_client, "stack", "redeploy", [stack_of(alice).pk])

    redeploy = DeploymentAttempt.objects.get(kind="redeploy")
    assert redeploy.status == Status.SUCCEEDED, redeploy.error_message
    assert (redeploy.requested_by, redeploy.reason) == (olga, REASON)
    assert lifecycle.asked_by_someone_else(redeploy) == "olga"
    assert dokploy.call_count("application.deploy") == 2
    assert shown_messages(response) == [
        f"alice's stack: done: queued attempt #{redeploy.pk} (redeploy of alice)"
    ]
    entry = the_entry()
    assert_entry(entry, by=olga, action="redeploy", outcome="done", target="stack alice")
    assert (entry.stack, entry.result_attempt, entry.attempt) == (stack_of(alice), redeploy, None)


def test_stop_then_start(dokploy, alice, olga, olga_client):
    assert deploy(alice).status == Status.SUCCEEDED

    act(olga_client, "stack", "stop", [stack_of(alice).pk])
    service = next(iter(dokploy.state()["services"].values()))
    stack = Stack.objects.get(owner=alice)
    assert (service["replicas"], stack.observed_state) == (0, Stack.Observed.STOPPED)

    act(olga_client, "stack", "start", [stack_of(alice).pk])
    service = next(iter(dokploy.state()["services"].values()))
    stack.refresh_from_db()
    assert (service["replicas"], stack.observed_state) == (1, Stack.Observed.HEALTHY)

    stop, start = StaffAction.objects.order_by("id")
    assert_entry(stop, by=olga, action="stop", outcome="done", target="stack alice")
    assert_entry(start, by=olga, action="start", outcome="done", target="stack alice")
    assert stop.result_attempt is not None and stop.result_attempt.kind == "stop"
    assert start.result_attempt is not None and start.result_attempt.status == Status.SUCCEEDED


def test_teardown(dokploy, alice, olga, olga_client):
    assert deploy(alice).status == Status.SUCCEEDED

    response = act(olga_client, "stack", "teardown", [stack_of(alice).pk])

    state = dokploy.state()
    assert (state["projects"], state["applications"], state["services"]) == ({}, {}, {})
    assert Stack.objects.get(owner=alice).observed_state == Stack.Observed.ABSENT
    teardown = DeploymentAttempt.objects.get(kind="teardown")
    assert shown_messages(response) == [
        f"alice's stack: done: queued attempt #{teardown.pk} (teardown of alice)"
    ]
    assert_entry(the_entry(), by=olga, action="teardown", outcome="done", target="stack alice")


def test_one_message_per_object_done_or_why_not(dokploy, alice, bob, olga, olga_client):
    for user in (alice, bob):
        assert deploy(user).status == Status.SUCCEEDED
    busy = lifecycle.request_attempt(bob, "stop", dispatch=False)
    assert pipeline.claim(busy.pk, "live-worker") is not None  # running, its worker alive

    response = act(olga_client, "stack", "redeploy", [stack_of(alice).pk, stack_of(bob).pk])

    redeploy = DeploymentAttempt.objects.get(kind="redeploy")
    assert sorted(shown_messages(response)) == [
        f"alice's stack: done: queued attempt #{redeploy.pk} (redeploy of alice)",
        "bob's stack: not done: A stop of this stack is already running.",
    ]
    refused = StaffAction.objects.get(stack=stack_of(bob))
    assert_entry(refused, by=olga, action="redeploy", outcome="refused", target="stack bob")
    assert refused.message == "A stop of this stack is already running."
    assert refused.attempt == busy
    assert StaffAction.objects.get(stack=stack_of(alice)).outcome == "done"
    assert len(set(StaffAction.objects.values_list("batch", flat=True))) == 1


def test_retry_a_failed_attempt(dokploy, alice, olga, olga_client):
    dokploy.fail("domain.create", times=1, status=400)
    failed = deploy(alice)
    assert failed.status == Status.ROLLED_BACK
    assert dokploy.state()["projects"] == {}

    response = act(olga_client, "deploymentattempt", "retry", [failed.pk])

    retry = DeploymentAttempt.objects.exclude(pk=failed.pk).get()
    assert (retry.kind, retry.status) == ("create", Status.SUCCEEDED)
    assert retry.requested_by == olga
    assert len(dokploy.state()["projects"]) == 1
    assert shown_messages(response) == [
        f"attempt #{failed.pk} (create of alice): done: queued attempt #{retry.pk} "
        "(create of alice) to retry it"
    ]
    entry = the_entry()
    target = f"attempt #{failed.pk} (create of alice)"
    assert_entry(entry, by=olga, action="retry", outcome="done", target=target)
    assert (entry.attempt, entry.result_attempt) == (failed, retry)


def test_retry_refuses_an_attempt_that_did_not_fail(dokploy, alice, olga, olga_client):
    done = deploy(alice)
    assert done.status == Status.SUCCEEDED

    response = act(olga_client, "deploymentattempt", "retry", [done.pk])

    assert shown_messages(response) == [
        f"attempt #{done.pk} (create of alice): not done: This create succeeded; there is "
        "nothing to try again."
    ]
    target = f"attempt #{done.pk} (create of alice)"
    assert_entry(the_entry(), by=olga, action="retry", outcome="refused", target=target)
    assert DeploymentAttempt.objects.count() == 1


def test_cancel_a_queued_attempt(dokploy, alice, olga, olga_client):
    queued = lifecycle.request_attempt(alice, "create", dispatch=False)

    response = act(olga_client, "deploymentattempt", "cancel", [queued.pk])

    queued.refresh_from_db()
    assert queued.status == Status.CANCELLED
    assert queued.error_message == "Cancelled by olga before it started"
    assert dokploy.calls() == []
    assert shown_messages(response) == [
        f"attempt #{queued.pk} (create of alice): done: cancelled before it started"
    ]
    target = f"attempt #{queued.pk} (create of alice)"
    assert_entry(the_entry(), by=olga, action="cancel", outcome="done", target=target)


def test_cancel_a_running_attempt_rolls_it_back(dokploy, alice, olga, olga_client):
    attempt = lifecycle.request_attempt(alice, "create", dispatch=False)

    def cancel_from_the_admin(step):
        if step.phase == "domain":
            act(olga_client, "deploymentattempt", "cancel", [attempt.pk])

    result = pipeline.run_attempt(attempt.pk, on_step=cancel_from_the_admin)

    assert result is not None
    assert result.status == Status.CANCELLED
    state = dokploy.state()
    assert (state["projects"], state["applications"], state["domains"]) == ({}, {}, {})
    entry = the_entry()
    target = f"attempt #{attempt.pk} (create of alice)"
    assert_entry(entry, by=olga, action="cancel", outcome="done", target=target)
    assert entry.message == "asked to stop at its next step; it will roll back what it created"


def test_cancel_refuses_an_attempt_that_ended(dokploy, alice, olga, olga_client):
    done = deploy(alice)

    response = act(olga_client, "deploymentattempt", "cancel", [done.pk])

    assert shown_messages(response) == [
        f"attempt #{done.pk} (create of alice): not done: This create already ended (Succeeded)."
    ]
    assert the_entry().outcome == "refused"


def test_resume_a_stuck_attempt(dokploy, alice, olga, olga_client, monkeypatch):
    attempt = lifecycle.request_attempt(alice, "create", dispatch=False)
    kill_worker_after_created(monkeypatch, attempt, "application")
    long_ago = timezone.now() - timedelta(minutes=5)
    DeploymentAttempt.objects.filter(pk=attempt.pk).update(
        lease_expires_at=long_ago, dispatched_at=long_ago
    )

    response = act(olga_client, "deploymentattempt", "resume", [attempt.pk])

    attempt.refresh_from_db()
    assert attempt.status == Status.SUCCEEDED, attempt.error_message
    assert attempt.runs == 2
    state = dokploy.state()
    assert (len(state["projects"]), len(state["applications"])) == (1, 1)
    assert dokploy.call_count("application.create") == 1
    assert shown_messages(response) == [
        f"attempt #{attempt.pk} (create of alice): done: handed back to a worker"
    ]
    entry = the_entry()
    target = f"attempt #{attempt.pk} (create of alice)"
    assert_entry(entry, by=olga, action="resume", outcome="done", target=target)
    assert (entry.attempt, entry.result_attempt) == (attempt, attempt)


def test_resume_leaves_an_attempt_whose_worker_is_alive(dokploy, alice, olga, olga_client):
    attempt = lifecycle.request_attempt(alice, "create", dispatch=False)
    claimed = pipeline.claim(attempt.pk, "live-worker")
    assert claimed is not None

    response = act(olga_client, "deploymentattempt", "resume", [attempt.pk])

    claimed.refresh_from_db()
    until = timezone.localtime(claimed.lease_expires_at).strftime("%H:%M:%S")
    assert shown_messages(response) == [
        f"attempt #{attempt.pk} (create of alice): not done: its worker is alive "
        f"(lease held by live-worker until {until})"
    ]
    assert claimed.status == Status.RUNNING
    assert claimed.runs == 1
    assert the_entry().outcome == "refused"
    assert dokploy.calls() == []


def test_reset_the_circuit_breaker(dokploy, alice, bob, olga, olga_client):
    dokploy.fail("project.all", times=5, status=503)
    assert deploy(alice).error_code == "BREAKER_OPEN"
    assert CircuitBreaker().snapshot().state == "open"

    response = act(olga_client, "breakerstate", "reset", ["dokploy"])

    assert CircuitBreaker().snapshot().state == "closed"
    assert shown_messages(response) == [
        "circuit breaker dokploy: done: closed; it was open after 5 consecutive failures"
    ]
    entry = the_entry()
    assert_entry(
        entry, by=olga, action="reset_breaker", outcome="done", target="circuit breaker dokploy"
    )
    # Requests go through at once, without waiting for the breaker's reset time.
    assert deploy(bob).status == Status.SUCCEEDED


# --- The trail itself -------------------------------------------------------------------------


def test_the_trail_is_shown_on_the_objects_it_touched(dokploy, alice, olga, olga_client):
    assert deploy(alice).status == Status.SUCCEEDED
    act(olga_client, "stack", "redeploy", [stack_of(alice).pk])
    redeploy = DeploymentAttempt.objects.get(kind="redeploy")

    stack_page = olga_client.get(f"/admin/stacks/stack/{stack_of(alice).pk}/change/")
    attempt_page = olga_client.get(f"/admin/stacks/deploymentattempt/{redeploy.pk}/change/")
    trail = olga_client.get("/admin/stacks/staffaction/")

    for page in (stack_page, attempt_page, trail):
        assert page.status_code == 200
        assert REASON in page.content.decode()
    assert "olga, on the owner&#x27;s behalf" in attempt_page.content.decode()


def test_the_trail_is_append_only_for_superusers_too(dokploy, alice, olga, olga_client):
    assert deploy(alice).status == Status.SUCCEEDED
    act(olga_client, "stack", "redeploy", [stack_of(alice).pk])
    entry = the_entry()
    root = User.objects.create_superuser("root", "root@example.com", "password")
    client = Client()
    client.force_login(root)

    add = client.get("/admin/stacks/staffaction/add/")
    change = client.post(f"/admin/stacks/staffaction/{entry.pk}/change/", {"reason": "forged"})
    delete = client.post(f"/admin/stacks/staffaction/{entry.pk}/delete/", {"post": "yes"})
    bulk = client.post(
        "/admin/stacks/staffaction/",
        {"action": "delete_selected", "_selected_action": [entry.pk], "post": "yes"},
    )

    assert (add.status_code, change.status_code, delete.status_code) == (403, 403, 403)
    assert bulk.status_code == 200
    entry.reason = "forged"
    with pytest.raises(AppendOnly):
        entry.save()
    with pytest.raises(AppendOnly):
        entry.delete()
    assert StaffAction.objects.get().reason == REASON
