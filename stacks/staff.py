"""Numbers for staff: why deployments fail, where they retry, roll back and spend their time.

Every number comes from an aggregate query over the attempt, step and call records (annotate,
aggregate, window functions); Python only arranges the rows. Each function takes a Period and
returns small frozen dataclasses, so the admin pages and a metrics exporter can share them.
An attempt belongs to a period by the time it was queued.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, F, Max, Min, Q, QuerySet, Sum, Window
from django.db.models.functions import Coalesce, RowNumber
from django.utils import timezone

from stacks.models import (
    DeploymentAttempt,
    DeploymentStep,
    DokployCall,
    ReconcileFinding,
    ReconcileRun,
)

Status = DeploymentAttempt.Status
FAILURES = (Status.FAILED, Status.ROLLED_BACK)
EXAMPLES = 3
MESSAGES = 3
SLOWEST_STEPS = 5

PERIODS: dict[str, tuple[str, timedelta]] = {
    "24h": ("Last 24 hours", timedelta(hours=24)),
    "7d": ("Last 7 days", timedelta(days=7)),
    "30d": ("Last 30 days", timedelta(days=30)),
    "90d": ("Last 90 days", timedelta(days=90)),
}
DEFAULT_PERIOD = "7d"


@dataclass(frozen=True)
class Period:
    start: datetime
    end: datetime
    label: str

    @classmethod
    def last(cls, key: str = DEFAULT_PERIOD, now: datetime | None = None) -> Period:
        label, length = PERIODS[key]
        end = now or timezone.now()
        return cls(end - length, end, label)

    def attempts(self) -> QuerySet[DeploymentAttempt]:
        return DeploymentAttempt.objects.filter(queued_at__gte=self.start, queued_at__lt=self.end)

    def steps(self) -> QuerySet[DeploymentStep]:
        return DeploymentStep.objects.filter(
            attempt__queued_at__gte=self.start, attempt__queued_at__lt=self.end
        )

    def calls(self) -> QuerySet[DokployCall]:
        return DokployCall.objects.filter(
            attempt__queued_at__gte=self.start, attempt__queued_at__lt=self.end
        )


# --- Totals -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Totals:
    attempts: int
    succeeded: int
    failed: int
    rolled_back: int
    cancelled: int
    active: int

    @property
    def failures(self) -> int:
        return self.failed + self.rolled_back

    def share(self, count: int) -> float:
        """`count` as a fraction of all attempts in the period (0 when there are none)."""
        return count / self.attempts if self.attempts else 0.0

    @property
    def failure_percent(self) -> float:
        return self.share(self.failures) * 100


def totals(period: Period) -> Totals:
    counts = period.attempts().aggregate(
        attempts=Count("id"),
        succeeded=Count("id", filter=Q(status=Status.SUCCEEDED)),
        failed=Count("id", filter=Q(status=Status.FAILED)),
        rolled_back=Count("id", filter=Q(status=Status.ROLLED_BACK)),
        cancelled=Count("id", filter=Q(status=Status.CANCELLED)),
        active=Count("id", filter=Q(status__in=DeploymentAttempt.ACTIVE)),
    )
    return Totals(**counts)


# --- Failures by phase and error code ---------------------------------------------------------


@dataclass(frozen=True)
class Example:
    attempt_id: int
    username: str
    kind: str
    status: str
    finished_at: datetime | None
    message: str
    log_tail: str

    @property
    def status_display(self) -> str:
        return str(Status(self.status).label).lower()


@dataclass(frozen=True)
class Message:
    text: str
    count: int


@dataclass(frozen=True)
class FailureGroup:
    phase: str
    error_code: str
    count: int
    share: float
    first_seen: datetime | None
    last_seen: datetime | None
    examples: tuple[Example, ...]
    messages: tuple[Message, ...]

    @property
    def percent(self) -> float:
        return self.share * 100


def failure_groups(period: Period, total: Totals | None = None) -> list[FailureGroup]:
    """Failed and rolled-back attempts grouped by the phase and error code they failed with,
    the most frequent first, with their share of all attempts, examples and messages."""
    total = total or totals(period)
    failures = period.attempts().filter(status__in=FAILURES)
    groups = (
        failures.values("failure_phase", "error_code")
        .annotate(count=Count("id"), first=Min("finished_at"), last=Max("finished_at"))
        .order_by("-count", "failure_phase", "error_code")
    )
    examples = _examples(failures)
    messages = _messages(failures)
    return [
        FailureGroup(
            phase=row["failure_phase"],
            error_code=row["error_code"],
            count=row["count"],
            share=total.share(row["count"]),
            first_seen=row["first"],
            last_seen=row["last"],
            examples=tuple(examples.get((row["failure_phase"], row["error_code"]), ())),
            messages=tuple(messages.get((row["failure_phase"], row["error_code"]), ())),
        )
        for row in groups
    ]


def _examples(failures: QuerySet[DeploymentAttempt]) -> dict[tuple[str, str], list[Example]]:
    """The newest EXAMPLES attempts of each group (one query), with their failed step (one)."""
    newest = Window(
        RowNumber(),
        partition_by=[F("failure_phase"), F("error_code")],
        order_by=[F("finished_at").desc(), F("id").desc()],
    )
    picked = list(
        failures.annotate(rank=newest)
        .filter(rank__lte=EXAMPLES)
        .order_by("failure_phase", "error_code", "rank")
        .values(
            "id",
            "stack__username",
            "kind",
            "status",
            "finished_at",
            "failure_phase",
            "error_code",
            "error_message",
        )
    )
    steps = _failed_steps([row["id"] for row in picked])
    found: dict[tuple[str, str], list[Example]] = defaultdict(list)
    for row in picked:
        step = steps.get((row["id"], row["failure_phase"], row["error_code"]), {})
        response = step.get("api_response")
        log_tail = response.get("log_tail", "") if isinstance(response, dict) else ""
        found[row["failure_phase"], row["error_code"]].append(
            Example(
                attempt_id=row["id"],
                username=row["stack__username"],
                kind=row["kind"],
                status=row["status"],
                finished_at=row["finished_at"],
                message=step.get("error_message") or row["error_message"],
                log_tail=str(log_tail),
            )
        )
    return found


def _failed_steps(attempt_ids: list[int]) -> dict[tuple[int, str, str], dict[str, Any]]:
    """Each attempt's last failed step per phase and code: Dokploy's message and log tail."""
    if not attempt_ids:
        return {}
    rows = (
        DeploymentStep.objects.filter(
            attempt_id__in=attempt_ids, status=DeploymentStep.Status.FAILED
        )
        .order_by("attempt_id", "seq")
        .values("attempt_id", "phase", "error_code", "error_message", "api_response")
    )
    return {(row["attempt_id"], row["phase"], row["error_code"]): dict(row) for row in rows}


def _messages(failures: QuerySet[DeploymentAttempt]) -> dict[tuple[str, str], list[Message]]:
    """The most frequent error messages of each group."""
    rows = (
        failures.values("failure_phase", "error_code", "error_message")
        .annotate(count=Count("id"))
        .order_by("failure_phase", "error_code", "-count", "error_message")
    )
    found: dict[tuple[str, str], list[Message]] = defaultdict(list)
    for row in rows:
        group = found[row["failure_phase"], row["error_code"]]
        if len(group) < MESSAGES:
            group.append(Message(row["error_message"], row["count"]))
    return found


# --- Phases: retries, rollbacks, time ---------------------------------------------------------


@dataclass(frozen=True)
class PhaseStats:
    phase: str
    steps: int
    failed_steps: int
    retries: int
    attempts: int  # attempts that ran a step in this phase
    total_ms: int
    slowest_step_ms: int
    rolled_back: int  # attempts that failed here and were rolled back
    rollback_failed: int  # attempts that failed here and whose rollback failed too
    calls: int
    retried_calls: int
    failed_calls: int

    @property
    def average_ms(self) -> int:
        """Time an attempt spends in this phase, on average."""
        return round(self.total_ms / self.attempts) if self.attempts else 0


def phase_stats(period: Period) -> list[PhaseStats]:
    """Per phase: steps, retries, rollbacks and Dokploy calls, the slowest phase first."""
    steps = {
        row["phase"]: row
        for row in period.steps()
        .values("phase")
        .annotate(
            steps=Count("id"),
            failed_steps=Count("id", filter=Q(status=DeploymentStep.Status.FAILED)),
            retries=Coalesce(Sum("retries"), 0),
            attempts=Count("attempt", distinct=True),
            total_ms=Coalesce(Sum("duration_ms"), 0),
            slowest_step_ms=Coalesce(Max("duration_ms"), 0),
        )
        .order_by()
    }
    rollbacks = {
        row["failure_phase"]: row
        for row in period.attempts()
        .filter(status__in=FAILURES)
        .values("failure_phase")
        .annotate(
            rolled_back=Count("id", filter=Q(status=Status.ROLLED_BACK)),
            rollback_failed=Count("id", filter=Q(status=Status.FAILED) & ~Q(rollback_errors=[])),
        )
        .order_by()
    }
    calls = {
        row["phase"]: row
        for row in period.calls()
        .values("phase")
        .annotate(
            calls=Count("id"),
            retried_calls=Count("id", filter=Q(try_number__gt=1)),
            failed_calls=Count("id", filter=~Q(error_code="")),
        )
        .order_by()
    }
    phases = [p for p in DeploymentStep.Phase.values if p in steps or p in rollbacks or p in calls]
    stats = [
        PhaseStats(
            phase=phase,
            steps=steps.get(phase, {}).get("steps", 0),
            failed_steps=steps.get(phase, {}).get("failed_steps", 0),
            retries=steps.get(phase, {}).get("retries", 0),
            attempts=steps.get(phase, {}).get("attempts", 0),
            total_ms=steps.get(phase, {}).get("total_ms", 0),
            slowest_step_ms=steps.get(phase, {}).get("slowest_step_ms", 0),
            rolled_back=rollbacks.get(phase, {}).get("rolled_back", 0),
            rollback_failed=rollbacks.get(phase, {}).get("rollback_failed", 0),
            calls=calls.get(phase, {}).get("calls", 0),
            retried_calls=calls.get(phase, {}).get("retried_calls", 0),
            failed_calls=calls.get(phase, {}).get("failed_calls", 0),
        )
        for phase in phases
    ]
    return sorted(stats, key=lambda s: (-s.average_ms, s.phase))


@dataclass(frozen=True)
class SlowStep:
    attempt_id: int
    username: str
    phase: str
    summary: str
    duration_ms: int


def slowest_steps(period: Period, limit: int = SLOWEST_STEPS) -> list[SlowStep]:
    rows = (
        period.steps()
        .filter(duration_ms__isnull=False)
        .order_by("-duration_ms", "id")
        .values("attempt_id", "attempt__stack__username", "phase", "summary", "duration_ms")[:limit]
    )
    return [
        SlowStep(
            attempt_id=row["attempt_id"],
            username=row["attempt__stack__username"],
            phase=row["phase"],
            summary=row["summary"],
            duration_ms=row["duration_ms"] or 0,
        )
        for row in rows
    ]


@dataclass(frozen=True)
class FailureReport:
    period: Period
    totals: Totals
    groups: list[FailureGroup]
    phases: list[PhaseStats]
    slowest: list[SlowStep]


def failure_report(period: Period) -> FailureReport:
    """Everything the failure-analysis page shows, in a bounded number of queries."""
    total = totals(period)
    return FailureReport(
        period=period,
        totals=total,
        groups=failure_groups(period, total),
        phases=phase_stats(period),
        slowest=slowest_steps(period),
    )


# --- Reconciler -------------------------------------------------------------------------------


@dataclass(frozen=True)
class FindingCount:
    kind: str
    label: str
    count: int
    fixed: int


def finding_counts(run: ReconcileRun) -> list[FindingCount]:
    """A run's findings by kind, with how many a fix settled (removed or repair queued)."""
    labels = dict(ReconcileFinding.Kind.choices)
    settled = (ReconcileFinding.Fix.REMOVED, ReconcileFinding.Fix.REPAIR_QUEUED)
    rows = (
        run.findings.values("kind")
        .annotate(count=Count("id"), fixed=Count("id", filter=Q(fix__in=settled)))
        .order_by("kind")
    )
    counts = [
        FindingCount(row["kind"], labels.get(row["kind"], row["kind"]), row["count"], row["fixed"])
        for row in rows
    ]
    return sorted(counts, key=lambda c: finding_order(c.kind))


def finding_order(kind: str) -> int:
    """Orphans first, then drift, then shared names: the order of ReconcileFinding.Kind."""
    kinds = list(ReconcileFinding.Kind.values)
    return kinds.index(kind) if kind in kinds else len(kinds)
