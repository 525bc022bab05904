"""Running an attempt in a management command's foreground, one printed line per step."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from stacks import pipeline
from stacks.models import DeploymentAttempt, DeploymentStep


def step_line(step: DeploymentStep) -> str:
    line = (
        f"  {step.phase:<11} {step.action:<6} {step.status:<9} "
        f"{step.duration_ms or 0:>6} ms  {step.summary}"
    )
    if step.retries:
        line += f" ({step.retries} retries)"
    if step.error_message:
        line += f"\n    {step.error_code}: {step.error_message}"
    return line


def run_in_foreground(command: BaseCommand, attempt: DeploymentAttempt) -> DeploymentAttempt:
    """Run the attempt here; CommandError (exit status 1) unless it succeeded."""
    result = pipeline.run_attempt(
        attempt.pk, on_step=lambda step: command.stdout.write(step_line(step))
    )
    if result is None:
        raise CommandError(f"attempt #{attempt.pk} is held by another worker")
    command.stdout.write(f"attempt #{result.pk} {result.get_status_display().lower()}")
    if result.status != DeploymentAttempt.Status.SUCCEEDED:
        raise CommandError(f"{result.error_code}: {result.error_message}")
    return result
