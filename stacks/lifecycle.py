"""What the portal's pages and commands may ask of a stack: the sanctioned state changes.

Requests only ever create or change DeploymentAttempt rows and hand them to the queue; the
pipeline does the work. Each function validates its input and raises an error a person can act
on, before anything reaches Dokploy. Staff ask through `stacks.staff_actions`, which calls these
and writes the audit trail.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from stacks import names, queueing
from stacks.models import AttemptKind, AttemptStatus, DeploymentAttempt, IllegalTransition, Stack

# Kinds that act on an application that must already exist.
NEEDS_APPLICATION = (AttemptKind.STOP, AttemptKind.START, AttemptKind.REDEPLOY)
# What "Try again" may follow.
RETRYABLE = frozenset({AttemptStatus.FAILED, AttemptStatus.ROLLED_BACK, AttemptStatus.CANCELLED})


class LifecycleError(Exception):
    """A request that cannot be carried out as asked; the message says why."""


class StackBusy(LifecycleError):
    def __init__(self, attempt: DeploymentAttempt) -> None:
        super().__init__(f"A {attempt.kind} of this stack is already {attempt.status}.")
        self.attempt = attempt


def ensure_stack(user: User) -> Stack:
    """The user's stack, created on first use. Invalid or reserved usernames are refused."""
    username = user.get_username()
    try:
        names.validate_stack_username(username)
    except ValidationError as exc:
        raise LifecycleError(f"{username!r} cannot own a stack: {' '.join(exc.messages)}") from exc
    stack, _ = Stack.objects.get_or_create(
        owner=user,
        defaults={
            "username": username,
            "host": names.stack_host(username, settings.STACK_DOMAIN),
            "image": settings.STACK_IMAGE,
            "volume_name": names.new_volume_name(username),
        },
    )
    return stack


def _check_state(stack: Stack, kind: str) -> None:
    """Refuse what cannot be done to the stack as it is now."""
    if kind in NEEDS_APPLICATION and not stack.application_id:
        raise LifecycleError(f"There is no deployed stack to {kind} yet; create it first.")
    if kind == AttemptKind.STOP and stack.observed_state == Stack.Observed.STOPPED:
        raise LifecycleError("Your stack is already stopped; nothing to stop.")
    if kind == AttemptKind.START and stack.observed_state == Stack.Observed.HEALTHY:
        raise LifecycleError("Your stack is already running; nothing to start.")


def request_attempt(
    user: User,
    kind: str,
    *,
    requested_by: User | None = None,
    reason: str = "",
    delete_data: bool = False,
    dispatch: bool = True,
    idempotency_key: uuid.UUID | None = None,
) -> DeploymentAttempt:
    """Queue a create, redeploy, stop, start or teardown of the user's stack.

    A teardown keeps the person's files unless `delete_data` asks to delete them too.
    A request carrying the idempotency key of an earlier one returns that attempt, whatever its
    state, and queues nothing. An active attempt whose worker died (lease expired) is taken
    over and returned instead of refusing the request; any other active attempt raises
    StackBusy.
    """
    if kind not in AttemptKind.values:
        raise LifecycleError(f"Unknown action {kind!r}.")
    if delete_data and kind != AttemptKind.TEARDOWN:
        raise LifecycleError("Only deleting the stack can delete its files.")
    stack = ensure_stack(user)
    earlier = _same_request(stack, kind, idempotency_key)
    if earlier is not None:
        return earlier
    _check_state(stack, kind)
    active = stack.active_attempt()
    if active is not None:
        if queueing.worker_lost(active):
            if dispatch:
                queueing.resend(active)
            return active
        raise StackBusy(active)
    not_before = queueing.earliest_start(stack) if kind in queueing.LIMITED_KINDS else None
    try:
        with transaction.atomic():
            attempt = DeploymentAttempt.objects.create(
                stack=stack,
                kind=kind,
                requested_by=requested_by or user,
                reason=reason[:200],
                image=settings.STACK_IMAGE if kind in queueing.LIMITED_KINDS else stack.image,
                not_before=not_before,
                delete_data=delete_data,
                idempotency_key=idempotency_key,
            )
    except IntegrityError:
        earlier = _same_request(stack, kind, idempotency_key)
        if earlier is not None:
            return earlier  # the same request, sent twice at once
        raced = stack.active_attempt()
        if raced is None:
            raise
        raise StackBusy(raced) from None
    if dispatch:
        transaction.on_commit(queueing.dispatch)
    return attempt


def _same_request(stack: Stack, kind: str, key: uuid.UUID | None) -> DeploymentAttempt | None:
    if key is None:
        return None
    earlier = stack.attempts.filter(idempotency_key=key).first()
    if earlier is not None and earlier.kind != kind:
        raise LifecycleError("This form was already used; reload the page and try again.")
    return earlier


def retry_attempt(
    attempt: DeploymentAttempt,
    *,
    by: User,
    reason: str = "",
    idempotency_key: uuid.UUID | None = None,
    dispatch: bool = True,
) -> DeploymentAttempt:
    """Ask again for what a failed, rolled-back or cancelled attempt was asked to do."""
    if attempt.is_active:
        raise LifecycleError(f"This {attempt.kind} has not ended yet.")
    if attempt.status not in RETRYABLE:
        raise LifecycleError(f"This {attempt.kind} succeeded; there is nothing to try again.")
    return request_attempt(
        attempt.stack.owner,
        attempt.kind,
        requested_by=by,
        reason=reason or f"Try again after attempt #{attempt.pk}",
        delete_data=attempt.delete_data,
        idempotency_key=idempotency_key,
        dispatch=dispatch,
    )


def cancel_attempt(attempt: DeploymentAttempt, *, by: User | None = None) -> None:
    """A queued attempt ends at once; a running one stops at its next step and rolls back."""
    who = by.get_username() if by is not None else "the system"
    if attempt.status == AttemptStatus.QUEUED:
        try:
            attempt.transition(
                AttemptStatus.CANCELLED,
                cancel_requested=True,
                error_code="CANCELLED",
                error_message=f"Cancelled by {who} before it started",
            )
        except IllegalTransition:
            pass  # a worker started it meanwhile; the instance now shows that
        else:
            transaction.on_commit(queueing.dispatch)
            return
    asked = DeploymentAttempt.objects.filter(pk=attempt.pk, status=AttemptStatus.RUNNING).update(
        cancel_requested=True
    )
    attempt.refresh_from_db()
    if not asked:
        raise LifecycleError(f"This {attempt.kind} already ended ({attempt.get_status_display()}).")


def asked_by_someone_else(attempt: DeploymentAttempt) -> str:
    """The username of whoever requested the attempt on the owner's behalf, or ""."""
    requester = attempt.requested_by
    if requester is None or requester.pk == attempt.stack.owner_id:
        return ""
    return requester.get_username()
