"""One worker's run of one attempt: its state, its checkpoints and waits, and its intents.

The phases (provision, operations, rollback) are plain functions that take the Run. Through it
they record steps, stop at checkpoints (a lost lease, a cancel request, the deadline), wait
without missing those, and write down each resource before creating it (an intent, by name),
so that a run that resumes after a crash recognises what this attempt made, and a rollback
removes exactly that.

Each Dokploy call is tied to its attempt and phase here, by the hooks the Run gives its client.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from stacks import throttle
from stacks.dokploy.client import CallRecord, DokployClient, record_call_to_db
from stacks.models import DeploymentAttempt, DeploymentStep, IllegalTransition
from stacks.pipeline.journal import (
    CancelRequested,
    DeadlineExceeded,
    Journal,
    LeaseLost,
    StepCallback,
    StepOutcome,
    logger,
)
from stacks.pipeline.lease import Heartbeat
from stacks.pipeline.target import Target

Phase = DeploymentStep.Phase
# Inside waits, the cancel flag is read from the database at most this often.
CANCEL_POLL_SECONDS = 0.5


class Run:
    def __init__(
        self,
        attempt: DeploymentAttempt,
        *,
        owner: str,
        client: DokployClient | None = None,
        on_step: StepCallback | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.attempt = attempt
        self.stack = attempt.stack
        self.owner = owner
        self.sleep = sleep
        self.target = Target.for_stack(self.stack, attempt.image)
        self.journal = Journal(attempt, on_step)
        self.heartbeat = Heartbeat(attempt.pk, owner)
        self.phase: str = Phase.QUEUE
        self._last_cancel_check = 0.0
        self.client = client or DokployClient.from_settings()
        self.client.on_call = self._on_call
        self.client.before_request = self._before_request
        self.client.on_wait = self._on_wait
        self.client.time_left = self.seconds_left

    # The client's hooks ------------------------------------------------------------------

    def _on_call(self, record: CallRecord) -> None:
        record_call_to_db(record, attempt_id=self.attempt.pk, phase=self.phase)
        self.journal.note_call(record)

    def _before_request(self, endpoint: str) -> None:
        throttle.acquire(self.phase)

    def _on_wait(self, endpoint: str, next_try: int, seconds: float) -> None:
        self.journal.note_wait(next_try, seconds)

    # Steps, checkpoints and waits --------------------------------------------------------

    @contextmanager
    def step(
        self, phase: str, action: str, summary: str, *, check: bool = True
    ) -> Iterator[StepOutcome]:
        """One recorded step of `phase`; first a checkpoint unless `check` is off."""
        if check:
            self.checkpoint()
        self.phase = phase
        with self.journal.record(phase, action, summary) as outcome:
            yield outcome

    def checkpoint(self, *, throttled: bool = False) -> None:
        """Stop here if the lease was lost, a cancel was asked for or the deadline passed.

        Inside wait loops (`throttled`) the cancel flag is read at most twice a second.
        """
        if self.heartbeat.lost.is_set():
            raise LeaseLost("another worker took this attempt over")
        now = time.monotonic()
        if not throttled or now - self._last_cancel_check >= CANCEL_POLL_SECONDS:
            self._last_cancel_check = now
            wanted = (
                DeploymentAttempt.objects.filter(pk=self.attempt.pk)
                .values_list("cancel_requested", flat=True)
                .first()
            )
            if wanted:
                raise CancelRequested("cancelled on request")
        deadline = self.attempt.deadline
        if deadline and timezone.now() >= deadline:
            raise DeadlineExceeded(
                f"the attempt ran past DEPLOY_TIMEOUT ({settings.DEPLOY_TIMEOUT:g} s)"
            )

    def wait(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while True:
            self.checkpoint(throttled=True)
            left = end - time.monotonic()
            if left <= 0:
                return
            self.sleep(min(left, CANCEL_POLL_SECONDS))

    def seconds_left(self) -> float:
        """Seconds until the deadline in force: the attempt's, or its rollback's once begun."""
        deadline = self.rollback_deadline() or self.attempt.deadline
        if not deadline:
            return float(settings.DEPLOY_TIMEOUT)
        return max(0.0, (deadline - timezone.now()).total_seconds())

    def rollback_deadline(self) -> datetime | None:
        started = self.attempt.rollback_started_at
        if started is None:
            return None
        return started + timedelta(seconds=float(settings.ROLLBACK_TIMEOUT))

    # Intents: what this attempt created --------------------------------------------------

    def intend(self, kind: str, name: str) -> None:
        """Write down, before creating it, that this attempt is about to create `name`."""
        if not self.intended(kind, name):
            self.attempt.created_resources.append({"kind": kind, "name": name, "id": None})
            self.save_resources()

    def intended(self, kind: str, name: str) -> dict[str, Any] | None:
        entry: dict[str, Any]
        for entry in self.attempt.created_resources:
            if entry["kind"] == kind and entry["name"] == name:
                return entry
        return None

    def confirm(self, kind: str, name: str, resource_id: str) -> None:
        """Record the id Dokploy gave what this attempt intended to create."""
        entry = self.intended(kind, name)
        if entry is not None and entry["id"] != resource_id:
            entry["id"] = resource_id
            self.save_resources()

    def save_resources(self) -> None:
        DeploymentAttempt.objects.filter(pk=self.attempt.pk).update(
            created_resources=self.attempt.created_resources
        )

    # Records -----------------------------------------------------------------------------

    def save_stack(self, **fields: Any) -> None:
        for name, value in fields.items():
            setattr(self.stack, name, value)
        self.stack.save(update_fields=[*fields, "updated_at"])

    def save_attempt(self, **fields: Any) -> None:
        """Fields of a running attempt that are not its status (see finish for that)."""
        DeploymentAttempt.objects.filter(pk=self.attempt.pk).update(**fields)
        for name, value in fields.items():
            setattr(self.attempt, name, value)

    def finish(self, status: str, **fields: Any) -> None:
        """End the attempt; a no-op with a warning if someone else already ended it."""
        try:
            self.attempt.transition(status, **fields)
        except IllegalTransition:
            logger.warning("attempt already finished", extra={"deploymentId": self.attempt.pk})
