"""The reconciler against the Dokploy simulator, with orphans and drift injected by hand."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from io import StringIO

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.utils import timezone
from django_q.models import Schedule

from stacks import lifecycle, pipeline, reconcile
from stacks.dokploy.client import DokployClient
from stacks.models import (
    DeploymentAttempt,
    ReconcileFinding,
    ReconcileRun,
    Stack,
    StaffAction,
)
from tests.crashes import kill_worker_after_created

Status = DeploymentAttempt.Status
Kind = ReconcileFinding.Kind
Fix = ReconcileFinding.Fix


def deploy(username: str) -> Stack:
    user = User.objects.create_user(username)
    attempt = lifecycle.request_attempt(user, "create")
    attempt.refresh_from_db()
    assert attempt.status == Status.SUCCEEDED, attempt.error_message
    return Stack.objects.get(owner=user)


def start_create_and_die_after(monkeypatch, username: str, kind: str) -> DeploymentAttempt:
    """A create whose worker dies right after Dokploy made the `kind` resource, before our
    commit: the attempt stays running (its lease still live) and nothing records the new id."""
    user = User.objects.create_user(username)
    attempt = lifecycle.request_attempt(user, "create", dispatch=False)
    kill_worker_after_created(monkeypatch, attempt, kind)
    attempt.refresh_from_db()
    assert attempt.status == Status.RUNNING
    return attempt


@dataclass
class World:
    client: DokployClient
    stacks: dict[str, Stack]
    ghost_project: str
    ghost_app: str
    alice_duplicate: str
    frank_stray: str
    outside_project: str
    ivy: DeploymentAttempt


@pytest.fixture
def world(dokploy, monkeypatch) -> World:
    """Seven stacks deployed through the pipeline, then changed behind the portal's back."""
    stacks = {name: deploy(name) for name in ("alice", "bob", "carol", "dave", "erin", "frank")}
    client = DokployClient.from_settings()
    # bob: someone set another image in Dokploy.
    client.application_save_docker_provider(
        application_id=stacks["bob"].application_id, docker_image="ghcr.io/someone/else:2"
    )
    # carol: someone turned off https and moved the port.
    carol = stacks["carol"]
    client.domain_update(
        carol.domain_id,
        host=carol.host,
        https=False,
        port=3000,
        certificate_type="none",
        domain_type="application",
        path="/",
    )
    # dave: someone deleted the application.
    client.application_delete(stacks["dave"].application_id)
    # erin: a manual deployment that failed.
    dokploy.fail_deploy(stacks["erin"].app_name, message="pull access denied for ghcr.io/x")
    client.application_deploy(stacks["erin"].application_id)
    dokploy.wait_idle()
    # frank: a second opencode-frank application in frank's project.
    frank = stacks["frank"]
    stray = client.application_create(name="opencode-frank", environment_id=frank.environment_id)
    # A project for a user who has no stack, with an application and a domain.
    ghost = client.project_create(name="ai-stack-ghost", description="AI Stack for ghost")
    ghost_app = client.application_create(
        name="opencode-ghost",
        environment_id=ghost.environment.environment_id,
        app_name="opencode-ghost",
    )
    client.domain_create(
        host="ghost.ai.example.test", application_id=ghost_app.application_id, port=8080
    )
    # A second project named like alice's (names are not unique in Dokploy).
    duplicate = client.project_create(name="ai-stack-alice")
    # Not ours: outside the prefix.
    outside = client.project_create(name="customer-site")
    client.application_create(
        name="opencode-customer", environment_id=outside.environment.environment_id
    )
    # ivy: a create in progress, its worker gone right after Dokploy made the project.
    ivy = start_create_and_die_after(monkeypatch, "ivy", "project")
    return World(
        client=client,
        stacks=stacks,
        ghost_project=ghost.project.project_id,
        ghost_app=ghost_app.application_id,
        alice_duplicate=duplicate.project.project_id,
        frank_stray=stray.application_id,
        outside_project=outside.project.project_id,
        ivy=ivy,
    )


def summary(run: ReconcileRun) -> set[tuple[str, str]]:
    return {(f.kind, f.username) for f in run.findings.all()}


def test_each_finding_is_reported(world, dokploy):
    run = reconcile.run()

    assert run.status == ReconcileRun.Status.OK
    assert summary(run) == {
        (Kind.ORPHAN_PROJECT, "alice"),
        (Kind.SHARED_NAME, "alice"),
        (Kind.IMAGE_DRIFT, "bob"),
        (Kind.DOMAIN_DRIFT, "carol"),
        (Kind.APPLICATION_MISSING, "dave"),
        (Kind.APPLICATION_ERROR, "erin"),
        (Kind.ORPHAN_APPLICATION, "frank"),
        (Kind.ORPHAN_PROJECT, "ghost"),
    }
    assert run.findings.count() == 8
    # ai-stack-* projects: six stacks, ghost, alice's duplicate, ivy's project in the making.
    assert (run.projects_seen, run.stacks_checked, run.protected) == (9, 6, 1)
    found = {(f.kind, f.username): f for f in run.findings.all()}
    assert found[Kind.ORPHAN_PROJECT, "ghost"].detail == (
        "No stack is named ghost; it holds application opencode-ghost"
    )
    assert found[Kind.ORPHAN_PROJECT, "ghost"].stack is None
    duplicate = found[Kind.ORPHAN_PROJECT, "alice"]
    assert duplicate.project_id == world.alice_duplicate
    assert duplicate.detail == (
        f"alice's stack records project {world.stacks['alice'].project_id}, not this one; "
        "it is empty"
    )
    assert found[Kind.SHARED_NAME, "alice"].detail.startswith("2 projects are named ai-stack-alice")
    assert found[Kind.IMAGE_DRIFT, "bob"].detail == (
        "Dokploy runs image ghcr.io/someone/else:2; "
        "the stack records ghcr.io/ai-stack/opencode-ttyd:latest"
    )
    assert found[Kind.DOMAIN_DRIFT, "carol"].detail == (
        "Domain carol.ai.example.test has https False (want True), port 3000 (want 8080), "
        "certificate_type none (want letsencrypt)"
    )
    assert found[Kind.APPLICATION_MISSING, "dave"].detail.endswith(
        "is no longer in project ai-stack-dave"
    )
    assert "pull access denied" in found[Kind.APPLICATION_ERROR, "erin"].detail
    stray = found[Kind.ORPHAN_APPLICATION, "frank"]
    assert stray.application_id == world.frank_stray
    assert stray.stack == world.stacks["frank"]
    # Nothing was changed by a run without fix.
    assert dokploy.call_count("application.delete") == 1  # dave's, by hand
    assert dokploy.call_count("project.remove") == 0
    assert not StaffAction.objects.exists()


def test_fix_removes_exactly_the_orphans_and_repairs_drift(world, dokploy):
    before = dokploy.state()

    run = reconcile.run(fix=True)

    after = dokploy.state()
    removed_projects = set(before["projects"]) - set(after["projects"])
    removed_apps = set(before["applications"]) - set(after["applications"])
    assert removed_projects == {world.ghost_project, world.alice_duplicate}
    # The orphans, and erin's failed application that its repair replaced; dave's was gone
    # already. The customer's project, outside the prefix, is untouched.
    assert removed_apps == {
        world.frank_stray,
        world.ghost_app,
        world.stacks["erin"].application_id,
    }
    assert world.outside_project in after["projects"]
    for name in ("alice", "bob", "carol", "frank"):
        assert world.stacks[name].application_id in after["applications"], name
        assert world.stacks[name].project_id in after["projects"], name
    # ivy's project, created a moment before the run by an attempt still in progress, stays.
    ivy_projects = [p for p in after["projects"].values() if p["name"] == "ai-stack-ivy"]
    assert len(ivy_projects) == 1
    fixes = {(f.kind, f.username): f.fix for f in run.findings.all()}
    assert fixes == {
        (Kind.ORPHAN_PROJECT, "alice"): Fix.REMOVED,
        (Kind.SHARED_NAME, "alice"): Fix.NONE,
        (Kind.IMAGE_DRIFT, "bob"): Fix.REPAIR_QUEUED,
        (Kind.DOMAIN_DRIFT, "carol"): Fix.REPAIR_QUEUED,
        (Kind.APPLICATION_MISSING, "dave"): Fix.REPAIR_QUEUED,
        (Kind.APPLICATION_ERROR, "erin"): Fix.REPAIR_QUEUED,
        (Kind.ORPHAN_APPLICATION, "frank"): Fix.REMOVED,
        (Kind.ORPHAN_PROJECT, "ghost"): Fix.REMOVED,
    }
    # Repairs ran through the pipeline (the test cluster runs tasks inline).
    for name in ("bob", "carol", "dave", "erin"):
        repair = DeploymentAttempt.objects.get(stack__username=name, kind="repair")
        assert repair.status == Status.SUCCEEDED, (name, repair.error_message)
        assert repair.requested_by is None
        assert repair.reason.startswith(f"Reconciler run #{run.pk} found ")
    # Every fix is an audit entry.
    entries = StaffAction.objects.filter(actor_name="reconciler")
    assert sorted(entries.values_list("action", "outcome")) == sorted(
        [("remove_orphan", "done")] * 3 + [("repair", "done")] * 4
    )
    ghost_entry = entries.get(finding__username="ghost")
    assert ghost_entry.message == (
        f"removed application opencode-ghost ({world.ghost_app}); "
        f"removed project ai-stack-ghost ({world.ghost_project})"
    )
    assert (
        ghost_entry.reason
        == f"Reconciler run #{run.pk}: No stack is named ghost; it holds application opencode-ghost"
    )

    # What is left after the fix: only ivy's attempt in progress, left alone.
    again = reconcile.run()
    assert summary(again) == set()
    assert again.protected == 1


def test_an_attempt_mid_create_is_never_touched(dokploy, monkeypatch):
    # The worker dies between Dokploy creating the application and our commit: the attempt's
    # project is recorded, its application only as an intent without an id.
    attempt = start_create_and_die_after(monkeypatch, "judy", "application")
    assert len(dokploy.state()["applications"]) == 1
    assert Stack.objects.get(username="judy").application_id == ""

    run = reconcile.run(fix=True)

    assert summary(run) == set()
    assert run.protected == 1
    assert len(dokploy.state()["applications"]) == 1
    # Once its lease expires the attempt is resumed and finishes with what it made.
    DeploymentAttempt.objects.filter(pk=attempt.pk).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    lifecycle.request_attempt(User.objects.get(username="judy"), "create")
    attempt.refresh_from_db()
    assert attempt.status == Status.SUCCEEDED, attempt.error_message
    assert dokploy.call_count("application.create") == 1


def test_reconcile_running_inside_a_create_leaves_it_alone(dokploy, alice, monkeypatch):
    """The reconciler runs while the pipeline sits between project.create and our commit."""
    attempt = lifecycle.request_attempt(alice, "create", dispatch=False)
    seen: list[ReconcileRun] = []
    original = pipeline.Run.confirm

    def reconcile_first(self, kind, name, resource_id):
        if kind == "project" and not seen:
            seen.append(reconcile.run(fix=True))
        return original(self, kind, name, resource_id)

    monkeypatch.setattr(pipeline.Run, "confirm", reconcile_first)
    result = pipeline.run_attempt(attempt.pk)

    assert result is not None
    assert result.status == Status.SUCCEEDED, result.error_message
    assert summary(seen[0]) == set()
    assert seen[0].protected == 1
    assert dokploy.call_count("project.remove") == 0


def test_an_attempt_that_starts_after_the_scan_keeps_its_project(world, dokploy):
    """A request between the scan and the fix: the fix checks again under the stack's lock."""
    record = ReconcileRun.objects.create(trigger="command", fix=True)
    scanned = reconcile.scan(world.client)
    findings = reconcile.store(record, scanned)
    alice = User.objects.get(username="alice")
    redeploy = lifecycle.request_attempt(alice, "redeploy", dispatch=False)

    reconcile.apply_fixes(record, findings, world.client)

    duplicate = next(f for f in findings if f.kind == Kind.ORPHAN_PROJECT and f.username == "alice")
    assert duplicate.fix == Fix.SKIPPED
    assert duplicate.fix_detail == f"attempt #{redeploy.pk} (redeploy) on this stack is in progress"
    assert world.alice_duplicate in dokploy.state()["projects"]
    entry = StaffAction.objects.get(finding=duplicate)
    assert (entry.action, entry.outcome) == ("remove_orphan", "refused")


def test_leftover_of_a_failed_rollback_is_named(dokploy, alice):
    client = DokployClient.from_settings()
    made = client.project_create(name="ai-stack-alice")
    stack = lifecycle.ensure_stack(alice)
    failed = DeploymentAttempt.objects.create(stack=stack, kind="create")
    failed.transition(Status.RUNNING)
    failed.transition(
        Status.FAILED,
        created_resources=[
            {"kind": "project", "name": "ai-stack-alice", "id": made.project.project_id}
        ],
        rollback_errors=["project ai-stack-alice: Dokploy answered 503"],
        error_code="BAD_REQUEST",
        failure_phase="application",
    )

    run = reconcile.run()

    finding = run.findings.get()
    assert finding.kind == Kind.ORPHAN_PROJECT
    assert finding.attempt == failed
    assert finding.detail == (
        f"Left by attempt #{failed.pk} (create), whose rollback failed; it is empty"
    )


def test_a_project_that_holds_something_else_is_kept(dokploy):
    client = DokployClient.from_settings()
    made = client.project_create(name="ai-stack-kim")
    env = made.environment.environment_id
    ours = client.application_create(name="opencode-kim", environment_id=env)
    theirs = client.application_create(name="grafana", environment_id=env)

    run = reconcile.run(fix=True)

    finding = run.findings.get()
    assert finding.fix == Fix.KEPT
    assert finding.fix_detail == (
        f"removed application opencode-kim ({ours.application_id}); "
        "kept project ai-stack-kim: it holds application grafana"
    )
    state = dokploy.state()
    assert set(state["applications"]) == {theirs.application_id}
    assert made.project.project_id in state["projects"]


def test_dokploy_down_fails_the_run_and_the_command(dokploy):
    dokploy.fail("project.all", times=10, status=503)

    with pytest.raises(CommandError, match="failed"):
        call_command("reconcile", stdout=StringIO())

    run = ReconcileRun.objects.get()
    assert run.status == ReconcileRun.Status.FAILED
    # Five 503s in a row open the breaker, which ends the run at once.
    assert run.error_message.startswith("BREAKER_OPEN: Dokploy unavailable, retry after ")
    assert dokploy.call_count("project.all") == 5


def test_command_prints_findings_as_text_and_json(dokploy):
    client = DokployClient.from_settings()
    made = client.project_create(name="ai-stack-ghost")

    text = StringIO()
    call_command("reconcile", stdout=text)
    out = StringIO()
    call_command("reconcile", "--json", stdout=out)

    assert f"orphan_project       ai-stack-ghost ({made.project.project_id})" in text.getvalue()
    assert "No stack is named ghost; it is empty" in text.getvalue()
    data = json.loads(out.getvalue())
    assert data["status"] == "ok"
    assert data["fix"] is False
    assert [(f["kind"], f["project_id"], f["fix"]) for f in data["findings"]] == [
        ("orphan_project", made.project.project_id, "")
    ]
    assert made.project.project_id in dokploy.state()["projects"]


def test_schedule_follows_the_setting(db, settings):
    settings.RECONCILE_INTERVAL = 10
    reconcile.ensure_schedule()
    schedule = Schedule.objects.get(name="reconciler")
    assert (schedule.func, schedule.schedule_type, schedule.minutes) == (
        "stacks.tasks.reconcile",
        Schedule.MINUTES,
        10,
    )

    settings.RECONCILE_INTERVAL = 0
    reconcile.ensure_schedule()
    assert not Schedule.objects.filter(name="reconciler").exists()


def test_the_scheduled_task_fixes_only_when_told(dokploy, settings):
    from stacks import tasks

    client = DokployClient.from_settings()
    made = client.project_create(name="ai-stack-ghost")

    settings.RECONCILE_FIX = False
    assert tasks.reconcile() == f"run #{ReconcileRun.objects.get().pk} ok"
    assert made.project.project_id in dokploy.state()["projects"]

    settings.RECONCILE_FIX = True
    tasks.reconcile()
    latest = ReconcileRun.objects.order_by("-id").first()
    assert latest is not None
    assert (latest.trigger, latest.fix) == ("schedule", True)
    assert dokploy.state()["projects"] == {}


def test_workspace_volumes_without_a_stack_are_reported_and_never_removed(dokploy):
    alice = deploy("alice")
    dokploy.add_volume("ai-stack-gone-files-0123abcd", {"thesis.tex": "someone's work"})
    dokploy.add_volume("postgres-data")  # not named like a workspace: not ours to judge

    run = reconcile.run(fix=True)

    found = list(run.findings.filter(kind=Kind.ORPHAN_VOLUME))
    assert [(f.volume_name, f.username, f.fix) for f in found] == [
        ("ai-stack-gone-files-0123abcd", "gone", Fix.NONE)
    ]
    assert "never deleted by the reconciler" in found[0].detail
    assert dokploy.volume("ai-stack-gone-files-0123abcd")["files"] == {
        "thesis.tex": "someone's work"
    }
    assert dokploy.volume(alice.volume_name) is not None  # alice's own volume is not reported
    assert dokploy.call_count("dockerVolume.removeVolume") == 0
