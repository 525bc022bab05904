"""The one retry layer (per HTTP call to Dokploy) and the circuit breaker every process shares.

Retries: a transient failure (5xx, connection error, timeout, dropped connection) is tried again
after base x 1, 2, 4, 8 and 16 seconds, so a call makes at most six tries. Jitter only adds, at
most a quarter of the wait. A 429 waits for its Retry-After (capped), or the backoff wait when the
header is missing. 401, 400 and every other 4xx fail at once.

Circuit breaker: its state is a BreakerState row, so every web and worker process sees the same
breaker, and every change is one conditional UPDATE (no read-modify-write):

    CLOSED --5 consecutive server-side failures--> OPEN --after `reset` s--> HALF_OPEN
    HALF_OPEN --probe fails--> OPEN          HALF_OPEN --3 probes succeed in a row--> CLOSED

A server-side failure is a request that got a 5xx or no answer at all; a 4xx shows that Dokploy
is up, so it counts as a success, and a 429 counts as neither. While OPEN, calls fail at once
with BREAKER_OPEN and send nothing. HALF_OPEN lets exactly one request (the probe) through at a
time: a process claims it by setting `probe_started_at` with an UPDATE conditioned on it being
empty, and only the process whose UPDATE changed a row sends its request.
"""

from __future__ import annotations

import itertools
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

from django.conf import settings
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from stacks.dokploy.errors import DokployError
from stacks.models import BreakerState

logger = logging.getLogger("stacks.resilience")

T = TypeVar("T")

MAX_TRIES = 6  # the first request and five retries
JITTER = 0.25  # jitter adds at most this fraction of the wait
# A probe whose process died is given up after the request timeout plus this margin.
PROBE_MARGIN = 5.0

State = BreakerState.State

# What a call does after a failed try.
RETRY = "retry"
LOOK_UP = "look_up"  # first look for what an earlier try may have created, then retry
GIVE_UP = "give_up"


# --- Retries ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class NextStep:
    action: str
    wait: float = 0.0  # before the next try
    error: DokployError | None = None  # what the call raises when it gives up


@dataclass(frozen=True)
class RetryPolicy:
    base: float = 1.0
    retry_after_max: float = 60.0
    tries: int = MAX_TRIES
    jitter: bool = True
    sleep: Callable[[float], None] = time.sleep

    def backoff(self, retry_number: int) -> float:
        """The wait before retry `retry_number` (1 for the first retry): base x 2^(n-1)."""
        wait = self.base * 2.0 ** (retry_number - 1)
        if self.jitter:
            wait += random.uniform(0.0, JITTER * wait)
        return wait

    def wait_after(self, error: DokployError, retry_number: int) -> float:
        if error.status == 429 and error.retry_after is not None:
            return min(error.retry_after, self.retry_after_max)
        return self.backoff(retry_number)

    def next_step(
        self,
        error: DokployError,
        try_number: int,
        *,
        unsettled: bool = False,
        can_look_up: bool = False,
        time_left: Callable[[], float | None] | None = None,
        breaker: CircuitBreaker | None = None,
        final: Callable[[DokployError], bool] | None = None,
    ) -> NextStep:
        """After failed try `try_number`: retry, look up first, or give up, and with which error.

        `unsettled` says that an earlier try of this call may have taken effect and no look-up
        has settled it since. `final` names errors this call never retries, whatever their
        status. The call gives up on a permanent error, after the last try, when
        the wait would outlast the caller's deadline (DEADLINE_EXCEEDED) and when the breaker
        is open, perhaps opened by this call's own failures (BREAKER_OPEN). The error it gives
        up with is ambiguous when any try may have taken effect.
        """
        ambiguous = unsettled or error.ambiguous
        permanent = not error.retryable or (final is not None and final(error))
        if permanent or try_number >= self.tries:
            return NextStep(GIVE_UP, error=error.replace(ambiguous=ambiguous))
        wait = self.wait_after(error, try_number)
        left = time_left() if time_left is not None else None
        if left is not None and wait >= left:
            late = DokployError.deadline(error.endpoint, left, try_number + 1, error)
            return NextStep(GIVE_UP, error=late.replace(ambiguous=ambiguous))
        refusal = breaker.refusal(error.endpoint) if breaker is not None else None
        if refusal is not None:
            return NextStep(GIVE_UP, error=refusal.replace(ambiguous=ambiguous))
        return NextStep(LOOK_UP if ambiguous and can_look_up else RETRY, wait=wait)

    def run(
        self,
        send_try: Callable[[int], T],
        *,
        endpoint: str,
        breaker: CircuitBreaker | None = None,
        time_left: Callable[[], float | None] | None = None,
        look_up: Callable[[int], T | None] | None = None,
        on_wait: Callable[[str, int, float], None] | None = None,
        final: Callable[[DokployError], bool] | None = None,
    ) -> T:
        """`send_try(try_number)` until it succeeds or next_step() gives up.

        The wait comes before the next try, whatever that try sends first. A try that follows
        an ambiguous failure first calls `look_up(try_number)`: what it finds (what an earlier
        try created) is the call's result; finding nothing means sending again is safe.
        `on_wait(endpoint, next_try, seconds)` hears of every wait before it starts.
        """
        unsettled = False
        for try_number in itertools.count(1):
            try:
                if unsettled and look_up is not None:
                    found = look_up(try_number)
                    if found is not None:
                        logger.info(
                            "%s: found what an earlier try created",
                            endpoint,
                            extra={"endpoint": endpoint, "try": try_number},
                        )
                        return found
                    unsettled = False
                return send_try(try_number)
            except DokployError as error:
                step = self.next_step(
                    error,
                    try_number,
                    unsettled=unsettled,
                    can_look_up=look_up is not None,
                    time_left=time_left,
                    breaker=breaker,
                    final=final,
                )
                if step.error is not None:
                    if step.error is error:
                        raise
                    raise step.error from error
                unsettled = step.action == LOOK_UP
                logger.info(
                    "retrying %s in %.1fs after %s",
                    endpoint,
                    step.wait,
                    error.code,
                    extra={"endpoint": endpoint, "try": try_number + 1},
                )
                if on_wait is not None:
                    on_wait(endpoint, try_number + 1, step.wait)
                self.sleep(step.wait)
        raise AssertionError("unreachable: itertools.count never ends")


# --- Circuit breaker --------------------------------------------------------------------------


@dataclass(frozen=True)
class Ticket:
    """Leave to send one request. A probe holds the half-open claim until it is settled."""

    probe_claimed_at: datetime | None = None

    @property
    def probe(self) -> bool:
        return self.probe_claimed_at is not None


@dataclass(frozen=True)
class BreakerSnapshot:
    state: str
    consecutive_failures: int
    consecutive_successes: int
    opened_at: datetime | None
    retry_at: datetime | None


class CircuitBreaker:
    def __init__(
        self,
        name: str = "dokploy",
        *,
        failures: int | None = None,
        reset: float | None = None,
        successes: int | None = None,
        probe_timeout: float | None = None,
    ) -> None:
        self.name = name
        self.failures = failures if failures is not None else int(settings.BREAKER_FAILURES)
        self.reset = reset if reset is not None else float(settings.BREAKER_RESET)
        self.successes = successes if successes is not None else int(settings.BREAKER_SUCCESSES)
        if probe_timeout is None:
            probe_timeout = float(settings.DOKPLOY_TIMEOUT) + PROBE_MARGIN
        self.probe_timeout = probe_timeout

    def __repr__(self) -> str:
        return f"CircuitBreaker({self.name!r})"

    # Asking and reporting ----------------------------------------------------------------

    def claim(self, endpoint: str = "dokploy") -> Ticket:
        """Leave to send one request now, or DokployError BREAKER_OPEN (nothing may be sent)."""
        # Another process may change the state between our read and our update; the loop
        # reads again, and each pass ends in a ticket or a refusal unless it lost a race.
        for _ in range(3):
            ticket = self._try_claim(timezone.now())
            if ticket is not None:
                return ticket
            refusal = self.refusal(endpoint)
            if refusal is not None:
                raise refusal
        raise DokployError.breaker_open(endpoint, timezone.now() + timedelta(seconds=1))

    def _try_claim(self, now: datetime) -> Ticket | None:
        row = self._row()
        if row.state == State.CLOSED:
            return Ticket()
        if row.state == State.OPEN:
            retry_at = self._retry_at(row)
            if retry_at is not None and now < retry_at:
                return None
            # The first process past `reset` turns the breaker half-open and is its probe.
            if (
                self._rows()
                .filter(
                    Q(opened_at__lte=now - timedelta(seconds=self.reset))
                    | Q(opened_at__isnull=True),
                    state=State.OPEN,
                    probe_started_at__isnull=True,
                )
                .update(
                    state=State.HALF_OPEN,
                    consecutive_successes=0,
                    probe_started_at=now,
                    updated_at=now,
                )
            ):
                logger.info("circuit breaker %s half-open: sending a probe", self.name)
                return Ticket(now)
        if (
            self._rows()
            .filter(state=State.HALF_OPEN, probe_started_at__isnull=True)
            .update(probe_started_at=now, updated_at=now)
        ):
            return Ticket(now)
        # A probe whose process died never reports: after probe_timeout another may take over.
        if (
            self._rows()
            .filter(
                state=State.HALF_OPEN,
                probe_started_at__lt=now - timedelta(seconds=self.probe_timeout),
            )
            .update(probe_started_at=now, updated_at=now)
        ):
            logger.warning("circuit breaker %s: taking over a stale probe", self.name)
            return Ticket(now)
        return None

    def record_success(self, ticket: Ticket) -> None:
        now = timezone.now()
        if not ticket.probe:
            self._rows().filter(state=State.CLOSED, consecutive_failures__gt=0).update(
                consecutive_failures=0, updated_at=now
            )
            return
        if not self._probe_rows(ticket).update(
            consecutive_successes=F("consecutive_successes") + 1,
            probe_started_at=None,
            updated_at=now,
        ):
            return
        if (
            self._rows()
            .filter(state=State.HALF_OPEN, consecutive_successes__gte=self.successes)
            .update(
                state=State.CLOSED,
                consecutive_failures=0,
                consecutive_successes=0,
                opened_at=None,
                probe_started_at=None,
                updated_at=now,
            )
        ):
            logger.info("circuit breaker %s closed: Dokploy answers again", self.name)

    def record_failure(self, ticket: Ticket) -> None:
        """One server-side failure: a 5xx, or no answer at all."""
        now = timezone.now()
        if ticket.probe:
            if self._probe_rows(ticket).update(
                state=State.OPEN,
                opened_at=now,
                consecutive_successes=0,
                probe_started_at=None,
                updated_at=now,
            ):
                logger.warning(
                    "circuit breaker %s open again: the probe failed",
                    self.name,
                    extra={"retry_at": (now + timedelta(seconds=self.reset)).isoformat()},
                )
            return
        self._rows().filter(state=State.CLOSED).update(
            consecutive_failures=F("consecutive_failures") + 1, updated_at=now
        )
        if (
            self._rows()
            .filter(state=State.CLOSED, consecutive_failures__gte=self.failures)
            .update(state=State.OPEN, opened_at=now, probe_started_at=None, updated_at=now)
        ):
            logger.warning(
                "circuit breaker %s open after %d consecutive failures",
                self.name,
                self.failures,
                extra={"retry_at": (now + timedelta(seconds=self.reset)).isoformat()},
            )

    def release(self, ticket: Ticket) -> None:
        """Give the probe claim back without a verdict (a 429, or a request never sent)."""
        if ticket.probe:
            self._probe_rows(ticket).update(probe_started_at=None, updated_at=timezone.now())

    def refusal(self, endpoint: str = "dokploy") -> DokployError | None:
        """The BREAKER_OPEN error a request would get now, or None if it may be sent."""
        row = self._row()
        retry_at = self._retry_at(row)
        if retry_at is None or timezone.now() >= retry_at:
            return None
        return DokployError.breaker_open(endpoint, retry_at)

    # Staff pages and tests ---------------------------------------------------------------

    def snapshot(self) -> BreakerSnapshot:
        return self._snapshot_of(self._row())

    def peek(self) -> BreakerSnapshot | None:
        """The breaker's state read without writing anything (None: no request has used it yet).

        For pages: a GET must change nothing, and snapshot() creates the row when it is missing.
        """
        row = self._rows().first()
        return self._snapshot_of(row) if row is not None else None

    def _snapshot_of(self, row: BreakerState) -> BreakerSnapshot:
        return BreakerSnapshot(
            state=row.state,
            consecutive_failures=row.consecutive_failures,
            consecutive_successes=row.consecutive_successes,
            opened_at=row.opened_at,
            retry_at=self._retry_at(row),
        )

    def reset_breaker(self) -> None:
        """Close the breaker and forget its counts."""
        self._row()
        self._rows().update(
            state=State.CLOSED,
            consecutive_failures=0,
            consecutive_successes=0,
            opened_at=None,
            probe_started_at=None,
            updated_at=timezone.now(),
        )
        logger.warning("circuit breaker %s reset by hand", self.name)

    # Rows --------------------------------------------------------------------------------

    def _rows(self) -> QuerySet[BreakerState]:
        return BreakerState.objects.filter(name=self.name)

    def _probe_rows(self, ticket: Ticket) -> QuerySet[BreakerState]:
        # Matching the claim's time means a probe that was taken over reports nothing.
        return self._rows().filter(state=State.HALF_OPEN, probe_started_at=ticket.probe_claimed_at)

    def _row(self) -> BreakerState:
        row, _ = BreakerState.objects.get_or_create(name=self.name)
        return row

    def _retry_at(self, row: BreakerState) -> datetime | None:
        """When a request may be sent again; None when one may be sent now."""
        if row.state == State.OPEN and row.opened_at is not None:
            return row.opened_at + timedelta(seconds=self.reset)
        if row.state == State.HALF_OPEN and row.probe_started_at is not None:
            return row.probe_started_at + timedelta(seconds=self.probe_timeout)
        return None
