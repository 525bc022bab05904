"""The Content Security Policy in real Chromium: the browser reports nothing on the portal's
pages (every browser test checks that, through Visit), the admin's pages included, and it
does report what the policy blocks, so that silence means something."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import expect

from stacks.models import DeploymentAttempt
from tests.e2e.conftest import Visit
from tests.pages import attempt, deployed_stack, step

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.filterwarnings(
        "ignore:Session-scoped fixtures defined as instance methods:pytest.PytestRemovedIn10Warning"
    ),
]

Status = DeploymentAttempt.Status
INLINE_STYLE = """() => {
  const style = document.createElement("style");
  style.textContent = "body { background: rgb(255, 0, 0) }";
  document.head.append(style);
}"""


def test_the_browser_reports_an_inline_style_and_does_not_apply_it(visit: Visit):
    page = visit.page
    visit.go("/")

    with page.expect_console_message(lambda m: "Content Security Policy" in m.text):
        page.evaluate(INLINE_STYLE)

    assert len(visit.csp.violations) == 1
    assert "style-src 'self'" in visit.csp.violations[0]
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background != "rgb(255, 0, 0)"
    visit.csp.violations.clear()  # the one provoked here


def test_the_admin_runs_under_the_policy(visit: Visit, alice: User):
    page = visit.page
    User.objects.create_superuser("olga", "olga@example.com", "correct-horse-battery")
    failed = attempt(deployed_stack(alice), Status.ROLLED_BACK, failure_phase="domain")
    step(failed, "domain", "failed", error_code="BAD_REQUEST", error_message="Domain taken")
    visit.go("/admin/login/")
    page.fill("#id_username", "olga")
    page.fill("#id_password", "correct-horse-battery")
    page.click("input[type=submit]")
    expect(page.locator("#site-name")).to_be_visible()

    for path in (
        "/admin/",
        "/admin/stacks/deploymentattempt/?status__exact=rolled_back",
        f"/admin/stacks/deploymentattempt/{failed.pk}/change/",
        "/admin/stacks/deploymentattempt/failures/",
        "/admin/stacks/reconcilerun/latest/",
        "/admin/stacks/stack/",
        f"/admin/auth/user/{alice.pk}/change/",  # permission pickers (SelectFilter2)
        "/admin/django_q/schedule/add/",  # date and time widgets
    ):
        visit.go(path)
        expect(page.locator("#content")).to_be_visible()
    visit.go("/admin/stacks/stack/")
    page.locator("input.action-select").first.check()
    page.select_option("select[name=action]", "stop")
    page.get_by_role("button", name="Go").click()
    expect(page.locator("h1")).to_have_text("Stop stacks: are you sure?")
    page.get_by_role("link", name="No, take me back").click()  # the admin's own script
    expect(page.locator("h1")).to_have_text("Select stack to view")

    assert visit.csp.violations == []
