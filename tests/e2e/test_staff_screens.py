"""Staff pages in real Chromium, with data from simulated runs: failure analysis, reconciler,
and the confirmation of a staff action.

The browser is driven through Playwright's sync API with fixtures of this module (named
staff_*) on pytest-playwright's session-wide driver, so it shares no browser, context or page
with the other browser tests. Attempts run in this process
(`pipeline.run_attempt`), so no worker cluster is needed. Screenshots go to a temporary folder,
or to $SCREENSHOTS_DIR when it is set (docs/screenshots/ for the docs).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from stacks import reconcile
from stacks.dokploy.client import DokployClient
from stacks.models import DeploymentAttempt, Stack
from tests.e2e.conftest import CspWatch, open_staff_tab, run

pytestmark = pytest.mark.e2e

PULL_DENIED = "pull access denied for ghcr.io/ai-stack/opencode-ttyd, repository does not exist"


@pytest.fixture
def staff_shots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("SCREENSHOTS_DIR") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def staff_page(browser: Browser, live_server, dokploy) -> Iterator[Page]:
    """A signed-in staff member's browser tab."""
    context = open_staff_tab(browser, live_server.url)
    page = context.pages[0]
    csp = CspWatch(page, live_server.url)
    try:
        yield page
    finally:
        context.close()
    assert csp.violations == [], "Content Security Policy violations on the admin's pages"


def simulated_history(dokploy, settings) -> None:
    """Ten users' deployments against the simulator, with the failures staff meet most."""
    for name in ("ada", "ben", "kim"):
        assert run(name).status == "succeeded"
    for name in ("cleo", "dan", "eve"):
        dokploy.fail_deploy(f"opencode-{name}", message=PULL_DENIED)
        assert run(name).error_code == "DEPLOY_FAILED"
    dokploy.fail("domain.create", times=1, status=400)
    assert run("finn").error_code == "BAD_REQUEST"
    dokploy.unhealthy("gus.ai.example.test")
    assert run("gus").error_code == "UNHEALTHY"
    dokploy.healthy("gus.ai.example.test")
    dokploy.fail("application.create", times=2, status=503)
    assert run("hal").status == "succeeded"
    settings.DOKPLOY_API_KEY = "revoked-key-0000000000"
    assert run("ida").error_code == "UNAUTHORIZED"
    settings.DOKPLOY_API_KEY = dokploy.api_key
    assert run("ada", "redeploy").status == "succeeded"


def changed_behind_our_back(dokploy) -> None:
    """Orphans and drift, as crashes and manual changes in Dokploy leave them."""
    client = DokployClient.from_settings()
    ada, ben, hal = (Stack.objects.get(username=name) for name in ("ada", "ben", "hal"))
    client.application_save_docker_provider(
        application_id=ada.application_id, docker_image="ghcr.io/ai-stack/opencode-ttyd:0.9"
    )
    client.domain_update(
        ben.domain_id,
        host=ben.host,
        https=False,
        port=3000,
        certificate_type="none",
        domain_type="application",
        path="/",
    )
    client.application_create(name="opencode-hal", environment_id=hal.environment_id)
    client.application_delete(Stack.objects.get(username="kim").application_id)
    ghost = client.project_create(name="ai-stack-ghost", description="AI Stack for ghost")
    client.application_create(
        name="opencode-ghost", environment_id=ghost.environment.environment_id
    )
    client.project_create(name="ai-stack-ada")


def test_failure_analysis_page(staff_page: Page, live_server, dokploy, settings, staff_shots):
    simulated_history(dokploy, settings)

    staff_page.goto(f"{live_server.url}/admin/stacks/deploymentattempt/")
    staff_page.get_by_role("link", name="Failure analysis").click()

    expect(staff_page.locator("h1")).to_have_text("Failure analysis")
    groups = staff_page.locator("#failure-groups tr.group")
    expect(groups).to_have_count(4)
    expect(groups.first).to_contain_text("DEPLOY_FAILED")
    expect(groups.first.locator("td.num").first).to_have_text("3")
    expect(staff_page.locator(".staff-totals td.num").first).to_have_text("11")
    expect(staff_page.locator("pre.log-tail").first).to_contain_text("pull access denied")
    staff_page.screenshot(path=str(staff_shots / "staff-failure-analysis.png"), full_page=True)


def test_reconciler_page(staff_page: Page, live_server, dokploy, settings, staff_shots):
    simulated_history(dokploy, settings)
    changed_behind_our_back(dokploy)
    assert reconcile.run().status == "ok"

    staff_page.goto(f"{live_server.url}/admin/stacks/reconcilerun/")
    staff_page.get_by_role("link", name="Latest findings").click()

    expect(staff_page.locator("h1")).to_have_text("Reconciler: latest findings")
    findings = staff_page.locator("#findings tbody tr")
    expect(findings).to_have_count(7)
    for kind in (
        "orphan_project",
        "orphan_application",
        "shared_name",
        "image_drift",
        "domain_drift",
        "application_missing",
    ):
        expect(staff_page.locator(f"#findings tr.finding-{kind}").first).to_be_visible()
    expect(staff_page.locator("#findings")).to_contain_text("No stack is named ghost")
    staff_page.screenshot(path=str(staff_shots / "staff-reconciler.png"), full_page=True)


def test_staff_action_confirmation_page(staff_page: Page, live_server, dokploy, staff_shots):
    for name in ("ada", "ben"):
        assert run(name).status == "succeeded"

    staff_page.goto(f"{live_server.url}/admin/stacks/stack/")
    for name in ("ada", "ben"):
        staff_page.get_by_role("row", name=name).locator("input.action-select").check()
    staff_page.select_option("select[name=action]", "redeploy")
    staff_page.get_by_role("button", name="Go").click()

    expect(staff_page.locator("h1")).to_have_text("Redeploy stacks: are you sure?")
    expect(staff_page.locator("ul.staff-action-targets li")).to_have_count(2)
    staff_page.fill("#id_reason", "Image 1.4 fixes the terminal resize bug; users asked in #help")
    staff_page.screenshot(path=str(staff_shots / "staff-action-confirm.png"), full_page=True)
    staff_page.get_by_role("button", name="Yes, redeploy stacks").click()

    expect(staff_page.locator("ul.messagelist li")).to_have_count(2)
    expect(staff_page.locator("ul.messagelist li.success").first).to_contain_text("done: queued")
    redeploys = DeploymentAttempt.objects.filter(kind="redeploy", reason__startswith="Image 1.4")
    assert redeploys.count() == 2
