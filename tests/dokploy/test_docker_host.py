"""The simulated Docker host: Dokploy's parseInt of limits, the spec it builds, Swarm's checks."""

from __future__ import annotations

from typing import Any

import pytest

from stacks.dokploy.docker_host import (
    js_parse_int,
    locate,
    service_mounts,
    service_resources,
    spec_error,
)
from stacks.dokploy.docker_rules import is_volume_name

REFUSED = "(HTTP code 400) bad parameter - rpc error: code = InvalidArgument desc = "
DAEMON = "task failed to start: Error response from daemon: "
GIB = 1024**3


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("2147483648", 2147483648),
        ("2G", 2),
        ("512M", 512),
        ("1.5", 1),
        ("1e9", 1),
        ("  42", 42),
        ("+7", 7),
        ("-1000000000", -1000000000),
        ("0x10", 16),
        ("0", 0),
        ("abc", None),
        ("", None),
        ("-", None),
        ("G2", None),
    ],
)
def test_js_parse_int(text: str, number: int | None) -> None:
    assert js_parse_int(text) == number


def test_resources_leave_out_empty_and_unreadable_columns() -> None:
    app = {
        "memoryLimit": "2147483648",
        "memoryReservation": "",
        "cpuLimit": "abc",
        "cpuReservation": "500000000",
    }

    assert service_resources(app) == {
        "Limits": {"MemoryBytes": 2147483648},
        "Reservations": {"NanoCPUs": 500000000},
    }


def test_resources_of_an_application_without_limits_are_empty() -> None:
    app = {"memoryLimit": None, "memoryReservation": None, "cpuLimit": None}

    assert service_resources(app) == {"Limits": {}, "Reservations": {}}


def test_mounts_volumes_first_then_binds_then_files() -> None:
    rows: list[dict[str, Any]] = [
        {"type": "file", "filePath": "config.toml", "mountPath": "/etc/app/config.toml"},
        {"type": "bind", "hostPath": "/srv/shared", "mountPath": "/shared"},
        {"type": "volume", "volumeName": "ws-alice", "mountPath": "/workspace"},
        {"type": "volume", "volumeName": None, "mountPath": "/cache"},
    ]

    assert service_mounts("opencode-alice-abc123", rows) == [
        {"Type": "volume", "Source": "ws-alice", "Target": "/workspace"},
        {"Type": "volume", "Source": "", "Target": "/cache"},
        {"Type": "bind", "Source": "/srv/shared", "Target": "/shared"},
        {
            "Type": "bind",
            "Source": "/etc/dokploy/applications/opencode-alice-abc123/files/config.toml",
            "Target": "/etc/app/config.toml",
        },
    ]


def limits(**parts: Any) -> dict[str, Any]:
    return {"Limits": parts.get("limits", {}), "Reservations": parts.get("reservations", {})}


def volume(source: str, target: str = "/workspace") -> dict[str, str]:
    return {"Type": "volume", "Source": source, "Target": target}


@pytest.mark.parametrize(
    ("resources", "mounts", "error"),
    [
        (
            limits(limits={"MemoryBytes": 2}),
            [],
            REFUSED + "invalid memory value 2: Must be at least 4MiB",
        ),
        (
            limits(limits={"NanoCPUs": 1}),
            [],
            REFUSED + "invalid cpu value 1e-09: Must be at least 0.001",
        ),
        (
            limits(reservations={"NanoCPUs": -1_000_000_000}),
            [],
            REFUSED + "invalid cpu value -1: Must be at least 0.001",
        ),
        (
            limits(reservations={"MemoryBytes": 512}),
            [],
            REFUSED + "invalid memory value 512: Must be at least 4MiB",
        ),
        (
            limits(),
            [volume("ws-alice"), volume("ws-other")],
            REFUSED + "ContainerSpec: duplicate mount point: /workspace",
        ),
        (
            limits(limits={"MemoryBytes": 5 * 1024 * 1024}),
            [],
            DAEMON + "Minimum memory limit allowed is 6MB",
        ),
        (
            limits(reservations={"MemoryBytes": 5 * 1024 * 1024}),
            [],
            DAEMON + "Minimum memory reservation allowed is 6MB",
        ),
        (
            limits(limits={"MemoryBytes": GIB}, reservations={"MemoryBytes": 2 * GIB}),
            [],
            DAEMON
            + "Minimum memory limit can not be less than memory reservation limit, see usage",
        ),
        (
            limits(limits={"NanoCPUs": 5_000_000_000}),
            [],
            DAEMON + "Range of CPUs is from 0.01 to 4.00, as there are only 4 CPUs available",
        ),
        (
            limits(),
            [volume("-bad")],
            DAEMON + 'create -bad: "-bad" includes invalid characters for a local volume name, '
            'only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host '
            "directory, use absolute path",
        ),
        (
            limits(reservations={"MemoryBytes": 16 * GIB}),
            [],
            "task not scheduled: no suitable node (insufficient resources on 1 node)",
        ),
        (
            limits(reservations={"NanoCPUs": 8_000_000_000}),
            [],
            "task not scheduled: no suitable node (insufficient resources on 1 node)",
        ),
    ],
    ids=[
        "memory-2-bytes",
        "one-nano-cpu",
        "negative-cpu-reservation",
        "memory-reservation-512-bytes",
        "duplicate-mount-point",
        "memory-below-6mib",
        "reservation-below-6mib",
        "reservation-above-limit",
        "more-cpus-than-the-host",
        "invalid-volume-name",
        "memory-reservation-above-the-host",
        "cpu-reservation-above-the-host",
    ],
)
def test_specs_swarm_or_docker_refuse(
    resources: dict[str, Any], mounts: list[dict[str, str]], error: str
) -> None:
    assert spec_error(resources, mounts) == error


@pytest.mark.parametrize(
    ("resources", "mounts"),
    [
        (limits(), []),
        (limits(limits={"MemoryBytes": 0, "NanoCPUs": 0}), []),
        (limits(limits={"MemoryBytes": 6 * 1024 * 1024, "NanoCPUs": 1_000_000}), []),
        (limits(limits={"MemoryBytes": 64 * GIB, "NanoCPUs": 4_000_000_000}), []),
        (
            limits(
                limits={"MemoryBytes": 2 * GIB, "NanoCPUs": 1_500_000_000},
                reservations={"MemoryBytes": GIB, "NanoCPUs": 500_000_000},
            ),
            [volume("ws-alice"), volume("", "/cache")],
        ),
    ],
    ids=["nothing", "zero-is-no-limit", "the-minimums", "memory-above-the-host", "typical"],
)
def test_specs_that_run(resources: dict[str, Any], mounts: list[dict[str, str]]) -> None:
    assert spec_error(resources, mounts) is None


def test_a_bigger_host_takes_more_cpus() -> None:
    resources = limits(limits={"NanoCPUs": 6_000_000_000})

    assert spec_error(resources, [], host_cpus=8) is None


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        ("ws-alice-7f3k", True),
        ("a1", True),
        ("a", False),
        ("-a", False),
        ("a b", False),
        ("", False),
    ],
)
def test_volume_names_follow_dockers_rule(name: str, valid: bool) -> None:
    assert is_volume_name(name) is valid


def test_locate_picks_the_deepest_mount_and_the_layer_otherwise() -> None:
    mounted = {"/workspace": "ws-alice", "/workspace/cache": "cache-alice"}

    assert locate(mounted, "/workspace/notes.txt") == ("ws-alice", "notes.txt")
    assert locate(mounted, "/workspace/cache/x/y") == ("cache-alice", "x/y")
    assert locate(mounted, "/workspace//a/./b") == ("ws-alice", "a/b")
    assert locate(mounted, "/workspaces/other") == (None, "/workspaces/other")
    with pytest.raises(ValueError, match="not an absolute path"):
        locate(mounted, "notes.txt")
    with pytest.raises(ValueError, match="mount point of volume ws-alice"):
        locate(mounted, "/workspace/")
