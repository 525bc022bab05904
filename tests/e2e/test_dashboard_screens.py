"""The staff dashboard in real Chromium, with a week of simulated deployments: its charts,
axe-core in the light and the dark scheme, a chart's link into the failure analysis, and the
screenshots in docs/ (with $SCREENSHOTS_DIR).

The deployments run in this process (`pipeline.run_attempt`) against the simulator, each one
for real, at the time the test runs. The records of each day's runs are then moved back to that
day, as if they had run then: the pipeline keeps its leases and deadlines on the real clock,
which a task worker of another process would judge by. This module's `portal` fixture replaces
the one of conftest.py, so no worker cluster is started for it; the browser is the one every
browser test module uses (conftest.py's Debian Chromium).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from axe_playwright_python.sync_playwright import Axe  # type: ignore[import-untyped]
from django.contrib.auth.models import User
from django.db.models import F
from django.utils import timezone
from playwright.sync_api import Browser, Page, expect

from stacks import lifecycle, reconcile
from stacks.dokploy.client import DokployClient
from stacks.models import BreakerEvent, DeploymentAttempt, DeploymentStep, DokployCall
from stacks.resilience import CircuitBreaker
from tests.e2e.conftest import AXE_SEEN, BAD_IMPACTS, SHOTS, open_staff_tab, run

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.filterwarnings(
        "ignore:Session-scoped fixtures defined as instance methods:pytest.PytestRemovedIn10Warning"
    ),
]

PULL_DENIED = "pull access denied for ghcr.io/ai-stack/opencode-ttyd, repository does not exist"


@pytest.fixture
def portal(live_server: Any) -> Any:
    """The live server alone: these attempts run in this process, not in a worker cluster."""
    return live_server


@pytest.fixture
def board_page(browser: Browser, live_server: Any, dokploy: Any) -> Iterator[Page]:
    """A signed-in staff member's tab, in the browser tests' one Chromium."""
    context = open_staff_tab(browser, live_server.url, width=1400)
    try:
        yield context.pages[0]
    finally:
        context.close()


def move_back(since_id: dict[str, int], by: timedelta) -> None:
    """Move the records made since `since_id` back by `by`, as if they had happened then."""
    DeploymentAttempt.objects.filter(pk__gt=since_id["attempt"]).update(
        queued_at=F("queued_at") - by,
        started_at=F("started_at") - by,
        finished_at=F("finished_at") - by,
        deadline=F("deadline") - by,
        rollback_started_at=F("rollback_started_at") - by,
    )
    DeploymentStep.objects.filter(pk__gt=since_id["step"]).update(
        started_at=F("started_at") - by, finished_at=F("finished_at") - by
    )
    DokployCall.objects.filter(pk__gt=since_id["call"]).update(created_at=F("created_at") - by)
    BreakerEvent.objects.filter(pk__gt=since_id["event"]).update(created_at=F("created_at") - by)


def marks() -> dict[str, int]:
    def top(model: Any) -> int:
        return int(model.objects.order_by("-pk").values_list("pk", flat=True).first() or 0)

    return {
        "attempt": top(DeploymentAttempt),
        "step": top(DeploymentStep),
        "call": top(DokployCall),
        "event": top(BreakerEvent),
    }


def back_to(days_ago: int) -> timedelta:
    """How far to move records made now back to that day, mid-morning (UTC)."""
    now = timezone.now()
    day = (now - timedelta(days=days_ago)).replace(hour=9, minute=0, second=0, microsecond=0)
    return now - (day + timedelta(minutes=17 * days_ago))


def a_week_of_deployments(dokploy: Any, settings: Any) -> None:
    """Seven days of simulated work: mostly healthy, a bad image two days, Dokploy down for half
    an hour another, slow answers now and then, an orphan in Dokploy, and Dokploy unavailable
    right now with two attempts waiting."""
    users = iter(f"user{n:02d}" for n in range(1, 100))
    for days_ago in range(6, 0, -1):
        before = marks()
        for number in range(3 + days_ago % 3):
            dokploy.deploy_seconds = 0.2 + 0.5 * ((number + days_ago) % 3)
            assert run(next(users)).status == "succeeded"
        if days_ago in (6, 1):
            dokploy.fail("project.all", times=2, status=200, delay=0.3)  # slow, not failing
            dokploy.fail("application.deploy", times=1, status=200, delay=0.6)
            assert run(next(users)).status == "succeeded"
        if days_ago == 5:
            dokploy.fail("application.create", times=2, status=503)
            assert run(next(users)).status == "succeeded"  # after two retries
        if days_ago in (4, 3):
            for _ in range(2):
                name = next(users)
                dokploy.fail_deploy(f"opencode-{name}", message=PULL_DENIED)
                assert run(name).error_code == "DEPLOY_FAILED"
        if days_ago == 3:
            name = next(users)
            dokploy.fail_deploy(f"opencode-{name}", message=PULL_DENIED)
            dokploy.fail("project.remove", times=1, status=400)
            assert run(name).rollback_errors  # the rollback left the project behind
        if days_ago == 2:
            dokploy.fail("domain.create", times=1, status=400)
            assert run(next(users)).error_code == "BAD_REQUEST"
            name = next(users)
            dokploy.unhealthy(f"{name}.ai.example.test")
            assert run(name).error_code == "UNHEALTHY"
            dokploy.fail("project.all", times=5, status=503)
            opened = marks()
            assert run(next(users)).error_code == "BREAKER_OPEN"
            move_back(opened, timedelta(minutes=35))  # Dokploy stayed down for 35 minutes,
            CircuitBreaker().reset_breaker()  # then staff reset the breaker
        if days_ago == 1:
            assert run("user01", "redeploy").status == "succeeded"
        move_back(before, back_to(days_ago))
    for _ in range(2):  # today
        assert run(next(users)).status == "succeeded"
    client = DokployClient.from_settings()
    client.project_create(name="ai-stack-ghost", description="AI Stack for ghost")
    assert reconcile.run().status == "ok"  # finds the orphan, and tells staff
    dokploy.fail("project.all", times=5, status=503)
    assert run(next(users)).error_code == "BREAKER_OPEN"  # and now: Dokploy is down
    for _ in range(2):  # waiting for a worker
        user = User.objects.create_user(next(users))
        lifecycle.request_attempt(user, "create", dispatch=False)
    settings.DEBUG = False


def check(page: Page, name: str, shots: Path) -> None:
    """axe-core in both schemes (no serious or critical violation), and a photograph of each."""
    axe = Axe()
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        # The admin's links fade to their new colour over 0.15 s: judge the colours once there.
        page.wait_for_timeout(400)
        results = axe.run(page)
        violations = results.response["violations"]
        AXE_SEEN[f"{name} ({scheme})"] = [f"{v['id']} [{v['impact']}]" for v in violations]
        bad = [v for v in violations if v["impact"] in BAD_IMPACTS]
        assert not bad, f"{name} ({scheme}): {results.generate_report()}"
        path = shots / f"{name}-{scheme}.png"
        page.screenshot(path=str(path), full_page=True, animations="disabled")
        SHOTS.append(path)
    page.emulate_media(color_scheme="light")


def test_the_dashboard_shows_a_week(board_page: Page, live_server, dokploy, settings, shots_dir):
    a_week_of_deployments(dokploy, settings)
    page = board_page

    page.goto(f"{live_server.url}/admin/stacks/deploymentattempt/")
    page.get_by_role("link", name="Dashboard").click()

    expect(page.locator("h1")).to_have_text("Provisioning dashboard")
    expect(page.locator("section.chart")).to_have_count(8)
    expect(page.locator("section.chart svg.chart-svg")).to_have_count(8)
    expect(page.locator("#alerts li")).to_have_count(2)
    expect(page.locator("#alerts li").first).to_contain_text("Orphans in Dokploy")
    expect(page.locator("#alerts li").last).to_contain_text(
        "Dokploy unavailable: circuit breaker dokploy open"
    )
    tiles = page.locator("#tiles")
    expect(tiles.locator(".tile-value").nth(2)).to_have_text("9")  # failures in seven days
    expect(tiles.locator(".breaker-open")).to_have_text("open")
    expect(tiles.locator(".tile-value").nth(3)).to_have_text("2")  # waiting now
    expect(tiles.locator(".tile-value").nth(5)).to_have_text("1 orphan")
    expect(page.locator("#chart-failures-summary")).to_contain_text(
        "9 attempts failed; most often DEPLOY_FAILED in deploy (5)."
    )
    expect(page.locator("#chart-breaker rect.state-open")).to_have_count(2)
    check(page, "staff-dashboard", shots_dir)

    numbers = page.locator("#chart-failures details")
    numbers.locator("summary").click()
    numbers.get_by_role("link", name="domain").click()

    expect(page.locator("h1")).to_have_text("Failure analysis")
    expect(page.locator("#focus")).to_contain_text("Only the failures in phase domain")
    expect(page.locator("#failure-groups tr.group")).to_have_count(1)
    expect(page.locator("#failure-groups tr.group")).to_contain_text("BAD_REQUEST")


def test_the_last_24_hours(board_page: Page, live_server, dokploy, settings, shots_dir):
    a_week_of_deployments(dokploy, settings)

    board_page.goto(f"{live_server.url}/admin/stacks/deploymentattempt/dashboard/?period=24h")

    expect(board_page.locator("#id_period")).to_have_value("24h")
    expect(board_page.locator("#chart-queue-summary")).to_have_text(
        "Now 2 wait and 0 run; the most that waited at once was 2 (now)."
    )
    check(board_page, "staff-dashboard-24h", shots_dir)
