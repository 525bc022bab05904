"""The person's files in a named volume, and the limits per stack, through the whole pipeline.

Against the simulator, which keeps mounts, Docker volumes with their files, and the service
spec Swarm would get, and refuses what Swarm would refuse.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterator
from types import ModuleType

import pytest
from django.core.management import call_command

from stacks import lifecycle, names, pipeline
from stacks.dokploy.client import DokployClient
from stacks.models import DeploymentAttempt, Stack

Status = DeploymentAttempt.Status
GIB = 1024**3
NOTES = "/workspace/notes.md"


def deploy(user, kind="create", **options) -> DeploymentAttempt:
    attempt = lifecycle.request_attempt(user, kind, **options)
    attempt.refresh_from_db()
    return attempt


def only(rows: dict) -> dict:
    assert len(rows) == 1, rows
    return next(iter(rows.values()))


def app_name(alice) -> str:
    return Stack.objects.get(owner=alice).app_name


@pytest.fixture
def limits(settings):
    settings.STACK_MEMORY_LIMIT_BYTES = 2 * GIB
    settings.STACK_CPU_LIMIT_NANOS = 1_500_000_000


def test_create_mounts_the_accounts_volume_and_sets_the_limits(dokploy, alice, limits):
    attempt = deploy(alice)

    assert attempt.status == Status.SUCCEEDED, attempt.error_message
    stack = Stack.objects.get(owner=alice)
    assert names.looks_like_a_workspace_volume(stack.volume_name)
    assert stack.volume_name.startswith("ai-stack-alice-files-")
    mount = only(dokploy.state()["mounts"])
    assert (mount["type"], mount["volumeName"], mount["mountPath"]) == (
        "volume",
        stack.volume_name,
        "/workspace",
    )
    # Without serviceType Dokploy would keep the row unattached and never mount it.
    assert (mount["serviceType"], mount["applicationId"]) == ("application", stack.application_id)
    service = dokploy.state()["services"][stack.app_name]
    assert service["mounts"] == [
        {"Type": "volume", "Source": stack.volume_name, "Target": "/workspace"}
    ]
    assert service["resources"]["Limits"] == {"MemoryBytes": 2 * GIB, "NanoCPUs": 1_500_000_000}
    update = next(c for c in dokploy.calls() if c["endpoint"] == "application.update")
    # Digit strings: "2G" or "1.5" would be parseInt-ed by Dokploy into 2 bytes and 1 nano-CPU.
    assert (update["input"]["memoryLimit"], update["input"]["cpuLimit"]) == (
        "2147483648",
        "1500000000",
    )
    assert (stack.memory_limit_bytes, stack.cpu_limit_nanos) == (2 * GIB, 1_500_000_000)
    assert dokploy.call_count("settings.cleanUnusedVolumes") == 0


def test_files_survive_redeploys_and_image_updates_on_one_mount(dokploy, alice, settings):
    assert deploy(alice).status == Status.SUCCEEDED
    stack = Stack.objects.get(owner=alice)
    volume = dokploy.write_file(stack.app_name, NOTES, "my work")
    assert volume == stack.volume_name

    assert deploy(alice, "redeploy").status == Status.SUCCEEDED
    settings.STACK_IMAGE = "ghcr.io/ai-stack/opencode-ttyd:2.0"
    updated = deploy(alice, "redeploy")

    assert updated.status == Status.SUCCEEDED, updated.error_message
    assert dokploy.read_file(stack.app_name, NOTES) == "my work"
    assert only(dokploy.state()["mounts"])["volumeName"] == stack.volume_name
    assert dokploy.call_count("mounts.create") == 1
    assert list(dokploy.state()["volumes"]) == [stack.volume_name]
    assert updated.steps.get(phase="volume").status == "skipped"


def test_teardown_keeps_the_files_and_a_new_create_finds_them(dokploy, alice):
    assert deploy(alice).status == Status.SUCCEEDED
    stack = Stack.objects.get(owner=alice)
    dokploy.write_file(stack.app_name, NOTES, "keep me")

    teardown = deploy(alice, "teardown")

    assert teardown.status == Status.SUCCEEDED
    assert teardown.workspace_files == "kept"
    assert dokploy.call_count("dockerVolume.removeVolume") == 0
    assert dokploy.volume(stack.volume_name)["files"] == {"notes.md": "keep me"}
    assert dokploy.state()["applications"] == {}

    again = deploy(alice)

    assert again.status == Status.SUCCEEDED, again.error_message
    stack.refresh_from_db()
    assert only(dokploy.state()["mounts"])["volumeName"] == stack.volume_name
    assert dokploy.read_file(stack.app_name, NOTES) == "keep me"


def test_teardown_with_delete_data_removes_the_volume_after_the_application(dokploy, alice):
    assert deploy(alice).status == Status.SUCCEEDED
    stack = Stack.objects.get(owner=alice)
    dokploy.write_file(stack.app_name, NOTES, "delete me")
    calls_before = len(dokploy.calls())

    teardown = deploy(alice, "teardown", delete_data=True)

    assert teardown.status == Status.SUCCEEDED, teardown.error_message
    assert teardown.workspace_files == "deleted"
    assert dokploy.volume(stack.volume_name) is None
    posts = [c["endpoint"] for c in dokploy.calls()[calls_before:] if c["method"] == "POST"]
    # The first removal is refused "in use" while Swarm removes the container, then it goes.
    assert posts == [
        "application.delete",
        "dockerVolume.removeVolume",
        "dockerVolume.removeVolume",
        "project.remove",
    ]
    step = teardown.steps.get(phase="volume")
    assert (step.action, step.status, step.retries) == ("delete", "succeeded", 1)


def test_teardown_stack_command_deletes_data_only_when_asked(dokploy, alice):
    call_command("deploy_stack", "alice", stdout=None)
    stack = Stack.objects.get(owner=alice)

    call_command("teardown_stack", "alice", "--delete-data")

    assert dokploy.volume(stack.volume_name) is None


def test_a_failed_create_never_deletes_a_volume_that_holds_earlier_files(dokploy, alice):
    stack = lifecycle.ensure_stack(alice)
    dokploy.add_volume(stack.volume_name, {"thesis.tex": "three years of work"})
    dokploy.fail_deploy("opencode-alice", message="pull access denied")

    attempt = deploy(alice)

    assert attempt.status == Status.ROLLED_BACK
    assert dokploy.state()["applications"] == {}
    assert dokploy.volume(stack.volume_name)["files"] == {"thesis.tex": "three years of work"}
    assert dokploy.call_count("dockerVolume.removeVolume") == 0


def test_a_stack_from_before_workspaces_gets_its_mount_at_the_next_redeploy(dokploy, alice):
    assert deploy(alice).status == Status.SUCCEEDED
    stack = Stack.objects.get(owner=alice)
    # As it was before: no volume on record and an application without mounts.
    for mount_id in list(dokploy.state()["mounts"]):
        pipeline_client().mounts_remove(mount_id)
    Stack.objects.filter(pk=stack.pk).update(volume_name="")

    attempt = deploy(alice, "redeploy")

    assert attempt.status == Status.SUCCEEDED, attempt.error_message
    stack.refresh_from_db()
    assert stack.volume_name.startswith("ai-stack-alice-files-")
    assert only(dokploy.state()["mounts"])["volumeName"] == stack.volume_name
    assert dokploy.state()["services"][stack.app_name]["mounts"][0]["Source"] == stack.volume_name


def test_an_anonymous_volume_on_the_path_is_replaced_not_doubled(dokploy, alice):
    """An unnamed volume loses its files at every deploy; two mounts on one path fail it."""
    assert deploy(alice).status == Status.SUCCEEDED
    stack = Stack.objects.get(owner=alice)
    client = pipeline_client()
    for mount_id in list(dokploy.state()["mounts"]):
        client.mounts_remove(mount_id)
    client._call(
        "mounts.create",
        "POST",
        lambda data: data,
        body={
            "serviceId": stack.application_id,
            "serviceType": "application",
            "type": "volume",
            "volumeName": "",
            "mountPath": "/workspace",
        },
    )

    attempt = deploy(alice, "redeploy")

    assert attempt.status == Status.SUCCEEDED, attempt.error_message
    mount = only(dokploy.state()["mounts"])
    assert mount["volumeName"] == stack.volume_name
    assert attempt.steps.get(phase="volume").action == "create"
    assert dokploy.call_count("mounts.remove") == 2  # ours by the test, the anonymous one


def test_another_named_volume_on_the_path_stops_the_deploy_for_staff(dokploy, alice):
    assert deploy(alice).status == Status.SUCCEEDED
    stack = Stack.objects.get(owner=alice)
    client = pipeline_client()
    for mount_id in list(dokploy.state()["mounts"]):
        client.mounts_remove(mount_id)
    client.mounts_create_volume(
        application_id=stack.application_id, volume_name="someone-elses", mount_path="/workspace"
    )

    attempt = deploy(alice, "redeploy")

    assert (attempt.failure_phase, attempt.error_code) == ("volume", "MOUNT_CONFLICT")
    assert "volume someone-elses" in attempt.error_message
    assert only(dokploy.state()["mounts"])["volumeName"] == "someone-elses"


def test_a_mount_create_that_failed_after_taking_effect_is_not_made_twice(dokploy, alice):
    dokploy.fail("mounts.create", times=1, status=500, after_effect=True)

    attempt = deploy(alice)

    assert attempt.status == Status.SUCCEEDED, attempt.error_message
    assert len(dokploy.state()["mounts"]) == 1
    assert dokploy.call_count("mounts.create") == 1


def test_changed_limits_are_applied_by_a_redeploy(dokploy, alice, settings):
    assert deploy(alice).status == Status.SUCCEEDED
    settings.STACK_MEMORY_LIMIT_BYTES = 512 * 1024**2
    settings.STACK_CPU_LIMIT_NANOS = None

    attempt = deploy(alice, "redeploy")

    assert attempt.status == Status.SUCCEEDED
    stack = Stack.objects.get(owner=alice)
    assert dokploy.state()["services"][stack.app_name]["resources"]["Limits"] == {
        "MemoryBytes": 512 * 1024**2
    }
    step = attempt.steps.get(phase="application", action="update", summary__startswith="Limits")
    assert step.summary == "Limits set: memory 512 MiB, CPU no limit"


def test_the_volume_belongs_to_the_account_not_the_username(dokploy, alice, django_user_model):
    first = lifecycle.ensure_stack(alice).volume_name
    # The account goes; a later account gets the same username.
    Stack.objects.filter(owner=alice).delete()
    alice.delete()
    later = django_user_model.objects.create_user("alice")

    second = lifecycle.ensure_stack(later).volume_name

    assert first != second
    assert first.startswith("ai-stack-alice-files-") and second.startswith("ai-stack-alice-files-")


def test_only_a_teardown_may_delete_files(dokploy, alice):
    with pytest.raises(lifecycle.LifecycleError, match="Only deleting the stack"):
        lifecycle.request_attempt(alice, "redeploy", delete_data=True)


def pipeline_client() -> DokployClient:
    return DokployClient.from_settings()


def test_the_pipeline_never_names_the_volume_prune():
    import inspect

    source = "".join(inspect.getsource(m) for m in _pipeline_modules())
    assert "cleanUnusedVolumes" not in source


def _pipeline_modules() -> Iterator[ModuleType]:
    for info in pkgutil.iter_modules(pipeline.__path__):
        yield importlib.import_module(f"stacks.pipeline.{info.name}")


def test_a_new_mount_or_limit_forces_a_deploy_even_when_nothing_else_changed(
    dokploy, alice, settings
):
    """Mounts and limits take effect only at the next deploy: a rerun that adds them deploys."""
    assert deploy(alice).status == Status.SUCCEEDED
    settings.STACK_CPU_LIMIT_NANOS = 2_000_000_000
    deploys_before = dokploy.call_count("application.deploy")

    rerun = deploy(alice, "create")

    assert rerun.status == Status.SUCCEEDED
    assert dokploy.call_count("application.deploy") == deploys_before + 1
    stack = Stack.objects.get(owner=alice)
    limits = dokploy.state()["services"][stack.app_name]["resources"]["Limits"]
    assert limits == {"NanoCPUs": 2_000_000_000}
