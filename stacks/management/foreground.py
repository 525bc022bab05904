"""What the stack commands share: the username argument, and running an attempt in the
foreground with one printed line per step."""

from __future__ import annotations

from argparse import Namespace
from collections.abc import Sequence
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from stacks import names, pipeline
from stacks.models import AttemptStatus, DeploymentAttempt, DeploymentStep


class _UsernameParser(CommandParser):
    """Reads an argument such as "-bob" as the username, for names.validate to refuse it.

    argparse takes any unknown argument that starts with "-" for an option and answers with
    its own message; a username never is an option, and a refused name should get the same
    clear answer whatever its first character.
    """

    # argparse's overloads of parse_args cannot be restated; this one keeps the common form.
    def parse_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: Namespace | None = None
    ) -> Namespace:
        parsed, extras = self.parse_known_args(args, namespace)
        if len(extras) == 1 and parsed.username is None:
            parsed.username = extras[0]
        elif extras:
            self.error(f"unrecognized arguments: {' '.join(repr(e) for e in extras)}")
        return parsed


class UsernameCommand(BaseCommand):
    """A command whose positional argument is a portal username.

    The name is checked against the stack rules before anything is created, and a refused
    name is only ever printed escaped (repr), so no value typed by someone can forge a line.
    """

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        parser.__class__ = _UsernameParser
        return parser

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username", nargs="?")

    def username(self, options: dict[str, Any]) -> str:
        value = options.get("username")
        if not value:
            raise CommandError("a username is required")
        try:
            names.validate_stack_username(value)
        except ValidationError as exc:
            raise CommandError(
                f"{value!r} is not a valid portal username: {' '.join(exc.messages)}"
            ) from None
        return str(value)


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
    if result.status != AttemptStatus.SUCCEEDED:
        raise CommandError(f"{result.error_code}: {result.error_message}")
    return result
