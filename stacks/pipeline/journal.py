"""The step journal: one DeploymentStep row per step, its outcome, and how a run stops.

Every step is recorded before it acts and finished whatever happens; a worker killed in the
middle leaves the step `running`, and the next run marks it interrupted. The journal also keeps
the running step's live retry state (the try in flight, when the next one goes out), which the
progress page shows.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.db.models import Max
from django.utils import timezone

from stacks.dokploy.client import CallRecord
from stacks.dokploy.errors import DokployError
from stacks.models import DeploymentAttempt, DeploymentStep
from stacks.redaction import redact, redact_text

logger = logging.getLogger("stacks.pipeline")

StepStatus = DeploymentStep.Status
StepCallback = Callable[[DeploymentStep], None]


class StepFailed(Exception):
    """A phase could not reach its goal; the attempt fails and rolls back."""

    def __init__(
        self, phase: str, code: str, message: str, api_response: Any | None = None
    ) -> None:
        super().__init__(message)
        self.phase = phase
        self.code = code
        self.message = message
        self.api_response = api_response


class RunStopped(Exception):
    """The run must stop at this step boundary."""

    code = "STOPPED"


class CancelRequested(RunStopped):
    code = "CANCELLED"


class DeadlineExceeded(RunStopped):
    code = "DEADLINE_EXCEEDED"


class LeaseLost(RunStopped):
    """Another worker took the attempt over: this run leaves everything to it."""

    code = "LEASE_LOST"


@dataclass
class StepOutcome:
    """What a phase tells the journal about its step while it runs."""

    action: str
    summary: str
    status: str = StepStatus.SUCCEEDED
    response: Any = None
    calls: list[CallRecord] = field(default_factory=list)

    def skip(self, summary: str) -> None:
        self.status = StepStatus.SKIPPED
        self.summary = summary


def internal_error(phase: str, exc: BaseException) -> StepFailed:
    """A bug or an answer we cannot read, as a failure of the phase it happened in."""
    detail = redact_text("".join(traceback.format_exception_only(exc)).strip())
    return StepFailed(phase, "INTERNAL_ERROR", detail)


class Journal:
    """The steps of one attempt, numbered after those of earlier runs."""

    def __init__(self, attempt: DeploymentAttempt, on_step: StepCallback | None = None) -> None:
        self.attempt = attempt
        self.on_step = on_step
        self.outcome: StepOutcome | None = None
        self._running: DeploymentStep | None = None
        self._seq: int | None = None

    @contextmanager
    def record(self, phase: str, action: str, summary: str) -> Iterator[StepOutcome]:
        """Record one step; a DokployError inside becomes StepFailed for this phase."""
        outcome = StepOutcome(action=action, summary=summary)
        row = DeploymentStep.objects.create(
            attempt=self.attempt, seq=self._next_seq(), phase=phase, action=action, summary=summary
        )
        self.outcome, self._running = outcome, row
        started = time.monotonic()
        error: StepFailed | RunStopped | None = None
        try:
            yield outcome
        except DokployError as exc:
            error = StepFailed(phase, exc.code, str(exc), exc.api_response)
        except (StepFailed, RunStopped) as exc:
            error = exc
        except Exception as exc:
            logger.exception("unexpected error", extra={"deploymentId": self.attempt.pk})
            error = internal_error(phase, exc)
        # A process being killed records nothing more: the next run marks the step interrupted.
        self.outcome, self._running = None, None
        self._finish(row, outcome, started, error)
        if error is not None:
            raise error

    def note_call(self, record: CallRecord) -> None:
        if self.outcome is not None:
            self.outcome.calls.append(record)

    def note_wait(self, next_try: int, seconds: float) -> None:
        """The running step's call failed try `next_try - 1` and waits `seconds` for the next."""
        if self._running is None:
            return
        DeploymentStep.objects.filter(pk=self._running.pk).update(
            current_try=next_try - 1, next_try_at=timezone.now() + timedelta(seconds=seconds)
        )

    def close_interrupted(self) -> None:
        """Fail the steps that an earlier, dead run left open."""
        self.attempt.steps.filter(status=StepStatus.RUNNING).update(
            status=StepStatus.FAILED,
            finished_at=timezone.now(),
            error_code="INTERRUPTED",
            error_message="the worker running this step stopped before it finished",
        )

    def _next_seq(self) -> int:
        if self._seq is None:  # continue after the steps of earlier runs
            self._seq = self.attempt.steps.aggregate(top=Max("seq"))["top"] or 0
        self._seq += 1
        return self._seq

    def _finish(
        self,
        row: DeploymentStep,
        outcome: StepOutcome,
        started: float,
        error: StepFailed | RunStopped | None,
    ) -> None:
        row.finished_at = timezone.now()
        row.duration_ms = int((time.monotonic() - started) * 1000)
        row.action = outcome.action
        row.summary = redact_text(outcome.summary)[:300]
        row.retries = count_retries(outcome.calls)
        row.current_try = max((call.try_number for call in outcome.calls), default=0)
        row.next_try_at = None
        row.api_response = redact(outcome.response) if outcome.response is not None else None
        if isinstance(error, StepFailed):
            row.status = StepStatus.FAILED
            row.error_code = error.code[:64]
            row.error_message = redact_text(error.message)
            if error.api_response is not None:
                row.api_response = redact(error.api_response)
        elif isinstance(error, RunStopped):
            row.status = StepStatus.FAILED
            row.error_code = error.code
            row.error_message = str(error)
        else:
            row.status = outcome.status
        row.save()
        self._log(row)
        if self.on_step:
            self.on_step(row)

    def _log(self, row: DeploymentStep) -> None:
        extra: dict[str, Any] = {
            "phase": row.phase,
            "action": row.action,
            "deploymentId": self.attempt.pk,
            "username": self.attempt.stack.username,
            "duration_ms": row.duration_ms,
            "status": "failure" if row.status == StepStatus.FAILED else "success",
            "retries": row.retries,
        }
        if row.status == StepStatus.FAILED:
            extra["error"] = {
                "code": row.error_code,
                "message": row.error_message,
                "apiResponse": row.api_response,
            }
            logger.error(row.summary, extra=extra)
        else:
            logger.info(row.summary, extra=extra)


def count_retries(calls: list[CallRecord]) -> int:
    """Tries beyond the first of each client call; a call's recovery look-ups share its try."""
    retries = 0
    highest = 1
    for call in calls:
        if call.try_number == 1:
            retries += highest - 1
            highest = 1
        highest = max(highest, call.try_number)
    return retries + highest - 1
