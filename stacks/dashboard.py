"""The staff dashboard: is provisioning healthy, at a glance, over 24 hours, 7 or 30 days.

Its numbers come from the records of the chosen period: attempts by the time they were queued
(as on the failure-analysis page, whose queries it reuses for totals, failures by reason and
the per-phase retries and rollbacks) and Dokploy calls by the time they were made. What that
page does not have is here: series by hour or day, percentiles by nearest rank computed in the
database with window functions, the queue at each hour or day, and the breaker's history.
`stacks.charts` turns the numbers into SVG geometry; every chart shows its numbers in a table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from django.db.models import (
    Count,
    DurationField,
    Expression,
    ExpressionWrapper,
    F,
    IntegerField,
    Q,
    QuerySet,
    Sum,
    Window,
)
from django.db.models.functions import RowNumber, Trunc
from django.urls import reverse
from django.utils import timezone

from stacks import alerts, charts, reconcile, staff
from stacks.models import AlertState, BreakerEvent, DeploymentAttempt, DokployCall, ReconcileFinding
from stacks.resilience import CircuitBreaker

Status = DeploymentAttempt.Status
PERIODS = ("24h", "7d", "30d")
ENDED = (Status.SUCCEEDED, Status.FAILED, Status.ROLLED_BACK)  # cancellations are choices
PERCENTILES = (50, 95, 99)
ENDPOINTS_SHOWN = 12
BREAKER = "dokploy"

TOOK = ExpressionWrapper(F("finished_at") - F("queued_at"), output_field=DurationField())


def seconds(value: Any) -> float:
    if value is None:
        return 0.0
    if isinstance(value, timedelta):
        return value.total_seconds()
    return float(value) / 1_000_000  # a raw microsecond count


def duration_text(value: float | None) -> str:
    """12 s, 4 min 05 s, 1 h 02 min: how long something took, for people."""
    if value is None:
        return "-"
    whole = round(value)
    if whole < 60:
        return f"{value:.1f} s" if value < 10 else f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


def ms_text(value: float) -> str:
    return f"{value / 1000:.2f} s" if value >= 1000 else f"{value:g} ms"


def counted(number: int, word: str, words: str = "") -> str:
    """1 attempt, 2 attempts; 1 retry, 3 retries."""
    return f"{number} {word if number == 1 else words or word + 's'}"


def percent_text(value: float) -> str:
    return f"{value:.1f}".removesuffix(".0") + " %"


# --- Time slots -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Slot:
    start: datetime
    end: datetime
    label: str


def slots(period: staff.Period, key: str) -> tuple[str, list[Slot]]:
    """Hours for 24 h, days otherwise: the truncation kind and the slots covering the period."""
    hourly = key == "24h"
    kind, step = ("hour", timedelta(hours=1)) if hourly else ("day", timedelta(days=1))
    start = period.start.replace(minute=0, second=0, microsecond=0)
    if not hourly:
        start = start.replace(hour=0)
    found = []
    while start < period.end:
        label = start.strftime("%H:00") if hourly else start.strftime("%b %d")
        found.append(Slot(start, start + step, label))
        start += step
    return kind, found


# --- Percentiles by nearest rank, in the database ---------------------------------------------


def nearest_rank(
    rows: QuerySet[Any],
    value: Expression | F,
    partition: Expression | F | None,
    percents: Sequence[int] = PERCENTILES,
) -> dict[Any, dict[str, Any]]:
    """For each partition: its size and the value at rank ceil(p/100 * size) for each percent.

    One query: ROW_NUMBER and COUNT over each partition, and only the rows at the wanted ranks
    come back. Nearest rank returns values that occurred, exactly, on every database.
    """
    by = [F("part")] if partition is not None else None
    ranked = rows.annotate(v=value, **({"part": partition} if partition is not None else {}))
    ranked = ranked.annotate(
        rank=Window(RowNumber(), partition_by=by, order_by=[F("v").asc(), F("pk").asc()]),
        size=Window(Count("pk"), partition_by=by),
    )
    wanted = Q()
    for p in percents:
        at = ExpressionWrapper((F("size") * p + 99) / 100, output_field=IntegerField())
        wanted |= Q(rank=at)
    fields = ["v", "rank", "size", *(["part"] if partition is not None else [])]
    found: dict[Any, dict[str, Any]] = {}
    for row in ranked.filter(wanted).order_by().values(*fields):
        entry = found.setdefault(row.get("part"), {"size": row["size"]})
        for p in percents:
            if row["rank"] == (row["size"] * p + 99) // 100:
                entry[f"p{p}"] = row["v"]
    return found


# --- The numbers --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SlotNumbers:
    slot: Slot
    attempts: int
    ended: int
    succeeded: int
    failed: int
    cancelled: int
    average: float | None  # seconds, succeeded ones
    p95: float | None

    @property
    def success_percent(self) -> float | None:
        return self.succeeded / self.ended * 100 if self.ended else None


def by_slot(period: staff.Period, kind: str, found: list[Slot]) -> list[SlotNumbers]:
    succeeded = Q(status=Status.SUCCEEDED)
    rows = {
        row["slot"]: row
        for row in period.attempts()
        .annotate(slot=Trunc("queued_at", kind), took=TOOK)
        .values("slot")
        .annotate(
            attempts=Count("id"),
            ended=Count("id", filter=Q(status__in=ENDED)),
            succeeded=Count("id", filter=succeeded),
            failed=Count("id", filter=Q(status__in=staff.FAILURES)),
            cancelled=Count("id", filter=Q(status=Status.CANCELLED)),
            took_total=Sum("took", filter=succeeded),
        )
        .order_by()
    }
    p95 = nearest_rank(
        period.attempts().filter(succeeded), TOOK, Trunc("queued_at", kind), percents=(95,)
    )
    numbers = []
    for slot in found:
        row = rows.get(slot.start, {})
        done = row.get("succeeded", 0)
        numbers.append(
            SlotNumbers(
                slot=slot,
                attempts=row.get("attempts", 0),
                ended=row.get("ended", 0),
                succeeded=done,
                failed=row.get("failed", 0),
                cancelled=row.get("cancelled", 0),
                average=seconds(row.get("took_total")) / done if done else None,
                p95=seconds(p95[slot.start]["p95"]) if slot.start in p95 else None,
            )
        )
    return numbers


@dataclass(frozen=True)
class Latency:
    endpoint: str
    calls: int
    p50: int
    p95: int
    p99: int


def latencies(period: staff.Period) -> list[Latency]:
    """Dokploy's answer times by endpoint for the calls made in the period, slowest p95 first."""
    calls = DokployCall.objects.filter(created_at__gte=period.start, created_at__lt=period.end)
    found = nearest_rank(calls, F("duration_ms"), F("endpoint"))
    rows = [
        Latency(endpoint, entry["size"], entry["p50"], entry["p95"], entry["p99"])
        for endpoint, entry in found.items()
    ]
    return sorted(rows, key=lambda r: (-r.p95, -r.calls, r.endpoint))


@dataclass(frozen=True)
class QueueSample:
    at: datetime
    label: str
    queued: int
    running: int


def queue_samples(period: staff.Period, found: list[Slot]) -> list[QueueSample]:
    """How many attempts waited and ran at the end of each slot, the last one now (one query)."""
    now = timezone.now()
    instants = [min(slot.end, now) for slot in found]
    hourly = len(found) > 1 and found[1].start - found[0].start == timedelta(hours=1)
    shown = "%H:%M" if hourly else "%b %d"
    counts: dict[str, Any] = {}
    for index, t in enumerate(instants):
        not_started = Q(started_at__isnull=True) & (
            Q(finished_at__isnull=True) | Q(finished_at__gt=t)
        )
        counts[f"q{index}"] = Count(
            "id", filter=Q(queued_at__lte=t) & (Q(started_at__gt=t) | not_started)
        )
        counts[f"r{index}"] = Count(
            "id",
            filter=Q(started_at__lte=t) & (Q(finished_at__isnull=True) | Q(finished_at__gt=t)),
        )
    row = (
        DeploymentAttempt.objects.filter(queued_at__lt=period.end)
        .filter(Q(finished_at__isnull=True) | Q(finished_at__gte=period.start))
        .aggregate(**counts)
    )
    return [
        QueueSample(
            t, "now" if t == now else t.strftime(shown), row[f"q{i}"] or 0, row[f"r{i}"] or 0
        )
        for i, t in enumerate(instants)
    ]


@dataclass(frozen=True)
class BreakerHistory:
    state: str  # now; "closed" when no request has used the breaker yet
    since: datetime | None
    events: list[BreakerEvent]
    stretches: list[charts.Stretch]
    open_seconds: float  # in the period, open or half-open


def breaker_history(period: staff.Period) -> BreakerHistory:
    snapshot = CircuitBreaker(BREAKER).peek()
    current = snapshot.state if snapshot is not None else "closed"
    events = list(
        BreakerEvent.objects.filter(
            breaker=BREAKER, created_at__gte=period.start, created_at__lt=period.end
        ).order_by("created_at", "id")
    )
    before = (
        BreakerEvent.objects.filter(breaker=BREAKER, created_at__lt=period.start)
        .order_by("-created_at", "-id")
        .first()
    )
    last = events[-1] if events else before
    state = before.to_state if before else (events[0].from_state if events else current)
    stretches = []
    moment = period.start
    for event in events:
        if event.created_at > moment:
            stretches.append(charts.Stretch(moment, event.created_at, state))
        moment, state = event.created_at, event.to_state
    stretches.append(charts.Stretch(moment, min(period.end, timezone.now()), state))
    unhealthy = sum((s.end - s.start).total_seconds() for s in stretches if s.state != "closed")
    return BreakerHistory(current, last.created_at if last else None, events, stretches, unhealthy)


# --- The page ---------------------------------------------------------------------------------


def analysis_url(key: str, fragment: str = "", **focus: str) -> str:
    """The failure-analysis page for the same period, narrowed to what a chart shows."""
    query = urlencode({"period": key, **{k: v for k, v in focus.items() if v}})
    url = f"{reverse('admin:stacks_failure_analysis')}?{query}"
    return f"{url}#{fragment}" if fragment else url


@dataclass(frozen=True)
class Row:
    """One row of a chart's table of numbers, with where to look closer."""

    cells: list[str]
    url: str = ""


@dataclass(frozen=True)
class Chart:
    key: str  # element ids
    title: str
    summary: str  # the text alternative's first sentence, also under the chart
    kind: str  # line, bars, timeline
    drawing: Any
    headers: list[str]
    rows: list[Row]
    link: str  # the failure-analysis view filtered to what the chart shows
    link_text: str
    legend: list[tuple[str, str]]  # (css, name)
    empty: str = ""
    text_columns: int = 1  # the table's leading columns that hold words, not numbers


def build(key: str, now: datetime | None = None) -> dict[str, Any]:
    """Everything the dashboard template shows for the period `key`."""
    period = staff.Period.last(key, now)
    kind, found = slots(period, key)
    total = staff.totals(period)
    numbers = by_slot(period, kind, found)
    overall = nearest_rank(
        period.attempts().filter(status=Status.SUCCEEDED), TOOK, None, percents=(50, 95)
    ).get(None, {})
    groups = staff.failure_groups(period, total, details=False)
    phases = staff.phase_stats(period)
    history = breaker_history(period)
    samples = queue_samples(period, found)
    ended = sum(n.ended for n in numbers)
    succeeded = sum(n.succeeded for n in numbers)
    took = [n.average * n.succeeded for n in numbers if n.average is not None]
    last_run = reconcile.latest_run()
    orphans = (
        last_run.findings.filter(kind__in=ReconcileFinding.ORPHANS)
        .exclude(fix=ReconcileFinding.Fix.REMOVED)
        .count()
        if last_run is not None
        else 0
    )
    return {
        "period": period,
        "period_key": key,
        "periods": [(k, staff.PERIODS[k][0]) for k in PERIODS],
        "tiles": {
            "attempts": total.attempts,
            "ended": ended,
            "success": percent_text(succeeded / ended * 100) if ended else "-",
            "average": duration_text(sum(took) / succeeded if succeeded else None),
            "p50": duration_text(seconds(overall["p50"]) if "p50" in overall else None),
            "p95": duration_text(seconds(overall["p95"]) if "p95" in overall else None),
            "failures": total.failures,
            "rollback_failed": sum(p.rollback_failed for p in phases),
            "queued": samples[-1].queued if samples else 0,
            "running": samples[-1].running if samples else 0,
            "breaker": history.state,
            "breaker_label": history.state.replace("_", "-"),
            "breaker_since": history.since,
            "reconciled": last_run,
            "orphans": orphans,
        },
        "alerts": [
            (alerts.title(state.key), state)
            for state in AlertState.objects.filter(active=True).order_by("started_at")
        ],
        "history": history,
        "charts": [
            success_chart(key, numbers),
            duration_chart(key, numbers),
            failures_chart(key, groups),
            latency_chart(key, latencies(period)),
            retries_chart(key, phases),
            rollbacks_chart(key, phases),
            queue_chart(key, samples),
            breaker_chart(key, period, history, found),
        ],
        "analysis_url": analysis_url(key),
    }


def success_chart(key: str, numbers: list[SlotNumbers]) -> Chart:
    labels = [n.slot.label for n in numbers]
    rates = [n.success_percent for n in numbers]
    ended = sum(n.ended for n in numbers)
    succeeded = sum(n.succeeded for n in numbers)
    worst = min((n for n in numbers if n.ended), key=lambda n: n.succeeded / n.ended, default=None)
    summary = "No attempt ended in this period."
    if worst is not None:
        summary = (
            f"{succeeded} of {counted(ended, 'ended attempt')} succeeded "
            f"({percent_text(succeeded / ended * 100)}); the lowest was "
            f"{percent_text(worst.success_percent or 0)}, at {worst.slot.label}."
        )
    return Chart(
        key="success",
        title="Success rate",
        summary=summary,
        kind="line",
        drawing=charts.line_chart(
            labels, [charts.Series("success", "series-ok", rates)], top=100.0, fmt=percent_text
        ),
        headers=["When", "Ended", "Succeeded", "Failed", "Cancelled", "Success rate"],
        rows=[
            Row(
                [
                    n.slot.label,
                    str(n.ended),
                    str(n.succeeded),
                    str(n.failed),
                    str(n.cancelled),
                    percent_text(n.success_percent) if n.success_percent is not None else "-",
                ]
            )
            for n in numbers
            if n.attempts
        ],
        link=analysis_url(key, "failure-groups"),
        link_text="Why they failed",
        legend=[("series-ok", "succeeded of ended (cancellations left out)")],
        empty="" if ended else "No attempt ended in this period.",
    )


def duration_chart(key: str, numbers: list[SlotNumbers]) -> Chart:
    labels = [n.slot.label for n in numbers]
    lines = [
        charts.Series("average", "series-a", [n.average for n in numbers]),
        charts.Series("p95", "series-b", [n.p95 for n in numbers]),
    ]
    done = [n for n in numbers if n.succeeded]
    slowest = max(done, key=lambda n: n.p95 or 0, default=None)
    summary = (
        f"Succeeded attempts took {duration_text(slowest.p95)} at the 95th percentile in the "
        f"slowest {('hour' if key == '24h' else 'day')}, {slowest.slot.label}."
        if slowest is not None
        else "No attempt succeeded in this period."
    )
    return Chart(
        key="duration",
        title="Deployment time, request to healthy",
        summary=summary,
        kind="line",
        drawing=charts.line_chart(labels, lines, fmt=duration_text, whole=True),
        headers=["When", "Succeeded", "Average", "95th percentile"],
        rows=[
            Row([n.slot.label, str(n.succeeded), duration_text(n.average), duration_text(n.p95)])
            for n in done
        ],
        link=analysis_url(key, "phases"),
        link_text="Time per phase",
        legend=[("series-a", "average"), ("series-b", "95th percentile")],
        empty="" if done else "No attempt succeeded in this period.",
    )


def failures_chart(key: str, groups: list[staff.FailureGroup]) -> Chart:
    rows = [
        (
            f"{g.phase or '(none)'} · {g.error_code}",
            [charts.Piece(g.count, "series-bad", f"{g.phase} {g.error_code}: {g.count}")],
        )
        for g in groups
    ]
    count = sum(g.count for g in groups)
    summary = "No attempt failed in this period."
    if groups:
        top = groups[0]
        summary = (
            f"{counted(count, 'attempt')} failed; most often {top.error_code} in "
            f"{top.phase or '(none)'} ({top.count})."
        )
    return Chart(
        key="failures",
        title="Failure reasons",
        summary=summary,
        kind="bars",
        drawing=charts.bar_chart(rows),
        headers=["Phase", "Error code", "Attempts", "Share of all"],
        rows=[
            Row(
                [g.phase or "(none)", g.error_code, str(g.count), percent_text(g.percent)],
                analysis_url(key, "failure-groups", phase=g.phase, code=g.error_code),
            )
            for g in groups
        ],
        link=analysis_url(key, "failure-groups"),
        link_text="Failures with examples",
        legend=[("series-bad", "failed or rolled back")],
        text_columns=2,
        empty="" if groups else "No attempt failed in this period.",
    )


def latency_chart(key: str, rows: list[Latency]) -> Chart:
    shown = rows[:ENDPOINTS_SHOWN]
    bars = [
        (
            r.endpoint,
            [
                charts.Piece(r.p50, "series-a", f"{r.endpoint} p50: {ms_text(r.p50)}"),
                charts.Piece(r.p95, "series-b", f"{r.endpoint} p95: {ms_text(r.p95)}"),
                charts.Piece(r.p99, "series-c", f"{r.endpoint} p99: {ms_text(r.p99)}"),
            ],
        )
        for r in shown
    ]
    more = f" The table lists all {len(rows)}." if len(rows) > len(shown) else ""
    summary = (
        f"{counted(sum(r.calls for r in rows), 'Dokploy request')} to "
        f"{counted(len(rows), 'endpoint')}; the slowest "
        f"at the 95th percentile was {rows[0].endpoint} ({ms_text(rows[0].p95)}).{more}"
        if rows
        else "No Dokploy request in this period."
    )
    calls = reverse("admin:stacks_dokploycall_changelist")
    return Chart(
        key="latency",
        title="Dokploy API latency by endpoint",
        summary=summary,
        kind="bars",
        drawing=charts.bar_chart(bars, grouped=True, fmt=ms_text, whole=False),
        headers=["Endpoint", "Requests", "p50", "p95", "p99"],
        rows=[
            Row(
                [r.endpoint, str(r.calls), ms_text(r.p50), ms_text(r.p95), ms_text(r.p99)],
                f"{calls}?{urlencode({'endpoint': r.endpoint})}",
            )
            for r in rows
        ],
        link=analysis_url(key, "phases"),
        link_text="Calls, retries and failures per phase",
        legend=[("series-a", "p50"), ("series-b", "p95"), ("series-c", "p99")],
        empty="" if rows else "No Dokploy request in this period.",
    )


def retries_chart(key: str, phases: list[staff.PhaseStats]) -> Chart:
    shown = [p for p in phases if p.retries or p.retried_calls]
    bars = [
        (
            p.phase,
            [
                charts.Piece(
                    p.retries, "series-b", f"{p.phase}: {counted(p.retries, 'retry', 'retries')}"
                )
            ],
        )
        for p in shown
    ]
    total = sum(p.retries for p in phases)
    summary = "No Dokploy request was retried in this period."
    if total:
        most = max(shown, key=lambda p: p.retries).phase
        summary = f"{counted(total, 'retry', 'retries')}; most in {most}."
    return Chart(
        key="retries",
        title="Retries per phase",
        summary=summary,
        kind="bars",
        drawing=charts.bar_chart(bars),
        headers=["Phase", "Retries", "Dokploy calls", "Retried calls", "Failed calls"],
        rows=[
            Row(
                [p.phase, str(p.retries), str(p.calls), str(p.retried_calls), str(p.failed_calls)],
                analysis_url(key, "phases", phase=p.phase),
            )
            for p in shown
        ],
        link=analysis_url(key, "phases"),
        link_text="Phases in the failure analysis",
        legend=[("series-b", "requests sent again")],
        empty="" if shown else "No Dokploy request was retried in this period.",
    )


def rollbacks_chart(key: str, phases: list[staff.PhaseStats]) -> Chart:
    shown = [p for p in phases if p.rolled_back or p.rollback_failed]
    bars = [
        (
            p.phase,
            [
                charts.Piece(p.rolled_back, "series-ok", f"{p.phase}: {p.rolled_back} rolled back"),
                charts.Piece(
                    p.rollback_failed, "series-bad", f"{p.phase}: {p.rollback_failed} left behind"
                ),
            ],
        )
        for p in shown
    ]
    clean = sum(p.rolled_back for p in phases)
    failed = sum(p.rollback_failed for p in phases)
    summary = "Nothing was rolled back in this period."
    if clean + failed:
        summary = (
            f"{counted(clean + failed, 'rollback')}: {clean} removed everything, {failed} left "
            "something in Dokploy."
        )
    return Chart(
        key="rollbacks",
        title="Rollbacks by the phase that failed",
        summary=summary,
        kind="bars",
        drawing=charts.bar_chart(bars),
        headers=["Failed phase", "Rolled back", "Rollback failed"],
        rows=[
            Row(
                [p.phase, str(p.rolled_back), str(p.rollback_failed)],
                analysis_url(key, "failure-groups", phase=p.phase),
            )
            for p in shown
        ],
        link=analysis_url(key, "phases"),
        link_text="Rollbacks per phase",
        legend=[("series-ok", "rolled back"), ("series-bad", "rollback failed")],
        empty="" if shown else "Nothing was rolled back in this period.",
    )


def queue_chart(key: str, samples: list[QueueSample]) -> Chart:
    lines = [
        charts.Series("queued", "series-b", [s.queued for s in samples]),
        charts.Series("running", "series-a", [s.running for s in samples]),
    ]
    busiest = max(samples, key=lambda s: s.queued, default=None)
    summary = "No attempt was waiting at any of these times."
    if busiest is not None and busiest.queued:
        last = samples[-1]
        summary = (
            f"Now {last.queued} wait and {last.running} run; the most that waited at once was "
            f"{busiest.queued} ({'now' if busiest is last else busiest.label})."
        )
    return Chart(
        key="queue",
        title="The queue",
        summary=summary,
        kind="line",
        drawing=charts.line_chart([s.label for s in samples], lines, whole=True),
        headers=["At", "Queued", "Running"],
        rows=[Row([f"{s.at:%Y-%m-%d %H:%M}", str(s.queued), str(s.running)]) for s in samples],
        link=analysis_url(key, "failure-groups", phase="queue"),
        link_text="Attempts that failed in the queue",
        legend=[("series-b", "queued"), ("series-a", "running")],
    )


def breaker_chart(
    key: str, period: staff.Period, history: BreakerHistory, found: list[Slot]
) -> Chart:
    every = max(1, -(-len(found) // charts.MAX_X_LABELS))
    ticks = [(slot.start, slot.label) for i, slot in enumerate(found) if i % every == 0]
    ticks = [(t, label) for t, label in ticks if t >= period.start]

    def describe(stretch: charts.Stretch) -> str:
        return (
            f"{stretch.state.replace('_', '-')} from {stretch.start:%Y-%m-%d %H:%M} "
            f"to {stretch.end:%Y-%m-%d %H:%M}"
        )

    opened = sum(1 for e in history.events if e.to_state == "open")
    now = history.state.replace("_", "-")
    summary = f"The breaker did not change in this period; it is {now}."
    if history.events:
        summary = (
            f"The breaker opened {'once' if opened == 1 else f'{opened} times'} and was not "
            "closed for "
            f"{duration_text(history.open_seconds)} in this period; it is {now} now."
        )
    return Chart(
        key="breaker",
        title="Circuit breaker",
        summary=summary,
        kind="timeline",
        drawing=charts.timeline(history.stretches, period.start, period.end, ticks, describe),
        headers=["When", "From", "To", "Why"],
        rows=[
            Row(
                [
                    f"{e.created_at:%Y-%m-%d %H:%M:%S}",
                    e.get_from_state_display(),
                    e.get_to_state_display(),
                    e.reason,
                ]
            )
            for e in history.events
        ],
        link=analysis_url(key, "failure-groups", code="BREAKER_OPEN"),
        link_text="Attempts refused while it was open",
        legend=[
            ("state-closed", "closed"),
            ("state-half_open", "half-open (a probe)"),
            ("state-open", "open"),
        ],
        text_columns=4,
    )
