"""The staff dashboard on seeded records: who may see it, its exact numbers, the percentiles,
its links into the failure analysis, and a page that works under a strict CSP."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
import time_machine
from django.contrib.auth.models import Permission, User
from django.db.models import F
from django.test import Client

from stacks import charts, dashboard, staff
from stacks.models import DeploymentAttempt, DokployCall
from tests.metrics_seed import NOW, seed
from tests.test_views import row_counts

URL = "/admin/stacks/deploymentattempt/dashboard/"
ANALYSIS = "/admin/stacks/deploymentattempt/failures/"


@pytest.fixture
def clock():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.fixture
def seeded(db, clock) -> dict[str, DeploymentAttempt]:
    return seed()


@pytest.fixture
def staff_client(db) -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("root", "root@example.com", "password"))
    return client


def by_key(page) -> dict[str, dashboard.Chart]:
    return {chart.key: chart for chart in page.context["charts"]}


# --- Who may see it -----------------------------------------------------------------------------


def test_only_staff_who_may_view_attempts(db, staff_client):
    outsider = Client()
    outsider.force_login(User.objects.create_user("mallory", password="password"))
    staff_only = Client()
    staff_only.force_login(User.objects.create_user("sam", password="password", is_staff=True))
    viewer = User.objects.create_user("vera", password="password", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_deploymentattempt"))
    viewing = Client()
    viewing.force_login(viewer)

    assert Client().get(URL).status_code == 302
    assert outsider.get(URL)["Location"].startswith("/admin/login/")
    assert staff_only.get(URL).status_code == 403
    assert viewing.get(URL).status_code == 200
    assert staff_client.get(URL).status_code == 200


# --- The numbers --------------------------------------------------------------------------------


def test_tiles(seeded, staff_client):
    page = staff_client.get(f"{URL}?period=7d")

    tiles = page.context["tiles"]
    assert {k: v for k, v in tiles.items() if k not in ("reconciled", "breaker_since")} == {
        "attempts": 9,
        "ended": 5,
        "success": "40 %",
        "average": "9 min 20 s",  # (100 s + 1020 s) / 2
        "p50": "1 min 40 s",
        "p95": "17 min 00 s",
        "failures": 3,
        "rollback_failed": 1,
        "queued": 2,
        "running": 1,
        "breaker": "open",
        "breaker_label": "open",
        "orphans": 1,
    }
    assert tiles["breaker_since"] == NOW - timedelta(minutes=8)


def test_charts_in_the_last_24_hours(seeded, staff_client):
    page = staff_client.get(f"{URL}?period=24h")
    found = by_key(page)

    assert list(found) == [
        "success",
        "duration",
        "failures",
        "latency",
        "retries",
        "rollbacks",
        "queue",
        "breaker",
    ]
    assert [r.cells for r in found["success"].rows] == [
        ["10:00", "1", "1", "0", "0", "100 %"],
        ["11:00", "4", "1", "3", "1", "25 %"],
    ]
    assert found["success"].summary == (
        "2 of 5 ended attempts succeeded (40 %); the lowest was 25 %, at 11:00."
    )
    assert [r.cells for r in found["duration"].rows] == [
        ["10:00", "1", "1 min 40 s", "1 min 40 s"],
        ["11:00", "1", "17 min 00 s", "17 min 00 s"],
    ]
    assert [(r.cells, r.url) for r in found["failures"].rows] == [
        (
            ["deploy", "DEPLOY_FAILED", "1", "11.1 %"],
            f"{ANALYSIS}?period=24h&phase=deploy&code=DEPLOY_FAILED#failure-groups",
        ),
        (
            ["domain", "BAD_REQUEST", "1", "11.1 %"],
            f"{ANALYSIS}?period=24h&phase=domain&code=BAD_REQUEST#failure-groups",
        ),
        (
            ["project", "BREAKER_OPEN", "1", "11.1 %"],
            f"{ANALYSIS}?period=24h&phase=project&code=BREAKER_OPEN#failure-groups",
        ),
    ]
    # The old project.create (forty days ago) is outside.
    assert [r.cells for r in found["latency"].rows] == [
        ["domain.create", "1", "10.00 s", "10.00 s", "10.00 s"],
        ["project.all", "1", "800 ms", "800 ms", "800 ms"],
        ["application.create", "3", "120 ms", "130 ms", "130 ms"],
        ["project.create", "1", "40 ms", "40 ms", "40 ms"],
    ]
    assert found["latency"].rows[2].url == "/admin/stacks/dokploycall/?endpoint=application.create"
    assert [r.cells for r in found["retries"].rows] == [
        ["application", "2", "0", "0", "0"],
        ["domain", "1", "0", "0", "0"],
    ]
    assert [r.cells for r in found["rollbacks"].rows] == [
        ["deploy", "1", "0"],
        ["domain", "0", "1"],
    ]
    queue = [r.cells for r in found["queue"].rows]
    assert len(queue) == 24  # at 13:00 yesterday, every hour after, and now (12:00)
    assert queue[0] == ["2026-11-30 13:00", "0", "0"]
    # bob's first create was queued at 11:00:00 and started three seconds later.
    assert queue[-2:] == [["2026-12-01 11:00", "1", "0"], ["2026-12-01 12:00", "2", "1"]]
    assert [t.label for t in found["queue"].drawing.x_ticks][-1] == "10:00"
    assert found["queue"].drawing.lines[0].dots[-1].title == "now: queued 2"
    assert [r.cells for r in found["breaker"].rows] == [
        ["2026-12-01 11:50:00", "Closed", "Open", "test"],
        ["2026-12-01 11:51:00", "Open", "Half-open", "test"],
        ["2026-12-01 11:52:00", "Half-open", "Open", "test"],
    ]
    assert found["breaker"].summary == (
        "The breaker opened 2 times and was not closed for 10 min 00 s in this period; "
        "it is open now."
    )


def test_thirty_days_by_the_day(seeded, staff_client):
    found = by_key(staff_client.get(f"{URL}?period=30d"))

    assert len(found["queue"].rows) == 31
    assert [r.cells for r in found["success"].rows] == [["Dec 01", "5", "2", "3", "1", "40 %"]]


def test_an_unknown_period_is_seven_days(seeded, staff_client):
    page = staff_client.get(f"{URL}?period=1y")

    assert page.context["period_key"] == "7d"
    assert page.context["period"].start == NOW - timedelta(days=7)


def test_the_breaker_state_before_the_period_carries_in(seeded, staff_client, clock):
    clock.move_to(NOW + timedelta(days=2))

    found = by_key(staff_client.get(f"{URL}?period=24h"))

    assert found["breaker"].rows == []
    assert found["breaker"].summary == "The breaker did not change in this period; it is open."
    (band,) = found["breaker"].drawing.bands
    assert band.css == "state-open"


def test_an_empty_period(db, staff_client, clock):
    found = by_key(staff_client.get(URL))

    assert found["success"].empty == "No attempt ended in this period."
    assert found["latency"].empty == "No Dokploy request in this period."
    assert found["breaker"].summary == "The breaker did not change in this period; it is closed."


def test_percentiles_by_nearest_rank(db):
    for ms in range(1, 101):
        DokployCall.objects.create(endpoint="a", method="POST", duration_ms=ms)
    for ms in (30, 10, 20):
        DokployCall.objects.create(endpoint="b", method="POST", duration_ms=ms)

    found = dashboard.nearest_rank(DokployCall.objects.all(), F("duration_ms"), F("endpoint"))

    assert found == {
        "a": {"size": 100, "p50": 50, "p95": 95, "p99": 99},
        "b": {"size": 3, "p50": 20, "p95": 30, "p99": 30},
    }


def test_a_bounded_number_of_queries(seeded, staff_client, django_assert_max_num_queries):
    with django_assert_max_num_queries(24):
        staff_client.get(f"{URL}?period=30d")


def test_the_page_changes_nothing(seeded, staff_client):
    before = row_counts()

    staff_client.get(URL)

    assert row_counts() == before


# --- The page -----------------------------------------------------------------------------------


def test_every_chart_has_its_text_alternative_and_link(seeded, staff_client):
    html = staff_client.get(f"{URL}?period=7d").content.decode()

    for key in ("success", "duration", "failures", "latency", "retries", "rollbacks", "queue"):
        section = html[html.index(f'id="chart-{key}"') :]
        section = section[: section.index("</section>")]
        assert f'aria-labelledby="chart-{key}-heading" aria-describedby="chart-{key}-summary"' in (
            section
        )
        assert '<details class="chart-numbers">' in section
        assert f'href="{ANALYSIS}?period=7d' in section
    assert (
        'href="/admin/stacks/deploymentattempt/failures/?period=7d&amp;code=BREAKER_OPEN#failure-groups"'
        in html
    )


def test_no_inline_style_or_script(seeded, staff_client):
    """The page works under a strict Content-Security-Policy."""
    html = staff_client.get(URL).content.decode()

    assert "style=" not in html
    assert "<style" not in html
    assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", html) == []


def test_the_failure_analysis_narrowed_to_a_chart(seeded, staff_client):
    page = staff_client.get(f"{ANALYSIS}?period=24h&phase=domain&code=BAD_REQUEST")

    report = page.context["report"]
    assert [(g.phase, g.error_code) for g in report.groups] == [("domain", "BAD_REQUEST")]
    assert [p.phase for p in report.phases] == ["domain"]
    assert report.totals.attempts == 9  # the whole period's
    assert "Only the failures in phase <strong>domain</strong> with error code" in (
        page.content.decode()
    )


def test_the_failure_analysis_by_phase_only(seeded):
    report = staff.failure_report(staff.Period.last("7d"), staff.Focus(phase="deploy"))

    assert [(g.phase, g.error_code) for g in report.groups] == [("deploy", "DEPLOY_FAILED")]
    assert [s.phase for s in report.slowest] == ["deploy"]


# --- Chart geometry -----------------------------------------------------------------------------


def test_round_chart_ceilings():
    assert [charts.nice_ceiling(v) for v in (0, 0.3, 1, 7, 12, 26, 100, 101, 2400)] == [
        1, 0.5, 1, 10, 20, 50, 100, 200, 2500,
    ]  # fmt: skip


def test_a_line_leaves_gaps_where_there_is_nothing():
    chart = charts.line_chart(
        ["a", "b", "c", "d"], [charts.Series("s", "series-a", [50.0, None, 100.0, 0.0])], top=100.0
    )

    (line,) = chart.lines
    assert line.runs == ["127.2,95.0", "412.2,14.0 554.8,176.0"]
    assert [d.title for d in line.dots] == ["a: s 50", "c: s 100", "d: s 0"]
    assert [t.label for t in chart.y_ticks] == ["0", "25", "50", "75", "100"]
