"""The container's health probe: the role it checks, the host it presents, the heartbeat it reads.

The image's HEALTHCHECK applies to the web container and to the task worker alike; the probe
checks what the container runs. scripts/image-smoke runs it in both roles in the real image.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.http.request import validate_host
from django.utils import timezone
from hypothesis import given
from hypothesis import strategies as st

from portal import container_health
from portal.container_health import (
    Process,
    cluster_pids,
    probe_host,
    problems,
    roles,
    running_processes,
    web_problem,
    worker_problem,
)
from portal.env import allowed_hosts
from tests.test_crash import kill_cluster, start_cluster, wait_for

ROOT = Path(__file__).resolve().parent.parent

GUNICORN = ("/app/.venv/bin/python", "/app/.venv/bin/gunicorn", "portal.wsgi:application")
QCLUSTER = ("python", "manage.py", "qcluster")


# --- which role -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ([Process(1, 0, GUNICORN), Process(7, 1, GUNICORN)], {"web"}),
        (
            [Process(1, 0, ("gunicorn", "portal.wsgi:application", "--bind", "0.0.0.0:8000"))],
            {"web"},
        ),
        ([Process(1, 0, ("gunicorn: master [portal.wsgi:application]",))], {"web"}),
        ([Process(1, 0, QCLUSTER), Process(9, 1, QCLUSTER), Process(10, 9, QCLUSTER)], {"worker"}),
        # Behind an init process (docker run --init) and with the project's full paths.
        (
            [
                Process(1, 0, ("/sbin/docker-init", "--", "python", "manage.py", "qcluster")),
                Process(7, 1, ("/app/.venv/bin/python", "/app/manage.py", "qcluster")),
            ],
            {"worker"},
        ),
        ([Process(1, 0, GUNICORN), Process(2, 0, QCLUSTER)], {"web", "worker"}),
        # A one-off command is neither: its health means nothing, and the probe says so.
        ([Process(1, 0, ("python", "manage.py", "migrate", "--noinput"))], set()),
        ([Process(1, 0, ("sh", "-c", "echo gunicorn qcluster"))], set()),
        ([Process(1, 0, ("python", "-m", "portal.container_health"))], set()),
    ],
)
def test_the_role_is_read_from_the_processes(table, expected):
    assert roles(table) == expected


def test_the_cluster_is_the_qcluster_process_whose_parent_is_not_one():
    table = [
        Process(1, 0, ("/sbin/docker-init", "--", "python", "manage.py", "qcluster")),
        Process(7, 1, QCLUSTER),  # the cluster: its stat carries this pid
        Process(12, 7, QCLUSTER),  # the sentinel, forked
        Process(13, 12, QCLUSTER),  # a worker, forked
        Process(14, 12, QCLUSTER),
    ]
    assert cluster_pids(table) == {7}
    assert cluster_pids(table[1:]) == {7}
    # Run through a shell that did not exec: the shell is not the cluster, its child is.
    shell = Process(1, 0, ("sh", "-c", "python manage.py qcluster"))
    assert cluster_pids([shell, Process(6, 1, QCLUSTER)]) == {6}


def test_processes_are_read_from_proc(tmp_path):
    for pid, comm, ppid, argv in [
        (1, "python", 0, b"python\0manage.py\0qcluster\0"),
        (7, "a (strange) name", 1, b"python\0manage.py\0qcluster\0"),
    ]:
        entry = tmp_path / str(pid)
        entry.mkdir()
        (entry / "cmdline").write_bytes(argv)
        (entry / "stat").write_text(f"{pid} ({comm}) S {ppid} {pid} {pid} 0 -1\n")
    (tmp_path / "self").mkdir()  # not a pid: skipped
    (tmp_path / "99").mkdir()  # ended while read: skipped
    table = sorted(running_processes(tmp_path), key=lambda process: process.pid)
    assert table == [Process(1, 0, QCLUSTER), Process(7, 1, QCLUSTER)]
    assert cluster_pids(table) == {1}


def test_the_real_proc_shows_this_process():
    me = next(process for process in running_processes() if process.pid == os.getpid())
    assert me.ppid == os.getppid()
    assert me.argv[0] == sys.argv[0] or Path(me.argv[0]).name.startswith("python")


def test_a_container_running_neither_role_is_unhealthy():
    assert problems([Process(1, 0, ("python", "manage.py", "shell"))]) == [
        "neither the web server (gunicorn) nor the task worker (qcluster) runs here"
    ]


def test_invalid_settings_are_one_line_not_a_traceback(monkeypatch, capsys):
    monkeypatch.setenv("DEBUG", "perhaps")
    monkeypatch.setattr(container_health, "running_processes", lambda: [Process(1, 0, GUNICORN)])
    assert container_health.main() == 1
    assert capsys.readouterr().err == (
        "the settings do not load: DEBUG must be true or false, not 'perhaps'\n"
    )


# --- the host the web probe presents ----------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "debug", "hosts", "presented"),
    [
        # The defect: a blank first entry made the probe present localhost and get 400.
        (" ,portal.example.com", "false", ["portal.example.com"], "portal.example.com"),
        (
            "portal.example.com, ,other.example.com",
            "false",
            ["portal.example.com", "other.example.com"],
            "portal.example.com",
        ),
        (".example.com", "false", [".example.com"], "example.com"),
        (" , .,*", "false", [".", "*"], "localhost"),
        ("*", "false", ["*"], "localhost"),
        (None, "true", ["127.0.0.1", "localhost"], "127.0.0.1"),
        (None, "false", [], "localhost"),
    ],
)
def test_the_probe_presents_a_host_the_settings_allow(monkeypatch, raw, debug, hosts, presented):
    if raw is None:
        monkeypatch.delenv("ALLOWED_HOSTS", raising=False)
    else:
        monkeypatch.setenv("ALLOWED_HOSTS", raw)
    monkeypatch.setenv("DEBUG", debug)
    assert allowed_hosts() == hosts
    assert probe_host() == presented
    if hosts:
        assert validate_host(presented, hosts)


host_label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)
host_name = st.builds(".".join, st.lists(host_label, min_size=1, max_size=3))
entry = st.one_of(
    host_name,
    host_name.map(lambda name: "." + name),
    st.just("*"),
    st.sampled_from(["", " ", "  ", "\t"]),
)


@given(entries=st.lists(entry, max_size=5), padding=st.sampled_from(["", " ", "  "]))
def test_any_list_with_a_usable_entry_gets_an_allowed_host(entries, padding):
    raw = ",".join(padding + item + padding for item in entries)
    # Hypothesis calls this many times within one test: the environment is set and put back here.
    saved = {name: os.environ.get(name) for name in ("ALLOWED_HOSTS", "DEBUG")}
    os.environ.update(ALLOWED_HOSTS=raw, DEBUG="false")
    try:
        hosts = allowed_hosts()
        presented = probe_host()
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    assert all(host == host.strip() and host for host in hosts)
    if hosts:
        assert validate_host(presented, hosts), (raw, hosts, presented)


def test_the_settings_and_the_probe_read_allowed_hosts_alike():
    """The settings module itself, loaded in a fresh process with the value that broke the probe."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "portal.settings",
        "DEBUG": "false",
        "SECRET_KEY": "probe-test-key-not-a-secret-0123456789abcdefghij",
        "ALLOWED_HOSTS": " ,portal.example.com",
    }
    script = (
        "import django; django.setup(); from django.conf import settings; "
        "from portal.container_health import probe_host; "
        "print(settings.ALLOWED_HOSTS, probe_host())"
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "['portal.example.com'] portal.example.com"


# --- the web role against a live server -------------------------------------------------------


@pytest.fixture
def live_port(live_server) -> int:
    return int(live_server.url.rsplit(":", 1)[1])


def test_web_healthy_when_healthz_answers_200(live_port, settings, monkeypatch):
    monkeypatch.setenv("ALLOWED_HOSTS", " ,portal.example.com")
    settings.ALLOWED_HOSTS = allowed_hosts()
    assert web_problem(port=live_port) is None


def test_web_unhealthy_when_the_host_is_refused(live_port, settings, monkeypatch):
    monkeypatch.setenv("ALLOWED_HOSTS", "portal.example.com")
    settings.ALLOWED_HOSTS = ["other.example.com"]
    assert web_problem(port=live_port) == (
        "web: /healthz answered 400 to Host 'portal.example.com'; is it in ALLOWED_HOSTS?"
    )


def test_web_unhealthy_when_nothing_listens():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    problem = web_problem(port=port)
    assert problem is not None
    assert problem.startswith(f"web: /healthz unreachable on port {port}:")


# --- the worker role against a real cluster ---------------------------------------------------


def test_worker_healthy_only_with_its_own_clusters_heartbeat(settings, transactional_db):
    cluster = start_cluster(settings)
    try:
        wait_for(lambda: worker_problem({cluster.pid}) is None, timeout=30)
        # Another cluster's heartbeat (another pid on this host) does not count for this one.
        assert worker_problem({cluster.pid + 100_000}) == (
            f"worker: no heartbeat from the task cluster (pid {cluster.pid + 100_000}) "
            f"on {socket.gethostname()}"
        )
        # A heartbeat that stopped being published long ago.
        later = timezone.now() + timedelta(seconds=container_health.HEARTBEAT_MAX_AGE_S + 5)
        assert "heartbeat is" in (worker_problem({cluster.pid}, now=later) or "")
    finally:
        kill_cluster(cluster)
    # The stat expires on the broker within seconds of the cluster's death.
    wait_for(lambda: worker_problem({cluster.pid}) is not None, timeout=15)
