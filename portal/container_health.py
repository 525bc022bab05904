"""The container's health probe (the image's HEALTHCHECK): it checks what the container runs.

One image runs in two roles, and Docker, Swarm and podman apply the image's HEALTHCHECK to both:

    web     gunicorn: GET /healthz on the container's own port 8000, presenting a host that
            Django accepts (the first usable ALLOWED_HOSTS entry, read as the settings read it);
            healthy on 200
    worker  `manage.py qcluster`: the django-q2 cluster running in this container has published
            its heartbeat (a stat for this host and the cluster's pid, Idle or Working, fresh)

The role is read from the container's processes, so no setting has to say it; a container that
runs both is checked for both. Exit status 0 when healthy, else 1 with one line on stderr saying
why (Docker keeps it in the container's health log).

    python -m portal.container_health
"""

from __future__ import annotations

import os
import socket
import sys
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from portal.env import allowed_hosts

WEB_PORT = 8000
# django-q2 publishes a cluster's stat at least every few seconds (with a 3 s expiry on the
# broker); an older one means the cluster's guard loop is stuck.
HEARTBEAT_MAX_AGE_S = 30.0


@dataclass(frozen=True)
class Process:
    pid: int
    ppid: int
    argv: tuple[str, ...]


def running_processes(proc: Path = Path("/proc")) -> list[Process]:
    """Every process this container's PID namespace shows, with its command line."""
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "cmdline").read_bytes()
            stat = (entry / "stat").read_text(encoding="utf-8", errors="replace")
        except OSError:  # ended while we looked, or a kernel thread we may not read
            continue
        argv = tuple(part.decode(errors="replace") for part in raw.split(b"\0") if part)
        # The command name in /proc/PID/stat is in parentheses and may hold spaces.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        found.append(Process(int(entry.name), ppid, argv))
    return found


def is_cluster(process: Process) -> bool:
    """Python running `manage.py qcluster` (or `django-admin qcluster`) itself, not an init
    process or a shell that starts it."""
    argv = process.argv
    if not argv or not (Path(argv[0]).name.startswith("python") or _is_django_command(argv[0])):
        return False
    return any(
        argv[i] == "qcluster" and _is_django_command(argv[i - 1]) for i in range(1, len(argv))
    )


def _is_django_command(arg: str) -> bool:
    return Path(arg).name in {"manage.py", "django-admin"}


def is_web_server(process: Process) -> bool:
    """gunicorn itself (run directly or by Python), not an init process or a shell."""
    argv = process.argv
    if not argv:
        return False
    # With setproctitle installed, gunicorn renames itself "gunicorn: master [...]".
    if Path(argv[0]).name == "gunicorn" or argv[0].startswith("gunicorn: "):
        return True
    return (
        Path(argv[0]).name.startswith("python")
        and len(argv) > 1
        and Path(argv[1]).name == "gunicorn"
    )


def cluster_pids(processes: Iterable[Process]) -> set[int]:
    """The pid of each django-q2 cluster: a qcluster process whose parent is not one."""
    clusters = {process.pid: process for process in processes if is_cluster(process)}
    return {pid for pid, process in clusters.items() if process.ppid not in clusters}


def roles(processes: Iterable[Process]) -> set[str]:
    found = set()
    for process in processes:
        if is_cluster(process):
            found.add("worker")
        elif is_web_server(process):
            found.add("web")
    return found


def probe_host() -> str:
    """A Host header Django accepts: the first usable ALLOWED_HOSTS entry.

    `.example.com` allows example.com and its subdomains; `*` allows anything.
    """
    for host in allowed_hosts():
        if host == "*":
            return "localhost"
        if host.lstrip("."):
            return host.lstrip(".")
    return "localhost"


def web_problem(port: int = WEB_PORT, timeout: float = 4.0) -> str | None:
    host = probe_host()
    request = urllib.request.Request(f"http://127.0.0.1:{port}/healthz", headers={"Host": host})
    try:
        # S310 warns about file:// and custom schemes; the URL is http:// on the loopback.
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except OSError as exc:
        return f"web: /healthz unreachable on port {port}: {exc}"
    if status == 400:
        return f"web: /healthz answered 400 to Host {host!r}; is it in ALLOWED_HOSTS?"
    if status != 200:
        return f"web: /healthz answered {status}"
    return None


def worker_problem(clusters: set[int], now: datetime | None = None) -> str | None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    import django

    django.setup()
    from django_q.conf import Conf
    from django_q.status import Stat

    host = socket.gethostname()
    try:
        stats = [stat for stat in Stat.get_all() if stat.host == host and stat.pid in clusters]
    except Exception as exc:  # the broker is unreachable: the worker cannot work either
        return f"worker: cannot read the cluster's heartbeat: {type(exc).__name__}: {exc}"
    pids = ", ".join(str(pid) for pid in sorted(clusters))
    if not stats:
        return f"worker: no heartbeat from the task cluster (pid {pids}) on {host}"
    newest = max(stats, key=lambda stat: stat.timestamp)
    if newest.status not in {Conf.IDLE, Conf.WORKING}:
        return f"worker: the task cluster (pid {pids}) is {newest.status}"
    age = ((now or datetime.now(UTC)) - newest.timestamp).total_seconds()
    if age > HEARTBEAT_MAX_AGE_S:
        return f"worker: the task cluster's heartbeat is {age:.0f} s old"
    return None


def problems(processes: list[Process]) -> list[str]:
    found = roles(processes)
    if not found:
        return ["neither the web server (gunicorn) nor the task worker (qcluster) runs here"]
    result = []
    if "web" in found:
        result.append(web_problem())
    if "worker" in found:
        result.append(worker_problem(cluster_pids(processes)))
    return [problem for problem in result if problem]


def main() -> int:
    try:
        found = problems(running_processes())
    except ImproperlyConfigured as exc:
        found = [f"the settings do not load: {exc}"]
    for problem in found:
        print(problem, file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
