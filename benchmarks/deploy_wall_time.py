"""Wall time of fresh deployments against the simulator, through the real task queue.

Starts a Dokploy simulator answering every API call after LATENCY seconds (default 0.05),
a django-q2 cluster in its default configuration, and then:
  1. one fresh deployment: the API calls it makes (count and list) and its wall time;
  2. ten users' fresh deployments requested at once: each one's wall time and the total.
Run: .venv/bin/python benchmarks/deploy_wall_time.py [--latency 0.05] [--deploy-seconds 1]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from stacks.dokploy.simulator import DokploySimulator

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--deploy-seconds", type=float, default=1.0)
    parser.add_argument("--users", type=int, default=10)
    args = parser.parse_args()

    from stacks.dokploy.simulator import DokploySimulator

    simulator = DokploySimulator(
        api_key="bench-key-0123456789", deploy_seconds=args.deploy_seconds, latency=args.latency
    ).start()
    workdir = tempfile.mkdtemp(prefix="portal-bench-")
    os.environ.update(
        DEBUG="true",
        LOG_LEVEL="WARNING",
        LOG_FORMAT="text",
        DJANGO_SETTINGS_MODULE="portal.settings",
        DATABASE_URL=f"sqlite:///{workdir}/bench.sqlite3",
        DOKPLOY_URL=simulator.url,
        DOKPLOY_API_KEY=simulator.api_key,
        STACK_URL=simulator.stack_url_template,
        STACK_CHECK_DNS="false",
        HEALTH_INTERVAL="0.25",
    )
    os.environ.pop("REDIS_URL", None)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    cluster = subprocess.Popen(
        [sys.executable, "manage.py", "qcluster"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_cluster()
        run(simulator, args)
    finally:
        cluster.terminate()
        cluster.wait(timeout=60)
        simulator.stop()


def wait_for_cluster() -> None:
    from django_q.status import Stat

    end = time.monotonic() + 60
    while not Stat.get_all():
        if time.monotonic() > end:
            raise SystemExit("the task cluster did not start")
        time.sleep(0.2)


def request_and_wait(usernames: list[str]) -> list[tuple[str, str, float]]:
    from django.contrib.auth.models import User

    from stacks import lifecycle
    from stacks.models import DeploymentAttempt

    attempts = []
    for name in usernames:
        user, _ = User.objects.get_or_create(username=name)
        attempts.append(lifecycle.request_attempt(user, "create"))
    while DeploymentAttempt.objects.filter(
        pk__in=[a.pk for a in attempts], status__in=DeploymentAttempt.ACTIVE
    ).exists():
        time.sleep(0.05)
    results = []
    for attempt in DeploymentAttempt.objects.filter(pk__in=[a.pk for a in attempts]):
        assert attempt.finished_at is not None
        wall = (attempt.finished_at - attempt.queued_at).total_seconds()
        results.append((attempt.stack.username, attempt.status, wall))
    return sorted(results)


def run(simulator: DokploySimulator, args: argparse.Namespace) -> None:
    print(
        f"simulator latency {args.latency * 1000:.0f} ms per call, deploy {args.deploy_seconds} s"
    )
    started = time.monotonic()
    [(name, status, wall)] = request_and_wait(["solo"])
    total = time.monotonic() - started
    calls = [f"{c['method']} {c['endpoint']}" for c in simulator.calls()]
    print(
        f"\n1. one fresh deployment: {status}, {wall:.2f} s from request to healthy "
        f"({total:.2f} s measured outside)"
    )
    print(f"   {len(calls)} API calls:")
    for call, count in Counter(calls).items():
        print(f"     {count:>2} x {call}")

    before = len(simulator.calls())
    names = [f"user{n:02d}" for n in range(args.users)]
    started = time.monotonic()
    results = request_and_wait(names)
    total = time.monotonic() - started
    print(f"\n2. {args.users} users at once:")
    for name, status, wall in results:
        print(f"   {name}: {status}, {wall:.2f} s")
    walls = [wall for *_, wall in results]
    print(
        f"   total {total:.2f} s; slowest {max(walls):.2f} s; mean {sum(walls) / len(walls):.2f} s;"
        f" {len(simulator.calls()) - before} API calls"
    )
    print(
        f"   total / one deployment = {total / wall:.2f} "
        f"(1.0 = no waiting on each other; {args.users} = fully serial)"
    )


if __name__ == "__main__":
    main()
