"""Prometheus metrics, derived from the database when Prometheus scrapes.

Why from the database: every number is in the records already (attempts, steps, Dokploy calls,
breaker events, reconcile runs, stacks), and no process sees all of them. Web runs several
gunicorn workers, attempts run in task workers on several hosts, and each of those would count
only its own share in memory. prometheus-client's multiprocess mode shares files between the
processes of one host only, and forgets a host's counts when its containers are replaced. A
collector that reads the database at scrape time gives the same answer in every web worker,
with nothing shared but the database the portal already has.

Counters that never go down, without reading all history at every scrape: the totals of the
rows that ended before `through` are kept in the one MetricsRollup row, and a scrape adds only
the rows that ended since (normally the last few minutes, read through the index on each
table's time column). `fold()`, a scheduled task, moves `through` forward with a
compare-and-set, so two folds never add the same rows. A scrape reads `through` and the totals
together, then the rows from that `through` on, so a fold between the two reads changes nothing.
A fold stops SETTLE behind the present: a row committed a little late, or stamped by a host
whose clock runs a little behind, still lands after `through`. If no fold runs (no task
worker), the scrape stays correct and reads more rows.

Each family below is counted when its record ends: an attempt when it finishes, a queue wait
when the attempt starts, a step's retries when the step finishes, a Dokploy request when it is
recorded, a breaker opening when it happens. docs/metrics.md describes every metric.

A scrape is a fixed number of queries whatever the tables hold (tests/test_metrics.py asserts
it; benchmarks/metrics_scrape.py measures it on 10,000 attempts).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db.models import (
    Case,
    Count,
    DurationField,
    ExpressionWrapper,
    F,
    Max,
    Min,
    Q,
    Sum,
    When,
)
from django.db.models.functions import Coalesce
from django.utils import timezone
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from stacks import schedules, staff
from stacks.models import (
    ACTIVE_STATUSES,
    AttemptKind,
    AttemptStatus,
    BreakerEvent,
    BreakerState,
    DeploymentAttempt,
    DeploymentStep,
    DokployCall,
    MetricsRollup,
    ObservedState,
    ReconcileRun,
    Stack,
)

# Queries per scrape: the stored totals, one per source below, and seven for the state now.
QUERIES = 13
ROLLUP = "totals"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
SETTLE = timedelta(minutes=5)
FOLD_MINUTES = 5
SCHEDULE_NAME = "metrics-fold"
TASK = "stacks.tasks.fold_metrics"

# Bucket bounds in seconds. Deployments take minutes (image pull, health checks); queue waits
# run from nothing to the per-user limit's hour; Dokploy answers in milliseconds to seconds.
DEPLOY_BUCKETS = (15.0, 30.0, 60.0, 90.0, 120.0, 180.0, 240.0, 300.0, 420.0, 600.0, 900.0, 1800.0)
WAIT_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0)
API_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

OUTCOMES = (
    AttemptStatus.SUCCEEDED,
    AttemptStatus.FAILED,
    AttemptStatus.ROLLED_BACK,
    AttemptStatus.CANCELLED,
)
PHASES = tuple(DeploymentStep.Phase.values)

Labels = tuple[str, ...]


# --- Running totals ---------------------------------------------------------------------------


@dataclass
class Histogram:
    """Cumulative bucket counts (one per bound, +Inf is `count`), the count and the sum."""

    buckets: list[int]
    count: int = 0
    sum: float = 0.0

    def add(self, other: Histogram) -> None:
        self.buckets = [a + b for a, b in zip(self.buckets, other.buckets, strict=True)]
        self.count += other.count
        self.sum += other.sum


@dataclass
class Totals:
    """Counter values and histograms by family and labels; added up, stored as JSON."""

    counters: dict[str, dict[Labels, float]] = field(default_factory=lambda: defaultdict(dict))
    histograms: dict[str, dict[Labels, Histogram]] = field(
        default_factory=lambda: defaultdict(dict)
    )

    def count(self, family: str, labels: Labels, value: float) -> None:
        series = self.counters[family]
        series[labels] = series.get(labels, 0) + value

    def observe(self, family: str, labels: Labels, histogram: Histogram) -> None:
        series = self.histograms[family]
        if labels in series:
            series[labels].add(histogram)
        else:
            series[labels] = Histogram(list(histogram.buckets), histogram.count, histogram.sum)

    def add(self, other: Totals) -> None:
        for family, counters in other.counters.items():
            for labels, value in counters.items():
                self.count(family, labels, value)
        for family, histograms in other.histograms.items():
            for labels, histogram in histograms.items():
                self.observe(family, labels, histogram)

    def to_json(self) -> dict[str, Any]:
        return {
            "counters": {
                family: [[list(labels), value] for labels, value in sorted(series.items())]
                for family, series in self.counters.items()
            },
            "histograms": {
                family: [
                    [list(labels), {"b": h.buckets, "c": h.count, "s": h.sum}]
                    for labels, h in sorted(series.items())
                ]
                for family, series in self.histograms.items()
            },
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Totals:
        totals = cls()
        for family, rows in data.get("counters", {}).items():
            for labels, value in rows:
                totals.count(family, tuple(labels), value)
        for family, rows in data.get("histograms", {}).items():
            for labels, h in rows:
                totals.observe(family, tuple(labels), Histogram(h["b"], h["c"], h["s"]))
        return totals


# --- What ended in a time range: one query per table ------------------------------------------


def _between(column: str, since: datetime, until: datetime | None) -> Q:
    q = Q(**{f"{column}__gte": since})
    return q & Q(**{f"{column}__lt": until}) if until is not None else q


def _as_duration(seconds: float) -> timedelta:
    return timedelta(seconds=seconds)


def _as_ms(seconds: float) -> float:
    return seconds * 1000


def _buckets(
    value: str,
    bounds: Iterable[float],
    *,
    unit: Callable[[float], Any] = _as_duration,
    only: Q | None = None,
) -> dict[str, Any]:
    """Conditional counts of rows whose `value` is at most each bound: cumulative buckets."""
    counts: dict[str, Any] = {}
    for index, bound in enumerate(bounds):
        condition = Q(**{f"{value}__lte": unit(bound)})
        counts[f"le_{index}"] = Count("id", filter=condition & only if only else condition)
    return counts


def _histogram(
    row: dict[str, Any], bounds: tuple[float, ...], count: int, total: float
) -> Histogram:
    return Histogram([row[f"le_{i}"] for i in range(len(bounds))], count, total)


def _seconds(value: Any) -> float:
    if value is None:
        return 0.0
    if isinstance(value, timedelta):
        return value.total_seconds()
    return float(value) / 1_000_000  # a raw microsecond count


def ended_attempts(totals: Totals, since: datetime, until: datetime | None) -> None:
    """Attempts that finished in the range: outcomes, failures, rollbacks, durations."""
    succeeded = Q(status=AttemptStatus.SUCCEEDED)
    rows = (
        DeploymentAttempt.objects.filter(_between("finished_at", since, until))
        .annotate(
            took=ExpressionWrapper(F("finished_at") - F("queued_at"), output_field=DurationField()),
            # Undid, or tried to undo, something it created.
            rolled_back=Case(
                When(Q(rollback_started_at__isnull=False) & ~Q(created_resources=[]), then=1),
                default=0,
            ),
            left_behind=Case(When(~Q(rollback_errors=[]), then=1), default=0),
        )
        .values("kind", "status", "failure_phase", "error_code", "rolled_back", "left_behind")
        .annotate(
            attempts=Count("id"),
            healthy=Count("id", filter=succeeded),
            took_total=Sum("took", filter=succeeded),
            **_buckets("took", DEPLOY_BUCKETS, only=succeeded),
        )
        .order_by()
    )
    for row in rows:
        n = row["attempts"]
        totals.count("deployments", (row["kind"], row["status"]), n)
        if row["status"] in staff.FAILURES:
            totals.count("failures", (row["failure_phase"], row["error_code"]), n)
        if row["rolled_back"]:
            totals.count("rollbacks", (row["failure_phase"],), n)
        if row["left_behind"]:
            totals.count("rollback_failures", (row["failure_phase"],), n)
        if row["healthy"]:
            histogram = _histogram(row, DEPLOY_BUCKETS, row["healthy"], _seconds(row["took_total"]))
            totals.observe("deployment_duration", (row["kind"],), histogram)


def started_attempts(totals: Totals, since: datetime, until: datetime | None) -> None:
    """Attempts that a worker started in the range: how long they waited for it."""
    waited = ExpressionWrapper(
        F("started_at") - Coalesce("not_before", "queued_at"), output_field=DurationField()
    )
    rows = (
        DeploymentAttempt.objects.filter(_between("started_at", since, until))
        .annotate(waited=waited)
        .values("kind")
        .annotate(n=Count("id"), total=Sum("waited"), **_buckets("waited", WAIT_BUCKETS))
        .order_by()
    )
    for row in rows:
        histogram = _histogram(row, WAIT_BUCKETS, row["n"], _seconds(row["total"]))
        totals.observe("queue_wait", (row["kind"],), histogram)


def ended_steps(totals: Totals, since: datetime, until: datetime | None) -> None:
    """Steps that finished in the range: their retries, by phase."""
    rows = (
        DeploymentStep.objects.filter(_between("finished_at", since, until), retries__gt=0)
        .values("phase")
        .annotate(retries=Sum("retries"))
        .order_by()
    )
    for row in rows:
        totals.count("retries", (row["phase"],), row["retries"])


def recorded_calls(totals: Totals, since: datetime, until: datetime | None) -> None:
    """Dokploy requests recorded in the range: latency by endpoint and status."""
    rows = (
        DokployCall.objects.filter(_between("created_at", since, until))
        .values("endpoint", "status_code", "error_code")
        .annotate(
            n=Count("id"),
            total=Sum("duration_ms"),
            **_buckets("duration_ms", API_BUCKETS, unit=_as_ms),
        )
        .order_by()
    )
    for row in rows:
        status = str(row["status_code"]) if row["status_code"] else row["error_code"].lower()
        histogram = _histogram(row, API_BUCKETS, row["n"], (row["total"] or 0) / 1000)
        totals.observe("dokploy_requests", (row["endpoint"], status or "none"), histogram)


def breaker_openings(totals: Totals, since: datetime, until: datetime | None) -> None:
    rows = (
        BreakerEvent.objects.filter(
            _between("created_at", since, until), to_state=BreakerState.State.OPEN
        )
        .values("breaker")
        .annotate(n=Count("id"))
        .order_by()
    )
    for row in rows:
        totals.count("breaker_opens", (row["breaker"],), row["n"])


SOURCES = (ended_attempts, started_attempts, ended_steps, recorded_calls, breaker_openings)


def totals_between(since: datetime, until: datetime | None = None) -> Totals:
    totals = Totals()
    for source in SOURCES:
        source(totals, since, until)
    return totals


# --- Folding ended rows into the stored totals ------------------------------------------------


def stored() -> tuple[datetime, Totals]:
    row = MetricsRollup.objects.filter(name=ROLLUP).first()
    if row is None:
        return EPOCH, Totals()
    return row.through, Totals.from_json(row.totals)


def fold(now: datetime | None = None) -> datetime | None:
    """Add the rows that ended up to SETTLE ago to the stored totals. The new `through`, or
    None when there was nothing to fold or another fold got there first."""
    now = now or timezone.now()
    until = (now - SETTLE).replace(second=0, microsecond=0)
    row, _ = MetricsRollup.objects.get_or_create(
        name=ROLLUP, defaults={"through": EPOCH, "totals": {}}
    )
    if until <= row.through:
        return None
    totals = Totals.from_json(row.totals)
    totals.add(totals_between(row.through, until))
    # Compare-and-set on `through`: a concurrent fold that won leaves this one with nothing.
    changed = MetricsRollup.objects.filter(name=ROLLUP, through=row.through).update(
        through=until, totals=totals.to_json(), updated_at=now
    )
    return until if changed else None


def ensure_schedule() -> None:
    """Fold every FOLD_MINUTES minutes in the task cluster."""
    schedules.every(SCHEDULE_NAME, TASK, minutes=FOLD_MINUTES)


# --- Gauges: the state now --------------------------------------------------------------------


@dataclass(frozen=True)
class Now:
    queued: int
    running: int
    stuck: int
    oldest_wait: float  # seconds the longest-waiting due attempt has waited; 0 if none
    stacks: dict[str, int]
    breakers: list[dict[str, Any]]
    breaker_changes: dict[str, datetime]
    last_run: ReconcileRun | None  # newest reconcile run that ended, ok or failed
    last_ok: ReconcileRun | None
    findings: list[staff.FindingCount]


def state_now(now: datetime) -> Now:
    waiting = Q(status=AttemptStatus.QUEUED) & (Q(not_before__isnull=True) | Q(not_before__lte=now))
    active = DeploymentAttempt.objects.filter(status__in=ACTIVE_STATUSES).aggregate(
        queued=Count("id", filter=Q(status=AttemptStatus.QUEUED)),
        running=Count("id", filter=Q(status=AttemptStatus.RUNNING)),
        stuck=Count("id", filter=staff.stuck(now)),
        oldest=Min(Coalesce("not_before", "queued_at"), filter=waiting),
    )
    stacks = dict(Stack.objects.values_list("observed_state").annotate(n=Count("id")).order_by())
    breakers: list[dict[str, Any]] = [
        dict(row)
        for row in BreakerState.objects.order_by("name").values(
            "name", "state", "consecutive_failures"
        )
    ]
    changes = dict(
        BreakerEvent.objects.values_list("breaker").annotate(last=Max("created_at")).order_by()
    )
    ended = ReconcileRun.objects.exclude(status=ReconcileRun.Status.RUNNING)
    last_run = ended.order_by("-started_at", "-id").first()
    last_ok = ended.filter(status=ReconcileRun.Status.OK).order_by("-started_at", "-id").first()
    oldest = active["oldest"]
    return Now(
        queued=active["queued"],
        running=active["running"],
        stuck=active["stuck"],
        oldest_wait=max(0.0, (now - oldest).total_seconds()) if oldest else 0.0,
        stacks=stacks,
        breakers=breakers,
        breaker_changes=changes,
        last_run=last_run,
        last_ok=last_ok,
        findings=staff.finding_counts(last_ok) if last_ok is not None else [],
    )


# --- The collector ----------------------------------------------------------------------------


def _timestamp(moment: datetime | None) -> float:
    return moment.timestamp() if moment is not None else 0.0


class PortalCollector(Collector):
    """Everything /metrics shows, read from the database when collected."""

    def __init__(self, now: datetime | None = None) -> None:
        self.now = now

    def collect(self) -> Iterator[Metric]:
        now = self.now or timezone.now()
        through, totals = stored()
        totals.add(totals_between(through))
        yield from self._counters(totals)
        yield from self._histograms(totals)
        yield from self._gauges(state_now(now))
        rolled = GaugeMetricFamily(
            "portal_metrics_folded_until_timestamp_seconds",
            "Rows that ended before this time are in the stored totals; later ones are read "
            "at each scrape",
        )
        rolled.add_metric([], _timestamp(through if through > EPOCH else None))
        yield rolled

    def _counters(self, totals: Totals) -> Iterator[Metric]:
        c = totals.counters
        deployments = CounterMetricFamily(
            "portal_deployments",
            "Attempts that ended, by kind and outcome",
            labels=["kind", "outcome"],
        )
        for kind in AttemptKind.values:
            for outcome in OUTCOMES:
                value = c["deployments"].get((kind, outcome), 0)
                deployments.add_metric([kind, outcome], value)
        yield deployments
        yield _counter(
            "portal_deployment_failures",
            "Attempts that ended failed or rolled back, by the phase and error code they "
            "failed with",
            ["phase", "code"],
            c["failures"],
        )
        yield _counter(
            "portal_rollbacks",
            "Attempts that undid, or tried to undo, what they had created, by failed phase",
            ["phase"],
            c["rollbacks"],
            every=[(p,) for p in PHASES],
        )
        yield _counter(
            "portal_rollback_failures",
            "Rollbacks that left something in Dokploy, by failed phase",
            ["phase"],
            c["rollback_failures"],
            every=[(p,) for p in PHASES],
        )
        yield _counter(
            "portal_deployment_retries",
            "Dokploy requests sent again after a failed try, by pipeline phase",
            ["phase"],
            c["retries"],
            every=[(p,) for p in PHASES],
        )
        yield _counter(
            "portal_breaker_opens",
            "Times the circuit breaker opened (again after a failed probe included)",
            ["breaker"],
            c["breaker_opens"],
        )

    def _histograms(self, totals: Totals) -> Iterator[Metric]:
        h = totals.histograms
        yield _histogram_family(
            "portal_deployment_duration_seconds",
            "Succeeded attempts from the request to the end (healthy, for create and redeploy)",
            ["kind"],
            DEPLOY_BUCKETS,
            h["deployment_duration"],
        )
        yield _histogram_family(
            "portal_queue_wait_seconds",
            "From when an attempt could start (its request, or the end of the per-user limit's "
            "wait) to when a worker started it",
            ["kind"],
            WAIT_BUCKETS,
            h["queue_wait"],
        )
        yield _histogram_family(
            "portal_dokploy_request_duration_seconds",
            "Dokploy API requests by endpoint and HTTP status (or the error when none came back)",
            ["endpoint", "status"],
            API_BUCKETS,
            h["dokploy_requests"],
        )

    def _gauges(self, now: Now) -> Iterator[Metric]:
        attempts = GaugeMetricFamily(
            "portal_attempts", "Attempts queued or running now", labels=["status"]
        )
        attempts.add_metric(["queued"], now.queued)
        attempts.add_metric(["running"], now.running)
        yield attempts
        yield _gauge(
            "portal_attempts_stuck",
            "Running attempts past their deadline or with an expired lease",
            now.stuck,
        )
        yield _gauge(
            "portal_queue_oldest_wait_seconds",
            "How long the longest-waiting queued attempt that may start has waited",
            now.oldest_wait,
        )
        stacks = GaugeMetricFamily("portal_stacks", "Stacks by observed state", labels=["state"])
        for state in ObservedState.values:
            stacks.add_metric([state], now.stacks.get(state, 0))
        yield stacks
        yield from self._breaker(now)
        yield from self._reconciler(now)

    def _breaker(self, now: Now) -> Iterator[Metric]:
        state = GaugeMetricFamily(
            "portal_breaker_state",
            "1 for the circuit breaker's current state",
            labels=["breaker", "state"],
        )
        failures = GaugeMetricFamily(
            "portal_breaker_consecutive_failures",
            "Server-side failures in a row counted while closed",
            labels=["breaker"],
        )
        changed = GaugeMetricFamily(
            "portal_breaker_last_change_timestamp_seconds",
            "When the circuit breaker last changed state",
            labels=["breaker"],
        )
        for row in now.breakers:
            for value in BreakerState.State.values:
                state.add_metric([row["name"], value], 1 if row["state"] == value else 0)
            failures.add_metric([row["name"]], row["consecutive_failures"])
            if row["name"] in now.breaker_changes:
                changed.add_metric([row["name"]], _timestamp(now.breaker_changes[row["name"]]))
        yield state
        yield failures
        yield changed

    def _reconciler(self, now: Now) -> Iterator[Metric]:
        last = now.last_run
        if last is not None:
            yield _gauge(
                "portal_reconcile_last_run_timestamp_seconds",
                "When the newest reconcile run that ended finished",
                _timestamp(last.finished_at),
            )
            yield _gauge(
                "portal_reconcile_last_run_success",
                "1 if the newest reconcile run that ended read Dokploy to the end, else 0",
                1 if last.status == ReconcileRun.Status.OK else 0,
            )
            yield _gauge(
                "portal_reconcile_last_run_duration_seconds",
                "How long the newest reconcile run that ended took",
                last.duration_seconds or 0.0,
            )
        if now.last_ok is not None:
            yield _gauge(
                "portal_reconcile_last_success_timestamp_seconds",
                "When the newest successful reconcile run finished",
                _timestamp(now.last_ok.finished_at),
            )
        findings = GaugeMetricFamily(
            "portal_reconcile_findings",
            "Findings of the newest successful reconcile run, by kind and whether its fix "
            "settled them",
            labels=["kind", "fixed"],
        )
        for count in now.findings:
            findings.add_metric([count.kind, "true"], count.fixed)
            findings.add_metric([count.kind, "false"], count.count - count.fixed)
        yield findings


def _counter(
    name: str,
    documentation: str,
    labels: list[str],
    values: dict[Labels, float],
    *,
    every: Iterable[Labels] = (),
) -> CounterMetricFamily:
    """A counter family; the label sets in `every` appear even at 0, so that increase() sees
    the first occurrence (a series that appears at 1 has no earlier sample to compare with)."""
    family = CounterMetricFamily(name, documentation, labels=labels)
    for key in sorted(set(values) | set(every)):
        family.add_metric(list(key), values.get(key, 0))
    return family


def _histogram_family(
    name: str,
    documentation: str,
    labels: list[str],
    bounds: tuple[float, ...],
    series: dict[Labels, Histogram],
) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, documentation, labels=labels)
    for key in sorted(series):
        h = series[key]
        buckets = [(_bound(b), float(n)) for b, n in zip(bounds, h.buckets, strict=True)]
        buckets.append(("+Inf", float(h.count)))
        family.add_metric(list(key), buckets, round(h.sum, 6))
    return family


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation)
    family.add_metric([], value)
    return family


def _bound(bound: float) -> str:
    return f"{bound:g}" if bound != int(bound) else f"{bound:.1f}"


def registry(now: datetime | None = None) -> CollectorRegistry:
    """A registry holding only the portal's collector: no per-process metrics, which would
    differ between the web workers that answer one scrape after another."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PortalCollector(now))
    return registry
