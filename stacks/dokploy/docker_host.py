"""The Docker host behind the Dokploy simulator: service specs, volumes and Swarm's checks.

At every deploy, redeploy and reload Dokploy turns an application row into a Swarm service spec
(its `mechanizeDockerContainer`): the application's mount rows become the container's Mounts,
and the four limit columns become Resources, each passed through JavaScript's `parseInt`. This
module builds that spec the same way, checks it the way Swarm and the Docker daemon would, and
keeps the named and anonymous volumes a host accumulates, with the files in them.

The simulated host is one Swarm node with HOST_CPUS CPUs and HOST_MEMORY_BYTES of memory.

Checks, in Swarm's order (resources before mounts, limits before reservations, CPU before
memory):

* Swarm's control API refuses a spec whose NanoCPUs are set but below 1,000,000 (0.001 CPU),
  whose MemoryBytes are set but below 4 MiB, or that has two mounts on one target path.
* The daemon refuses the task's container when its memory limit or reservation is below 6 MiB,
  when the reservation exceeds the limit, when the CPU limit exceeds the host's CPUs, or when a
  named volume's name is not a valid local volume name; the scheduler never places a task whose
  reservations exceed the node.

No Django here: the simulator runs on its own.
"""

from __future__ import annotations

import posixpath
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from stacks.dokploy.docker_rules import (
    DOCKER_MIN_MEMORY_BYTES,
    NANO_CPUS_PER_CPU,
    SWARM_MIN_MEMORY_BYTES,
    SWARM_MIN_NANO_CPUS,
    is_volume_name,
)

Row = dict[str, Any]

HOST_CPUS: Final = 4
HOST_MEMORY_BYTES: Final = 8 * 1024**3

_JS_WHITESPACE: Final = " \t\n\v\f\r\u00a0\ufeff\u2028\u2029"


def js_parse_int(text: str) -> int | None:
    """JavaScript's `Number.parseInt(text)` without a radix; None where it gives NaN.

    Leading whitespace and a sign are skipped, `0x` switches to hexadecimal, and parsing stops
    at the first character that is not a digit: "2G" is 2, "1.5" is 1, "1e9" is 1.
    """
    rest = text.lstrip(_JS_WHITESPACE)
    sign = 1
    if rest[:1] in ("+", "-"):
        sign = -1 if rest[0] == "-" else 1
        rest = rest[1:]
    radix, digits = 10, "0123456789"
    if rest[:2].lower() == "0x":
        radix, digits, rest = 16, "0123456789abcdefABCDEF", rest[2:]
    match = re.match(f"[{re.escape(digits)}]+", rest)
    if match is None:
        return None
    return sign * int(match.group(0), radix)


def service_resources(app: Mapping[str, Any]) -> Row:
    """Dokploy's `calculateResources`: the four limit columns as a Swarm Resources object.

    An empty or missing column leaves the field out; a value parseInt cannot read (NaN) is sent
    as JSON null, which Docker reads as 0: no limit either. Both are left out here.
    """

    def parsed(column: str) -> int | None:
        value = app.get(column)
        return js_parse_int(value) if isinstance(value, str) and value else None

    def part(memory: str, cpus: str) -> Row:
        values = {"MemoryBytes": parsed(memory), "NanoCPUs": parsed(cpus)}
        return {key: value for key, value in values.items() if value is not None}

    return {
        "Limits": part("memoryLimit", "cpuLimit"),
        "Reservations": part("memoryReservation", "cpuReservation"),
    }


def service_mounts(app_name: str, mount_rows: Iterable[Mapping[str, Any]]) -> list[Row]:
    """The container's Mounts from the application's mount rows, in Dokploy's order.

    Volumes first (an empty or missing volume name becomes an anonymous volume), then bind
    mounts, then file mounts (a bind of the file Dokploy writes under the application's files
    directory).
    """
    rows = list(mount_rows)
    volumes = [
        {"Type": "volume", "Source": row.get("volumeName") or "", "Target": row["mountPath"]}
        for row in rows
        if row.get("type") == "volume"
    ]
    binds = [
        {"Type": "bind", "Source": row.get("hostPath") or "", "Target": row["mountPath"]}
        for row in rows
        if row.get("type") == "bind"
    ]
    files = [
        {
            "Type": "bind",
            "Source": posixpath.join(
                "/etc/dokploy/applications", app_name, "files", row.get("filePath") or ""
            ),
            "Target": row["mountPath"],
        }
        for row in rows
        if row.get("type") == "file"
    ]
    return volumes + binds + files


def spec_error(
    resources: Row,
    mounts: list[Row],
    *,
    host_cpus: int = HOST_CPUS,
    host_memory_bytes: int = HOST_MEMORY_BYTES,
) -> str | None:
    """Why Swarm or the daemon would not run this spec, in the words they use; None if it runs."""
    return (
        _control_api_error(resources, mounts)
        or _daemon_error(resources, mounts, host_cpus)
        or _scheduler_error(resources, host_cpus, host_memory_bytes)
    )


def _control_api_error(resources: Row, mounts: list[Row]) -> str | None:
    for part in ("Limits", "Reservations"):
        nano_cpus = resources[part].get("NanoCPUs", 0)
        memory = resources[part].get("MemoryBytes", 0)
        if nano_cpus != 0 and nano_cpus < SWARM_MIN_NANO_CPUS:
            cpus = f"{nano_cpus / NANO_CPUS_PER_CPU:g}"
            return _refused(f"invalid cpu value {cpus}: Must be at least 0.001")
        if memory != 0 and memory < SWARM_MIN_MEMORY_BYTES:
            return _refused(f"invalid memory value {memory}: Must be at least 4MiB")
    targets: set[str] = set()
    for mount in mounts:
        if mount["Target"] in targets:
            return _refused(f"ContainerSpec: duplicate mount point: {mount['Target']}")
        targets.add(mount["Target"])
    return None


def _refused(reason: str) -> str:
    """How dockerode words a service create or update that Swarm's control API refused."""
    return f"(HTTP code 400) bad parameter - rpc error: code = InvalidArgument desc = {reason}"


def _daemon_error(resources: Row, mounts: list[Row], host_cpus: int) -> str | None:
    limit = resources["Limits"].get("MemoryBytes", 0)
    reservation = resources["Reservations"].get("MemoryBytes", 0)
    nano_cpus = resources["Limits"].get("NanoCPUs", 0)
    if 0 < limit < DOCKER_MIN_MEMORY_BYTES:
        return _daemon("Minimum memory limit allowed is 6MB")
    if 0 < reservation < DOCKER_MIN_MEMORY_BYTES:
        return _daemon("Minimum memory reservation allowed is 6MB")
    if limit > 0 and reservation > limit:
        return _daemon(
            "Minimum memory limit can not be less than memory reservation limit, see usage"
        )
    if nano_cpus > host_cpus * NANO_CPUS_PER_CPU:
        return _daemon(
            f"Range of CPUs is from 0.01 to {host_cpus}.00, as there are only "
            f"{host_cpus} CPUs available"
        )
    for mount in mounts:
        name = mount["Source"]
        if mount["Type"] == "volume" and name and not is_volume_name(name):
            return _daemon(
                f'create {name}: "{name}" includes invalid characters for a local volume name, '
                f'only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host '
                "directory, use absolute path"
            )
    return None


def _daemon(reason: str) -> str:
    return f"task failed to start: Error response from daemon: {reason}"


def _scheduler_error(resources: Row, host_cpus: int, host_memory_bytes: int) -> str | None:
    wanted = resources["Reservations"]
    too_many_cpus = wanted.get("NanoCPUs", 0) > host_cpus * NANO_CPUS_PER_CPU
    if too_many_cpus or wanted.get("MemoryBytes", 0) > host_memory_bytes:
        return "task not scheduled: no suitable node (insufficient resources on 1 node)"
    return None


# --- Volumes ------------------------------------------------------------------------------------


@dataclass
class Volume:
    """A Docker volume and the files in it (path relative to the volume's root -> text)."""

    name: str
    created_at: str
    anonymous: bool = False
    files: dict[str, str] = field(default_factory=dict)

    def as_json(self) -> Row:
        return {
            "name": self.name,
            "createdAt": self.created_at,
            "anonymous": self.anonymous,
            "files": dict(self.files),
        }


def anonymous_volume_name() -> str:
    """Docker names an anonymous volume with 64 hex digits."""
    return secrets.token_hex(32)


def container_id() -> str:
    return secrets.token_hex(32)


def locate(mounted: Mapping[str, str], path: str) -> tuple[str | None, str]:
    """Where `path` inside the container lives: (volume name, path in it), or (None, path) for
    the container's own writable layer. `mounted` maps mount targets to volume names; the
    deepest target containing the path wins."""
    if not path.startswith("/"):
        raise ValueError(f"{path!r} is not an absolute path")
    clean = posixpath.normpath(path)
    best: str | None = None
    for target in mounted:
        inside = clean == target or clean.startswith(target.rstrip("/") + "/")
        if inside and (best is None or len(target) > len(best)):
            best = target
    if best is None:
        return None, clean
    relative = clean[len(best) :].lstrip("/")
    if not relative:
        raise ValueError(f"{path} is the mount point of volume {mounted[best]}, a directory")
    return mounted[best], relative
