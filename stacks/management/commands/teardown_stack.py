"""Remove a user's stack completely: the application first, then its project."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from stacks import lifecycle, pipeline
from stacks.models import DeploymentAttempt, DeploymentStep


class Command(BaseCommand):
    help = "Tear down USERNAME's stack in Dokploy (application, domains, project)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")

    def handle(self, *args: Any, **options: Any) -> None:
        username: str = options["username"]
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"there is no portal user {username}")
        try:
            attempt = lifecycle.request_attempt(
                user,
                DeploymentAttempt.Kind.TEARDOWN,
                reason="teardown_stack command",
                dispatch=False,
            )
        except lifecycle.LifecycleError as exc:
            raise CommandError(str(exc)) from exc
        result = pipeline.run_attempt(attempt.pk, on_step=self._print_step)
        if result is None:
            raise CommandError(f"attempt #{attempt.pk} is held by another worker")
        if result.status != DeploymentAttempt.Status.SUCCEEDED:
            raise CommandError(f"{result.error_code}: {result.error_message}")
        self.stdout.write(self.style.SUCCESS(f"{username}'s stack is removed"))

    def _print_step(self, step: DeploymentStep) -> None:
        self.stdout.write(
            f"  {step.phase:<11} {step.action:<6} {step.status:<9} "
            f"{step.duration_ms or 0:>6} ms  {step.summary}"
            + (f"\n    {step.error_code}: {step.error_message}" if step.error_message else "")
        )
