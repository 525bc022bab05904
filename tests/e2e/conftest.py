"""Browser tests: real Chromium against the live server, a real worker cluster and the simulator.

They need tasks to go to a worker cluster instead of running inline, so they run in their own
pytest invocation with the settings module made for them (scripts/test does this):

    DATABASE_URL=sqlite:///$PWD/var/test-portal.sqlite3 pytest tests/e2e --ds=tests.e2e.settings

The cluster is a `manage.py qcluster` subprocess with the same settings module, pointed at the
live test database through DATABASE_URL and at the simulator through DOKPLOY_URL. Every page
visited is checked with axe-core in the light and the dark scheme; the main pages are
photographed in both, into a temporary folder, or into $SCREENSHOTS_DIR when it is set.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from axe_playwright_python.sync_playwright import Axe  # type: ignore[import-untyped]
from django.conf import settings as django_settings
from django.contrib.auth.models import User
from django.db import connection
from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page, expect

from stacks import lifecycle, pipeline
from stacks.dokploy.simulator import DokploySimulator
from stacks.models import DeploymentAttempt

# Playwright's sync API runs an event loop in the test thread; Django's ORM refuses to run in
# such a thread unless told that this is deliberate.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
STACK_DOMAIN = "ai.example.test"
BAD_IMPACTS = {"serious", "critical"}
AXE_SEEN: dict[str, list[str]] = {}  # page name -> every violation found (any impact)
SHOTS: list[Path] = []

expect.set_options(timeout=30_000)


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    return {
        **browser_type_launch_args,
        "executable_path": os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"),
        "args": CHROMIUM_ARGS,
    }


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args: dict[str, Any]) -> dict[str, Any]:
    # A viewer far from UTC, so the pages must show local times.
    return {
        **browser_context_args,
        "timezone_id": "Europe/Berlin",
        "locale": "en-GB",
        "viewport": {"width": 1100, "height": 760},
    }


@pytest.fixture(scope="session")
def e2e_simulator() -> Iterator[DokploySimulator]:
    sim = DokploySimulator(deploy_seconds=1.0, queue_delay=0.05).start()
    try:
        yield sim
    finally:
        sim.stop()


def database_url() -> str:
    """The live test database as a URL, so the worker cluster opens the very same one."""
    config = connection.settings_dict
    if config["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{config['NAME']}"
    user = config.get("USER") or ""
    password = f":{config['PASSWORD']}" if config.get("PASSWORD") else ""
    host = config.get("HOST") or "127.0.0.1"
    port = config.get("PORT") or 5432
    return f"postgres://{user}{password}@{host}:{port}/{config['NAME']}"


@pytest.fixture(scope="session")
def worker_cluster(
    django_db_setup: None,
    django_db_blocker: Any,
    e2e_simulator: DokploySimulator,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[subprocess.Popen[bytes]]:
    """`manage.py qcluster` on the test database, talking to the simulator."""
    assert django_settings.SETTINGS_MODULE == "tests.e2e.settings"
    with django_db_blocker.unblock():
        url = database_url()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.e2e.settings",
        "DATABASE_URL": url,
        "DOKPLOY_URL": e2e_simulator.url,
        "DOKPLOY_API_KEY": e2e_simulator.api_key,
        "STACK_URL": e2e_simulator.stack_url_template,
        "STACK_DOMAIN": STACK_DOMAIN,
        "STACK_CHECK_DNS": "false",
        "HEALTH_INTERVAL": "0.2",
        "HEALTH_TIMEOUT": "15",
        "DEPLOY_TIMEOUT": "120",
        "LOG_LEVEL": "WARNING",
    }
    log_path = tmp_path_factory.mktemp("worker") / "qcluster.log"
    with log_path.open("wb") as log:
        cluster = subprocess.Popen(
            [sys.executable, "manage.py", "qcluster"], cwd=ROOT, env=env, stdout=log, stderr=log
        )
    try:
        with django_db_blocker.unblock():
            _wait_for_cluster(cluster, log_path)
        yield cluster
    finally:
        cluster.send_signal(signal.SIGTERM)  # the top process stops its workers
        try:
            cluster.wait(timeout=30)
        except subprocess.TimeoutExpired:
            cluster.kill()
            cluster.wait(timeout=10)


def _wait_for_cluster(cluster: subprocess.Popen[bytes], log_path: Path) -> None:
    from django_q.status import Stat

    end = time.monotonic() + 60
    while not Stat.get_all():
        if cluster.poll() is not None or time.monotonic() > end:
            raise RuntimeError(f"the worker cluster did not start:\n{log_path.read_text()}")
        time.sleep(0.2)


@pytest.fixture(autouse=True)
def portal(
    live_server: Any,
    settings: Any,
    e2e_simulator: DokploySimulator,
    worker_cluster: subprocess.Popen[bytes],
    transactional_db: None,
) -> Iterator[Any]:
    """The live server pointed at the simulator the worker uses; every test starts clean."""
    assert e2e_simulator.wait_idle(timeout=60), "a simulated deployment is still running"
    e2e_simulator.reset()
    e2e_simulator.deploy_seconds = 1.0
    settings.DOKPLOY_SIMULATED = True
    settings.DOKPLOY_URL = e2e_simulator.url
    settings.DOKPLOY_API_KEY = e2e_simulator.api_key
    settings.STACK_URL = e2e_simulator.stack_url_template
    settings.STACK_DOMAIN = STACK_DOMAIN
    yield live_server
    _settle()


def _settle() -> None:
    """Let the worker finish what the test started, so the database flush races nothing."""
    from stacks import lifecycle

    sent = DeploymentAttempt.objects.filter(
        status__in=DeploymentAttempt.ACTIVE, dispatched_at__isnull=False
    )
    end = time.monotonic() + 60
    while sent.exists():
        for attempt in sent.filter(cancel_requested=False):
            lifecycle.cancel_attempt(attempt)
        assert time.monotonic() < end, "an attempt did not end"
        time.sleep(0.2)


@pytest.fixture(scope="session")
def shots_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    wanted = os.environ.get("SCREENSHOTS_DIR")
    folder = Path(wanted) if wanted else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


class CspWatch:
    """Every Content Security Policy violation the browser reports on the portal's pages.

    Chromium reports each one on the console ("Refused to apply inline style because it violates
    the following Content Security Policy directive ..."); pages of other origins (the OpenID
    provider's, a stack's) are not the portal's and are left out."""

    def __init__(self, page: Page, portal: str) -> None:
        self.portal = portal
        self.violations: list[str] = []
        page.on("console", self._seen)

    def _seen(self, message: ConsoleMessage) -> None:
        where = message.page.url if message.page is not None else ""
        if "Content Security Policy" in message.text and where.startswith(self.portal):
            self.violations.append(f"{where}: {message.text}")


class Visit:
    """What every test does on a page: sign in, and check (and photograph) what it sees."""

    def __init__(self, page: Page, base: str, settings: Any, shots: Path) -> None:
        self.page = page
        self.base = base
        self.settings = settings
        self.shots = shots
        self.axe = Axe()
        self.csp = CspWatch(page, base)

    def url(self, path: str) -> str:
        return f"{self.base}{path}"

    def go(self, path: str) -> Page:
        self.page.goto(self.url(path))
        return self.page

    def nav(self, name: str) -> None:
        """Follow a link of the main navigation, which every page has."""
        self.page.get_by_role("navigation", name="Main").get_by_role("link", name=name).click()

    def sign_in(self, username: str) -> None:
        """Through the local "sign in as" form, which exists only with DEBUG on."""
        self.settings.DEBUG = True
        try:
            self.go("/sign-in")
            self.page.get_by_label("Username").fill(username)
            self.page.get_by_role("button", name="Sign in as this user").click()
            expect(self.page.locator(".who")).to_have_text(username)
        finally:
            self.settings.DEBUG = False

    def check(self, name: str, *, photo: bool = False) -> None:
        """No Content Security Policy violation so far, and axe-core in the light and the dark
        scheme: no serious or critical violation."""
        assert self.csp.violations == [], name
        for scheme in ("light", "dark"):
            self.page.emulate_media(color_scheme=scheme)
            results = self.axe.run(self.page)
            violations = results.response["violations"]
            AXE_SEEN[f"{name} ({scheme})"] = [f"{v['id']} [{v['impact']}]" for v in violations]
            bad = [v for v in violations if v["impact"] in BAD_IMPACTS]
            assert not bad, f"{name} ({scheme}): {results.generate_report()}"
            if photo:
                path = self.shots / f"{name}-{scheme}.png"
                self.page.screenshot(path=str(path), full_page=True, animations="disabled")
                SHOTS.append(path)
        self.page.emulate_media(color_scheme="light")


@pytest.fixture
def visit(page: Page, portal: Any, settings: Any, shots_dir: Path) -> Iterator[Visit]:
    visit = Visit(page, portal.url, settings, shots_dir)
    yield visit
    assert visit.csp.violations == [], "Content Security Policy violations on the portal's pages"


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not AXE_SEEN:
        return
    write = terminalreporter.write_line
    write(f"axe-core: {len(AXE_SEEN)} page views checked (light and dark)")
    for name, found in sorted(AXE_SEEN.items()):
        write(f"  {name}: {', '.join(found) if found else 'no violations'}")
    if SHOTS:
        write(f"screenshots: {len(SHOTS)} in {SHOTS[0].parent}")


def run(username: str, kind: str = "create") -> DeploymentAttempt:
    """Request an attempt and run it here, to the end."""
    user = User.objects.filter(username=username).first() or User.objects.create_user(username)
    attempt = lifecycle.request_attempt(user, kind, dispatch=False)
    pipeline.run_attempt(attempt.pk)
    attempt.refresh_from_db()
    return attempt


def open_staff_tab(browser: Browser, base_url: str, *, width: int = 1280) -> BrowserContext:
    """A staff member (superuser "olga") signed in to the admin, in a fresh browser context."""
    from django.contrib.auth.models import User

    User.objects.create_superuser("olga", "olga@example.com", "correct-horse-battery")
    context = browser.new_context(viewport={"width": width, "height": 900}, locale="en-GB")
    page = context.new_page()
    page.goto(f"{base_url}/admin/login/")
    page.fill("#id_username", "olga")
    page.fill("#id_password", "correct-horse-battery")
    page.click("input[type=submit]")
    expect(page.locator("#site-name")).to_be_visible()
    return context
