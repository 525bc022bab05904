"""Create or redeploy a user's stack in the foreground, through the portal's own pipeline."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import CommandError, CommandParser

from stacks import lifecycle
from stacks.management.foreground import UsernameCommand, run_in_foreground
from stacks.models import AttemptKind, Stack


class Command(UsernameCommand):
    help = (
        "Run a create (or, for a stack that exists, redeploy) attempt for USERNAME in the "
        "foreground, creating the portal user if missing. Exits 0 only when the stack ends healthy."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        super().add_arguments(parser)
        parser.add_argument(
            "--redeploy", action="store_true", help="Deploy again even if nothing changed"
        )
        parser.add_argument("--reason", default="deploy_stack command")

    def handle(self, *args: Any, **options: Any) -> None:
        username = self.username(options)  # checked before anything is created
        user, created = get_user_model().objects.get_or_create(username=username)
        if created:
            user.set_unusable_password()
            user.save()
            self.stdout.write(f"created portal user {username}")
        existing = Stack.objects.filter(owner=user).first()
        kind = AttemptKind.REDEPLOY if options["redeploy"] and existing else AttemptKind.CREATE
        try:
            attempt = lifecycle.request_attempt(
                user, kind, reason=options["reason"], dispatch=False
            )
        except lifecycle.LifecycleError as exc:
            raise CommandError(str(exc)) from exc
        if attempt.not_before:
            raise CommandError(
                f"{username} reached the deployment limit; the next one may start at "
                f"{attempt.not_before:%H:%M:%S} UTC (attempt #{attempt.pk} is queued for it)"
            )
        self.stdout.write(f"attempt #{attempt.pk}: {attempt.kind} of {username}")
        result = run_in_foreground(self, attempt)
        stack = Stack.objects.get(pk=result.stack_id)
        self.stdout.write(self.style.SUCCESS(f"{username} is healthy at {stack.public_url}"))
