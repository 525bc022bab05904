"""A worker killed at a chosen moment of a pipeline run, in-process (real kills: test_crash)."""

from __future__ import annotations

import pytest

from stacks import pipeline
from stacks.models import DeploymentAttempt


class WorkerKilled(BaseException):
    """Stands in for SIGKILL: nothing after it runs, not even except blocks."""


def kill_worker_after_created(
    monkeypatch: pytest.MonkeyPatch, attempt: DeploymentAttempt, kind: str
) -> None:
    """Run the attempt until Dokploy made the `kind` resource ("project", "application", ...),
    then die before our commit: the attempt stays running and nothing records the new id."""
    original = pipeline.Run.confirm

    def die(run: pipeline.Run, resource_kind: str, name: str, resource_id: str) -> None:
        if resource_kind == kind:
            raise WorkerKilled
        original(run, resource_kind, name, resource_id)

    monkeypatch.setattr(pipeline.Run, "confirm", die)
    with pytest.raises(WorkerKilled):
        pipeline.run_attempt(attempt.pk, owner="worker-1")
    monkeypatch.setattr(pipeline.Run, "confirm", original)
