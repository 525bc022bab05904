"""Look-ups the phases share: finding the stack's project, application and domain in Dokploy.

Dokploy's names are not unique and creates are not idempotent, so every phase looks before it
acts. What two phases both need to find lives here, never in one of the phases.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from stacks.dokploy.errors import DokployError
from stacks.dokploy.types import Domain, Project
from stacks.pipeline.run import Run


@dataclass(frozen=True)
class ProjectMatch:
    """The stack's project as found in Dokploy, and how many projects share its name."""

    project: Project
    same_name: int


def find_project(run: Run) -> ProjectMatch | None:
    """Our project: the stored id if it still exists, else an exact name match."""
    client = run.client
    if run.stack.project_id:
        try:
            return ProjectMatch(client.project_one(run.stack.project_id), 1)
        except DokployError as exc:
            if exc.status != 404:
                raise
    name = run.target.project_name
    matches = sorted(
        (p for p in client.project_all() if p.name == name), key=lambda p: p.created_at or ""
    )
    if not matches:
        return None
    # Names are not unique in Dokploy; the newest is the one a crashed run of ours made.
    chosen = matches[-1] if run.intended("project", name) else matches[0]
    return ProjectMatch(chosen, len(matches))


def find_application_id(run: Run, name: str) -> str | None:
    if run.stack.application_id:
        return run.stack.application_id
    match = find_project(run)
    if match is None:
        return None
    for environment in run.client.environment_by_project_id(match.project.project_id):
        for app in environment.applications:
            if app.name == name:
                return app.application_id
    return None


def find_domain_id(run: Run, host: str) -> str | None:
    if not run.stack.application_id:
        return None
    domains = run.client.domain_by_application_id(run.stack.application_id)
    return next((d.domain_id for d in domains if d.host == host), None)


def same_domain(domain: Domain, want: dict[str, Any]) -> bool:
    return bool(
        domain.https == want["https"]
        and domain.port == want["port"]
        and domain.certificate_type == want["certificate_type"]
        and (domain.domain_type or "application") == want["domain_type"]
        and (domain.path or "/") == want["path"]
    )
