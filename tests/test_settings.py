"""The settings helpers for the stack's volume path and limits, and a bad value at start-up."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from portal.settings import (
    envcpus,
    envmemory,
    envpath,
    parse_container_path,
    parse_cpus,
    parse_memory,
)

ROOT = Path(__file__).resolve().parent.parent
GIB = 1024**3
MIB = 1024**2


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ("/workspace", "/workspace"),
        ("/workspace/", "/workspace"),
        ("/home//opencode/work", "/home/opencode/work"),
        ("/data.v2/files", "/data.v2/files"),
    ],
)
def test_container_paths(text: str, path: str) -> None:
    assert parse_container_path(text) == path


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("workspace", "it must be an absolute path"),
        ("", "it must be an absolute path"),
        ("/my workspace", "it must not contain whitespace"),
        ("/workspace\t", "it must not contain whitespace"),
        ("/work:ro", "it must not contain ':'"),
        ("/home/../etc", "it must not contain '.' or '..' parts"),
        ("/workspace/.", "it must not contain '.' or '..' parts"),
        ("/", "it must be below /"),
        ("//", "it must be below /"),
    ],
)
def test_container_paths_refused(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(problem)}$"):
        parse_container_path(text)


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("2G", 2 * GIB),
        ("2g", 2 * GIB),
        ("2GB", 2 * GIB),
        ("2GiB", 2 * GIB),
        ("2 G", 2 * GIB),
        ("1.5G", 1610612736),
        ("512M", 512 * MIB),
        ("512mb", 512 * MIB),
        ("6M", 6 * MIB),
        ("6144k", 6 * MIB),
        ("1T", 1024 * GIB),
        ("2147483648", 2147483648),
        ("2147483648b", 2147483648),
        ("0.5g", GIB // 2),
    ],
)
def test_memory_sizes_read_like_docker(text: str, size: int) -> None:
    assert parse_memory(text) == size


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("2", "Docker refuses memory limits below 6M (6291456 bytes)"),
        ("5M", "Docker refuses memory limits below 6M (6291456 bytes)"),
        ("0", "Docker refuses memory limits below 6M (6291456 bytes)"),
        ("lots", "it must be a number with a unit such as 512M, 2G or 1.5G"),
        ("2X", "it must be a number with a unit such as 512M, 2G or 1.5G"),
        ("-2G", "it must be a number with a unit such as 512M, 2G or 1.5G"),
        ("2 GB extra", "it must be a number with a unit such as 512M, 2G or 1.5G"),
        ("1.2.3G", "it must be a number with a unit such as 512M, 2G or 1.5G"),
        ("9000P", "it is too large"),
    ],
)
def test_memory_sizes_refused(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(problem)}$"):
        parse_memory(text)


@pytest.mark.parametrize(
    ("text", "nanos"),
    [
        ("1", 1_000_000_000),
        ("1.5", 1_500_000_000),
        ("0.25", 250_000_000),
        (".5", 500_000_000),
        ("0.001", 1_000_000),
        ("16", 16_000_000_000),
        ("1.000000001", 1_000_000_001),
    ],
)
def test_cpus_read_like_docker(text: str, nanos: int) -> None:
    assert parse_cpus(text) == nanos


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("0", "Swarm refuses fewer than 0.001 CPUs"),
        ("0.0005", "Swarm refuses fewer than 0.001 CPUs"),
        ("-1", "it must be a number of CPUs such as 1.5"),
        ("1.5 cpus", "it must be a number of CPUs such as 1.5"),
        ("1500m", "it must be a number of CPUs such as 1.5"),
        ("1e9", "it must be a number of CPUs such as 1.5"),
        ("0.0000000001", "it is finer than a nano-CPU (at most 9 decimals)"),
        ("99999999999", "it is too large"),
    ],
)
def test_cpus_refused(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(problem)}$"):
        parse_cpus(text)


def test_unset_or_blank_means_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STACK_MEMORY_LIMIT", raising=False)
    monkeypatch.setenv("STACK_CPU_LIMIT", "  ")
    monkeypatch.setenv("STACK_VOLUME_PATH", "")

    assert envmemory("STACK_MEMORY_LIMIT") is None
    assert envcpus("STACK_CPU_LIMIT") is None
    assert envpath("STACK_VOLUME_PATH", "/workspace") == "/workspace"


def test_set_values_are_parsed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STACK_MEMORY_LIMIT", " 1.5G ")
    monkeypatch.setenv("STACK_CPU_LIMIT", "2")
    monkeypatch.setenv("STACK_VOLUME_PATH", "/home/opencode/")

    assert envmemory("STACK_MEMORY_LIMIT") == 1610612736
    assert envcpus("STACK_CPU_LIMIT") == 2_000_000_000
    assert envpath("STACK_VOLUME_PATH", "/workspace") == "/home/opencode"


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        (
            "STACK_MEMORY_LIMIT",
            "2",
            "STACK_MEMORY_LIMIT='2' is not valid: Docker refuses memory limits below 6M "
            "(6291456 bytes). Example: STACK_MEMORY_LIMIT=2G",
        ),
        (
            "STACK_CPU_LIMIT",
            "one",
            "STACK_CPU_LIMIT='one' is not valid: it must be a number of CPUs such as 1.5. "
            "Example: STACK_CPU_LIMIT=1.5",
        ),
        (
            "STACK_VOLUME_PATH",
            "workspace",
            "STACK_VOLUME_PATH='workspace' is not valid: it must be an absolute path. "
            "Example: STACK_VOLUME_PATH=/workspace",
        ),
    ],
)
def test_a_bad_value_names_the_variable_the_value_and_an_example(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)
    readers: dict[str, Callable[[], object]] = {
        "STACK_MEMORY_LIMIT": lambda: envmemory(name),
        "STACK_CPU_LIMIT": lambda: envcpus(name),
        "STACK_VOLUME_PATH": lambda: envpath(name, "/workspace"),
    }

    with pytest.raises(ImproperlyConfigured) as caught:
        readers[name]()

    assert str(caught.value) == message


def test_the_portal_does_not_start_with_a_bad_limit(tmp_path: Path) -> None:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "STACK_", "PYTEST"))
    }
    env.update(
        DJANGO_SETTINGS_MODULE="portal.settings",
        DEBUG="true",
        DATABASE_URL=f"sqlite:///{tmp_path / 'check.sqlite3'}",
        STACK_MEMORY_LIMIT="2",
    )

    checked = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert checked.returncode == 1
    assert checked.stderr.rstrip().endswith(
        "django.core.exceptions.ImproperlyConfigured: STACK_MEMORY_LIMIT='2' is not valid: "
        "Docker refuses memory limits below 6M (6291456 bytes). Example: STACK_MEMORY_LIMIT=2G"
    )
