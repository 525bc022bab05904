"""Remove a user's stack completely: the application first, then its project."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import CommandError

from stacks import lifecycle
from stacks.management.foreground import UsernameCommand, run_in_foreground
from stacks.models import AttemptKind


class Command(UsernameCommand):
    help = "Tear down USERNAME's stack in Dokploy (application, domains, project)."

    def handle(self, *args: Any, **options: Any) -> None:
        username = self.username(options)
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"there is no portal user {username}")
        try:
            attempt = lifecycle.request_attempt(
                user,
                AttemptKind.TEARDOWN,
                reason="teardown_stack command",
                dispatch=False,
            )
        except lifecycle.LifecycleError as exc:
            raise CommandError(str(exc)) from exc
        run_in_foreground(self, attempt)
        self.stdout.write(self.style.SUCCESS(f"{username}'s stack is removed"))
