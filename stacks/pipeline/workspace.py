"""The person's workspace: their files in a named volume, the stack's resource limits, and
deleting the files when, and only when, they ask for it.

Shared by provision (mount and limits, before the deploy) and teardown (deleting the volume
after the application is gone). Dokploy's traps, from its source: a mount without serviceType
is never mounted (the client always sends it), a volume mount without a name is a new empty
volume at every deploy, two mounts on one path make every deploy fail, limits are parseInt-ed
digit strings, and nothing but dockerVolume.removeVolume deletes a volume.
"""

from __future__ import annotations

from django.conf import settings

from stacks import names
from stacks.dokploy.client import volume_missing
from stacks.dokploy.errors import DokployError
from stacks.dokploy.types import Application, Mount
from stacks.models import DeploymentStep
from stacks.pipeline.journal import StepFailed
from stacks.pipeline.run import Run
from stacks.units import format_bytes, format_cpus

Phase = DeploymentStep.Phase
Action = DeploymentStep.Action


def volume_name(run: Run) -> str:
    """The stack's volume; a stack made before workspaces existed gets its name now."""
    if not run.stack.volume_name:
        run.save_stack(volume_name=names.new_volume_name(run.stack.username))
    return run.stack.volume_name


def ensure_mount(run: Run, application: Application, *, created: bool) -> bool:
    """Exactly one mount of the stack's volume at STACK_VOLUME_PATH. True when it changed."""
    volume = volume_name(run)
    path = str(settings.STACK_VOLUME_PATH)
    with run.step(Phase.VOLUME, Action.QUERY, f"Keep the files at {path}") as out:
        at_path = [] if created else [m for m in application.mounts if _path(m) == path]
        ours = [m for m in at_path if m.type == "volume" and m.volume_name == volume]
        others = [m for m in at_path if m not in ours]
        if any(m.is_named_volume or m.type != "volume" for m in others):
            raise StepFailed(
                Phase.VOLUME,
                "MOUNT_CONFLICT",
                f"{path} already holds {_describe(others)}; this person's files are kept in "
                f"volume {volume}. Staff must decide which to keep before the next deploy.",
            )
        if ours and not others and len(ours) == 1:
            out.skip(f"Volume {volume} is mounted at {path}")
            return False
        # Anonymous volumes lose their files at every deploy; extra copies of ours would make
        # every deploy fail. Neither is worth keeping.
        for extra in [*others, *ours[1:]]:
            run.client.mounts_remove(extra.mount_id)
        if ours:
            out.action = Action.UPDATE
            out.summary = f"Volume {volume} at {path}; removed {len(at_path) - 1} other mount(s)"
            return True
        out.action = Action.CREATE
        run.intend("mount", path)
        mount = run.client.mounts_create_volume(
            application_id=application.application_id, volume_name=volume, mount_path=path
        )
        run.confirm("mount", path, mount.mount_id)
        out.summary = f"Mounted volume {volume} at {path}"
        out.response = mount.raw
        return True


def ensure_limits(run: Run, application: Application, *, created: bool) -> bool:
    """Memory and CPU limits as configured (STACK_MEMORY_LIMIT, STACK_CPU_LIMIT)."""
    memory: int | None = settings.STACK_MEMORY_LIMIT_BYTES
    cpus: int | None = settings.STACK_CPU_LIMIT_NANOS
    wanted = f"memory {format_bytes(memory)}, CPU {format_cpus(cpus)}"
    with run.step(Phase.APPLICATION, Action.UPDATE, f"Limits: {wanted}") as out:
        have = (None, None) if created else (application.memory_limit, application.cpu_limit)
        if have == (_digits(memory), _digits(cpus)):
            unset = memory is None and cpus is None
            out.skip("No limits configured" if unset else f"Limits already set: {wanted}")
            run.save_stack(memory_limit_bytes=memory, cpu_limit_nanos=cpus)
            return False
        run.client.application_set_limits(
            application.application_id, memory_bytes=memory, cpu_nanos=cpus
        )
        run.save_stack(memory_limit_bytes=memory, cpu_limit_nanos=cpus)
        out.summary = f"Limits set: {wanted}"
        return True


def delete_files(run: Run) -> None:
    """Remove the stack's volume with every file in it; call it after the application is gone.

    Dokploy answers "in use" while Swarm still removes the container; the client retries that
    within the attempt's deadline.
    """
    volume = run.stack.volume_name
    with run.step(Phase.VOLUME, Action.DELETE, "Delete the files") as out:
        if not volume:
            out.skip("This stack never had a workspace volume")
            return
        try:
            run.client.docker_volume_remove(volume)
        except DokployError as exc:
            if not volume_missing(exc):
                raise
            out.summary = f"Volume {volume} was already gone"
            return
        out.summary = f"Deleted volume {volume} and every file in it"


def remove_mount(run: Run, mount_id: str | None, path: str) -> str:
    """Undo a mount this attempt added to an application it did not create (the rollback)."""
    if mount_id is None:
        app_id = run.stack.application_id
        mounts = run.client.mounts_list_by_service_id(app_id) if app_id else []
        volume = run.stack.volume_name
        found = [m for m in mounts if _path(m) == path and m.volume_name == volume]
        mount_id = found[0].mount_id if found else None
    if mount_id is None:
        return f"No mount at {path} to remove"
    try:
        run.client.mounts_remove(mount_id)
    except DokployError as exc:
        if exc.status != 404:
            raise
    return f"Removed the mount at {path}; the volume and its files are kept"


def _path(mount: Mount) -> str:
    return mount.mount_path.rstrip("/") or "/"


def _digits(value: int | None) -> str | None:
    return None if value is None else str(value)


def _describe(mounts: list[Mount]) -> str:
    return ", ".join(
        f"volume {m.volume_name}" if m.is_named_volume else f"a {m.type or 'unknown'} mount"
        for m in mounts
    )
