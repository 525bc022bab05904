"""An attempt's lease: who runs it, proof that they are alive, and taking over from the dead.

A run claims the attempt with a conditional UPDATE and holds a short lease (LEASE_SECONDS, at
most 30) that a heartbeat thread renews. The holder's identity names its host, pid and process
start time, so a process on the same host can tell at once that a holder died; a holder on
another host is judged only by its lease running out.

This module imports nothing of the pipeline: the queue's reaper uses it too.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db import connections
from django.db.models import F, Q
from django.utils import timezone

from stacks.models import ACTIVE_STATUSES, AttemptStatus, DeploymentAttempt, IllegalTransition

logger = logging.getLogger("stacks.pipeline")

LEASE_CAP = 30.0
# Each claim counts a run. An attempt redelivered more often than this is poison: it gives up
# and rolls back (one more run is allowed to finish that rollback).
MAX_RUNS = 5


def lease_seconds() -> float:
    return min(float(settings.LEASE_SECONDS), LEASE_CAP)


def worker_identity() -> str:
    """host:pid:start:random. The pid and the process's start time let a process on the same
    host see that a holder died, even when its pid was reused since."""
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{_process_start(pid) or 0}:{uuid.uuid4().hex[:8]}"


def holder_is_dead(owner: str) -> bool:
    """True when the lease holder ran on this host and its process no longer exists.

    A process that is gone, a zombie (killed, not yet reaped) or a new process that reuses the
    pid all count as gone. A holder on another host is not judged here: its lease simply has
    to expire.
    """
    host, pid_text, start_text, *_ = [*owner.split(":"), "", "", ""]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    started = _process_start(pid)
    if started is None:  # a zombie, or no /proc to tell
        return _is_zombie(pid)
    return start_text.isdigit() and int(start_text) not in (0, started)


def _proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name, or None where there is no /proc."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rpartition(")")[2].split()


def _process_start(pid: int) -> int | None:
    fields = _proc_stat(pid)
    if fields is None or len(fields) < 20 or fields[0] in ("Z", "X"):
        return None
    return int(fields[19])  # starttime, in clock ticks since boot


def _is_zombie(pid: int) -> bool:
    fields = _proc_stat(pid)
    return fields is not None and fields[0] in ("Z", "X")


def claim(attempt_id: int, owner: str) -> DeploymentAttempt | None:
    """Take the attempt's lease if it is free, expired or its holder is dead; start it if it
    was queued. None when the attempt is finished or another live worker holds it."""
    now = timezone.now()
    free = Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lt=now) | Q(lease_owner=owner)
    holder = (
        DeploymentAttempt.objects.filter(pk=attempt_id)
        .values_list("lease_owner", flat=True)
        .first()
    )
    if holder and holder_is_dead(holder):
        free |= Q(lease_owner=holder)  # its process is gone: no need to wait for expiry
    taken = (
        DeploymentAttempt.objects.filter(pk=attempt_id, status__in=ACTIVE_STATUSES)
        .filter(free)
        .update(
            lease_owner=owner,
            lease_expires_at=now + timedelta(seconds=lease_seconds()),
            runs=F("runs") + 1,
        )
    )
    if not taken:
        return None
    attempt = DeploymentAttempt.objects.select_related("stack", "stack__owner").get(pk=attempt_id)
    if attempt.status == AttemptStatus.QUEUED:
        try:
            attempt.transition(
                AttemptStatus.RUNNING,
                deadline=now + timedelta(seconds=float(settings.DEPLOY_TIMEOUT)),
            )
        except IllegalTransition:
            return None  # cancelled in the meantime
    return attempt


class Heartbeat:
    """Renews the lease in the background while the run is alive."""

    def __init__(self, attempt_id: int, owner: str) -> None:
        self.attempt_id = attempt_id
        self.owner = owner
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"lease-{attempt_id}", daemon=True)

    def renew(self) -> bool:
        until = timezone.now() + timedelta(seconds=lease_seconds())
        renewed = DeploymentAttempt.objects.filter(
            pk=self.attempt_id, lease_owner=self.owner, status__in=ACTIVE_STATUSES
        ).update(lease_expires_at=until)
        return renewed == 1

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        try:
            while not self._stop.wait(lease_seconds() / 3):
                if not self.renew():
                    self.lost.set()
                    return
        except Exception:
            logger.exception("lease renewal failed", extra={"deploymentId": self.attempt_id})
            self.lost.set()
        finally:
            connections.close_all()
