"""Compare Dokploy with the database and report each finding; --fix removes orphans and queues
repairs. Exit status 1 when the run could not finish (Dokploy unreachable, breaker open)."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from stacks import reconcile
from stacks.models import ReconcileFinding, ReconcileRun


class Command(BaseCommand):
    help = (
        "Compare Dokploy's ai-stack-* projects with the database and report orphans, drift and "
        "shared names. --fix removes orphans (applications first, then the empty project) and "
        "queues a repair for each drifted stack."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--fix", action="store_true", help="remove orphans, repair drift")
        parser.add_argument("--json", action="store_true", help="print the run as JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        run = reconcile.run(fix=options["fix"], trigger=ReconcileRun.Trigger.COMMAND)
        findings = list(run.findings.order_by("id"))
        if options["json"]:
            self.stdout.write(json.dumps(as_json(run, findings), indent=2))
        else:
            self.write_text(run, findings)
        if run.status != ReconcileRun.Status.OK:
            raise CommandError(f"reconcile run #{run.pk} failed: {run.error_message}")

    def write_text(self, run: ReconcileRun, findings: list[ReconcileFinding]) -> None:
        self.stdout.write(
            f"reconcile run #{run.pk}: {run.projects_seen} ai-stack-* projects, "
            f"{run.stacks_checked} stacks checked, {run.protected} left alone "
            f"(attempt in progress), {len(findings)} findings"
        )
        for finding in findings:
            subject = (
                finding.application_name
                or finding.project_name
                or finding.volume_name
                or finding.username
            )
            ident = finding.application_id or finding.project_id
            line = f"  {finding.kind:<20} {subject} {f'({ident})' if ident else ''}".rstrip()
            self.stdout.write(f"{line}\n      {finding.detail}")
            if finding.fix:
                self.stdout.write(f"      fix: {finding.get_fix_display()}: {finding.fix_detail}")


def as_json(run: ReconcileRun, findings: list[ReconcileFinding]) -> dict[str, Any]:
    return {
        "run": run.pk,
        "status": run.status,
        "fix": run.fix,
        "started_at": run.started_at.isoformat(),
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "error": run.error_message,
        "projects_seen": run.projects_seen,
        "stacks_checked": run.stacks_checked,
        "protected": run.protected,
        "findings": [
            {
                "kind": f.kind,
                "username": f.username,
                "project_id": f.project_id,
                "project_name": f.project_name,
                "application_id": f.application_id,
                "application_name": f.application_name,
                "domain_id": f.domain_id,
                "volume_name": f.volume_name,
                "attempt": f.attempt_id,
                "detail": f.detail,
                "fix": f.fix,
                "fix_detail": f.fix_detail,
            }
            for f in findings
        ],
    }
