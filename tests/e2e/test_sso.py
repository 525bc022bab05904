"""Single sign-on end to end: real Chromium, a real OpenID provider, the portal's live server.

The provider is the npm package oidc-provider (tests/oidc_provider/, installed by scripts/test
with `npm ci`), run by Node on loopback for this module. Its accounts are read from a JSON file
at every sign-in, so each test chooses the claims (sub, email, preferred_username, groups).
The portal and the provider get different host names (127.0.0.1 and localhost), so their cookies
stay apart as they would on two real domains.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import httpx
import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Browser, Locator, Page, Route, expect

from portal import oidc
from stacks.models import OIDCIdentity, Stack
from tests.e2e.conftest import CspWatch

pytestmark = pytest.mark.e2e

PROVIDER_DIR = Path(__file__).resolve().parent.parent / "oidc_provider"
PROVIDER_PORTS = range(4030, 4040)
CLIENT_ID = "ai-stack-portal"
CLIENT_SECRET = "e2e-client-secret-4b1d0c"


def _missing(what: str) -> NoReturn:
    # CI must run these tests; elsewhere they are skipped with the way to set them up.
    message = f"{what}: run scripts/test, which sets it up"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session", autouse=True)
def _sync_playwright_with_django() -> Iterator[None]:
    # After every call, Playwright's sync API leaves its event loop marked as running in this
    # thread, until its session-wide driver stops; Django's ORM refuses to run beside a running
    # loop unless told that this is deliberate. Hence session scope: the browser tests after
    # these and the test database's teardown need it too.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        yield


@dataclass
class Provider:
    issuer: str
    accounts_file: Path
    log_file: Path

    def set_accounts(self, accounts: dict[str, dict[str, Any]]) -> None:
        self.accounts_file.write_text(json.dumps(accounts))

    def log(self) -> str:
        return self.log_file.read_text(errors="replace")


def _free_port() -> int:
    for port in PROVIDER_PORTS:
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port for the OpenID provider in {PROVIDER_PORTS}")


@pytest.fixture(scope="module")
def provider(live_server, tmp_path_factory) -> Iterator[Provider]:
    node = shutil.which("node")
    if node is None or not (PROVIDER_DIR / "node_modules" / "oidc-provider").is_dir():
        _missing("Node.js and tests/oidc_provider/node_modules are needed")
    portal_host = live_server.thread.host
    host = "localhost" if portal_host != "localhost" else "127.0.0.1"
    port = _free_port()
    folder = tmp_path_factory.mktemp("oidc-provider")
    provider = Provider(
        issuer=f"http://{host}:{port}",
        accounts_file=folder / "accounts.json",
        log_file=folder / "provider.log",
    )
    provider.set_accounts({})
    env = {
        **os.environ,
        "PORT": str(port),
        "HOST": host,
        "CLIENT_ID": CLIENT_ID,
        "CLIENT_SECRET": CLIENT_SECRET,
        "REDIRECT_URIS": f"{live_server.url}/oidc/callback/",
        "POST_LOGOUT_REDIRECT_URIS": f"{live_server.url}/",
        "ACCOUNTS_FILE": str(provider.accounts_file),
    }
    with provider.log_file.open("wb") as log:
        process = subprocess.Popen(
            [node, "provider.mjs"], cwd=PROVIDER_DIR, env=env, stdout=log, stderr=log
        )
    try:
        _wait_until_ready(provider, process)
        yield provider
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        oidc.discover.cache_clear()


def _wait_until_ready(provider: Provider, process: subprocess.Popen[bytes]) -> None:
    url = f"{provider.issuer}/.well-known/openid-configuration"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"the OpenID provider did not start:\n{provider.log()}")


@pytest.fixture
def sso(provider: Provider, settings) -> Provider:
    settings.OIDC_ISSUER = provider.issuer
    settings.OIDC_ENABLED = True
    settings.OIDC_CLIENT_ID = settings.OIDC_RP_CLIENT_ID = CLIENT_ID
    settings.OIDC_CLIENT_SECRET = settings.OIDC_RP_CLIENT_SECRET = CLIENT_SECRET
    settings.OIDC_STAFF_GROUPS = ["portal-staff"]
    settings.AUTHENTICATION_BACKENDS = ["portal.oidc.PasswordBackend", "portal.oidc.OIDCBackend"]
    provider.set_accounts({})
    return provider


def _loopback_only(route: Route) -> None:
    # The provider's default pages link web fonts; nothing may leave this machine.
    host = route.request.url.split("/")[2].rsplit(":", 1)[0]
    if host in {"127.0.0.1", "localhost"}:
        route.continue_()
    else:
        route.abort()


@pytest.fixture
def page(browser: Browser, live_server) -> Iterator[Page]:
    """A fresh browser context per test that reaches nothing but this machine; the portal's
    pages in it report no Content Security Policy violation."""
    context = browser.new_context()
    context.set_default_timeout(15_000)
    context.route("**/*", _loopback_only)
    tab = context.new_page()
    csp = CspWatch(tab, live_server.url)
    yield tab
    context.close()
    assert csp.violations == []


# --- Steps a person takes ---------------------------------------------------------------------


def sign_in(page: Page, portal: str, sub: str) -> None:
    """Start at the portal's sign-in URL and sign in at the provider as the account `sub`."""
    page.goto(f"{portal}/oidc/authenticate/")
    page.fill("input[name=login]", sub)
    page.fill("input[name=password]", "any password")
    page.click("button[type=submit]")


def sign_out(page: Page) -> None:
    """The Sign out button in the header of every portal page."""
    header(page).get_by_role("button", name="Sign out").click()


def header(page: Page) -> Locator:
    return page.locator("header")


# --- The flows --------------------------------------------------------------------------------


def test_sign_in_through_the_provider_and_sign_out_of_both(page, live_server, sso):
    sso.set_accounts(
        {
            "sub-ada-7": {
                "preferred_username": "Adalind",
                "email": "adalind@example.com",
                "groups": [],
            }
        }
    )

    sign_in(page, live_server.url, "sub-ada-7")

    expect(page).to_have_url(f"{live_server.url}/")
    expect(header(page)).to_contain_text("adalind")
    user = User.objects.get()
    assert (user.username, user.email, user.is_staff) == ("adalind", "adalind@example.com", False)
    assert OIDCIdentity.objects.get().subject == "sub-ada-7"

    page.get_by_role("button", name="Create my AI stack").click()
    expect(page).to_have_title(re.compile(r"^Ready · Create #"), timeout=60_000)
    assert Stack.objects.get().owner == user

    sign_out(page)
    page.wait_for_url(f"{sso.issuer}/session/end**")
    page.get_by_role("button", name="Yes, sign me out").click()

    expect(page).to_have_url(f"{live_server.url}/")
    expect(header(page)).not_to_contain_text("adalind")
    # The provider's session ended too: signing in asks who you are again.
    page.goto(f"{live_server.url}/oidc/authenticate/")
    expect(page.locator("input[name=login]")).to_be_visible()


def test_the_same_sub_with_a_changed_email_is_the_same_account(page, live_server, sso):
    sso.set_accounts({"sub-bo-1": {"preferred_username": "bodil", "email": "bodil@old.example"}})
    sign_in(page, live_server.url, "sub-bo-1")
    expect(header(page)).to_contain_text("bodil")
    first = User.objects.get()
    page.context.clear_cookies()

    sso.set_accounts({"sub-bo-1": {"preferred_username": "bodil", "email": "bodil@new.example"}})
    sign_in(page, live_server.url, "sub-bo-1")

    expect(page).to_have_url(f"{live_server.url}/")
    expect(header(page)).to_contain_text("bodil")
    again = User.objects.get()
    assert (again.pk, again.username, again.email) == (first.pk, "bodil", "bodil@new.example")
    assert OIDCIdentity.objects.count() == 1


def test_a_refused_claim_shows_why_and_creates_nothing(page, live_server, sso):
    sso.set_accounts({"sub-root-9": {"preferred_username": "admin", "email": "it@example.com"}})

    with page.expect_response(lambda response: "/oidc/callback/" in response.url) as callback:
        sign_in(page, live_server.url, "sub-root-9")

    assert callback.value.status == 403
    expect(page.get_by_role("heading", level=1)).to_have_text("This username cannot be used here")
    expect(page.locator("main")).to_contain_text("“admin” is reserved")
    expect(page.locator("main")).to_contain_text("Ask the portal's administrators")
    expect(header(page)).not_to_contain_text("admin")
    assert User.objects.count() == 0
    assert OIDCIdentity.objects.count() == 0


def test_a_staff_group_member_reaches_the_admin(page, live_server, sso):
    sso.set_accounts(
        {"sub-cy-3": {"preferred_username": "cyrano", "groups": ["dev", "portal-staff"]}}
    )
    sign_in(page, live_server.url, "sub-cy-3")
    expect(header(page)).to_contain_text("cyrano")

    page.goto(f"{live_server.url}/admin/")

    expect(page).to_have_url(f"{live_server.url}/admin/")
    expect(page.get_by_role("heading", name="Site administration")).to_be_visible()
    assert User.objects.get().is_staff is True


def test_a_member_of_a_look_alike_group_does_not_reach_the_admin(page, live_server, sso):
    sso.set_accounts(
        {"sub-di-4": {"preferred_username": "dorit", "groups": ["portal-staff-readonly"]}}
    )
    sign_in(page, live_server.url, "sub-di-4")
    expect(header(page)).to_contain_text("dorit")

    page.goto(f"{live_server.url}/admin/")

    expect(page).to_have_url(f"{live_server.url}/admin/login/?next=/admin/")
    expect(page.locator("input[name=password]")).to_be_visible()
    assert User.objects.get().is_staff is False
