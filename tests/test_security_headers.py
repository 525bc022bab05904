"""Headers and cookies on every kind of page, and no inline script or style anywhere.

Every answer carries the Content Security Policy (our own scripts and styles only, no framing),
HSTS on https, nosniff, the referrer policy, X-Frame-Options and the opener policy: pages,
fragments, redirects, JSON, the error pages (403, 404, 405, 429, 500, CSRF) and the admin.
The policy allows no inline code, so no template (the admin's as rendered included) has any.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from stacks.models import (
    BreakerState,
    DeploymentAttempt,
    DokployCall,
    ReconcileFinding,
    ReconcileRun,
    StaffAction,
)
from tests.pages import attempt, deployed_stack, step
from tests.patterns import admin_urls, project_patterns

Status = DeploymentAttempt.Status
HTMX: dict[str, Any] = {"HTTP_HX_REQUEST": "true"}

POLICY = {
    "default-src": ["'none'"],
    "script-src": ["'self'"],
    "style-src": ["'self'"],
    "img-src": ["'self'"],
    "connect-src": ["'self'"],
    "form-action": ["'self'"],
    "frame-ancestors": ["'none'"],
    "base-uri": ["'none'"],
}
HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Strict-Transport-Security": "max-age=31536000; includeSubDomains; preload",
}


def policy_of(response: Any) -> dict[str, list[str]]:
    directives = [part.split() for part in response["Content-Security-Policy"].split(";")]
    return {name: sources for name, *sources in directives}


def assert_hardened(response: Any, what: str) -> None:
    assert policy_of(response) == POLICY, what
    assert {name: response.get(name) for name in HEADERS} == HEADERS, what


@pytest.fixture
def staff(db: None) -> User:
    return User.objects.create_superuser("olga", "olga@example.com", "correct-horse")


@pytest.fixture
def records(alice: User, staff: User) -> dict[str, Any]:
    """One of everything the admin shows, so that every admin page has something to render."""
    stack = deployed_stack(alice)
    failed = attempt(stack, Status.ROLLED_BACK, failure_phase="domain", error_code="BAD_REQUEST")
    step(failed, "project")
    step(failed, "domain", "failed", error_code="BAD_REQUEST", error_message="Domain taken")
    running = attempt(stack, Status.RUNNING, kind="redeploy")
    DokployCall.objects.create(
        endpoint="domain.create", method="POST", status_code=400, duration_ms=12, attempt=failed
    )
    BreakerState.objects.create(name="dokploy", state="open", consecutive_failures=5)
    StaffAction.objects.create(
        actor=staff,
        actor_name="olga",
        action="redeploy",
        target="alice's stack",
        stack=stack,
        outcome="done",
        reason="the image was fixed",
        batch=uuid.uuid4(),
    )
    run = ReconcileRun.objects.create(trigger="command", status="ok", finished_at=timezone.now())
    ReconcileFinding.objects.create(
        run=run, kind="orphan_project", username="ghost", project_name="ai-stack-ghost"
    )
    return {"failed": failed, "running": running}


def test_every_kind_of_answer_carries_the_policy_and_the_headers(
    client, alice, staff, records, settings
):
    settings.RATELIMIT_SIGN_IN = "1/m"
    elsewhere: dict[str, Any] = {"REMOTE_ADDR": "192.0.2.7", "secure": True}  # counted apart
    as_alice = Client()
    as_alice.force_login(alice)
    as_staff = Client()
    as_staff.force_login(staff)
    running = records["running"].pk
    answers = {
        "public page": client.get("/", secure=True),
        "signed-in page": as_alice.get("/stack/", secure=True),
        "polled fragment": as_alice.get(
            f"/attempts/{running}/", HTTP_HX_REQUEST="true", secure=True
        ),
        "redirect to sign in": client.get("/history/", secure=True),
        "htmx refusal": client.get("/history/", secure=True, **HTMX),
        "JSON refusal": client.get("/history/", HTTP_ACCEPT="application/json", secure=True),
        "JSON": client.get("/healthz", secure=True),
        "404": as_alice.get("/attempts/999999/", secure=True),
        "405": as_alice.get("/stack/create", secure=True),
        "CSRF 403": Client(enforce_csrf_checks=True).post("/sign-out", secure=True),
        "admin sign-in": client.get("/admin/login/", secure=True),
        "admin page": as_staff.get("/admin/stacks/deploymentattempt/", secure=True),
        "admin 403": as_staff.get("/admin/stacks/deploymentattempt/add/", secure=True),
        "staff page": as_staff.get("/admin/stacks/deploymentattempt/failures/", secure=True),
        "sign-in": client.get("/sign-in", **elsewhere),
        "429": client.get("/sign-in", **elsewhere),
    }
    statuses = {what: response.status_code for what, response in answers.items()}

    assert statuses == {
        "public page": 200,
        "signed-in page": 200,
        "polled fragment": 200,
        "redirect to sign in": 302,
        "htmx refusal": 403,
        "JSON refusal": 403,
        "JSON": 200,
        "404": 404,
        "405": 405,
        "CSRF 403": 403,
        "admin sign-in": 200,
        "admin page": 200,
        "admin 403": 403,
        "staff page": 200,
        "sign-in": 200,
        "429": 429,
    }
    for what, response in answers.items():
        assert_hardened(response, what)


@pytest.mark.urls("tests.urls_failing")
def test_the_500_page_carries_them_too(db):
    response = Client(raise_request_exception=False).get("/boom", secure=True)

    assert response.status_code == 500
    assert "Something went wrong on our side" in response.content.decode()
    assert_hardened(response, "500")


def test_hsts_only_over_https(client, db):
    assert "Strict-Transport-Security" not in client.get("/")


def test_with_sso_the_provider_joins_form_action_for_signing_out(client, db, settings):
    settings.OIDC_ENABLED = True
    settings.OIDC_ISSUER = "https://sso.example.test/realms/company"

    response = client.get("/")

    assert policy_of(response) == {
        **POLICY,
        "form-action": ["'self'", "https://sso.example.test"],
    }


# --- Cookies ----------------------------------------------------------------------------------


def test_session_csrf_and_message_cookies_are_secure_and_http_only(client, staff):
    form = client.get("/admin/login/", secure=True)
    signed_in = client.post(
        "/admin/login/",
        {"username": "olga", "password": "correct-horse", "next": "/admin/"},
        secure=True,
    )

    signed_out = client.post("/sign-out", secure=True)  # "You are signed out." in a cookie

    csrf = form.cookies["csrftoken"]
    session = signed_in.cookies["sessionid"]
    message = signed_out.cookies["messages"]
    assert (signed_in.status_code, signed_out.status_code) == (302, 302)
    for cookie in (csrf, session, message):
        assert (cookie["secure"], cookie["httponly"], cookie["samesite"]) == (True, True, "Lax")


def test_production_settings_hold_cookies_to_https():
    assert django_settings.DEBUG is False
    assert django_settings.SESSION_COOKIE_SECURE is True
    assert django_settings.CSRF_COOKIE_SECURE is True


# --- No inline code ---------------------------------------------------------------------------

INLINE = {
    # A data block (json_script) is not code: the policy lets the page carry it.
    "inline script": re.compile(
        r"<script(?![^>]*\bsrc=)(?![^>]*\btype=\"application/json\")[^>]*>", re.IGNORECASE
    ),
    "style element": re.compile(r"<style\b", re.IGNORECASE),
    "style attribute": re.compile(r"<[^>]+\sstyle\s*=", re.IGNORECASE),
    "event handler": re.compile(r"<[^>]+\son[a-z]+\s*=", re.IGNORECASE),
    "javascript: URL": re.compile(r"javascript:", re.IGNORECASE),
}


def inline_code(html: str) -> list[str]:
    return [what for what, pattern in INLINE.items() if pattern.search(html)]


def test_no_template_of_ours_has_inline_code():
    folder = Path(django_settings.BASE_DIR) / "templates"
    templates = sorted(folder.rglob("*.html"))

    found = {str(t.relative_to(folder)): inline_code(t.read_text()) for t in templates}

    assert len(found) > 15
    assert {name: what for name, what in found.items() if what} == {}


def test_no_rendered_page_has_inline_code(client, alice, staff, records, settings):
    """Every GET page as the person it is for: public ones signed out, alice's as alice, and
    every admin page (each object's change, history and delete pages) as staff."""
    as_alice = Client()
    as_alice.force_login(alice)
    as_staff = Client()
    as_staff.force_login(staff)
    pages: dict[str, Any] = {}
    for pattern in project_patterns():
        if pattern.namespace == "admin":
            continue
        values = {"attempt_id": str(records["failed"].pk), "action": "stop"}
        url = pattern.path(**{name: values[name] for name in pattern.params})
        pages[url] = as_alice.get(url)
        pages[f"{url} (signed out)"] = client.get(url)
        pages[f"{url} (htmx)"] = as_alice.get(url, **HTMX)
        pages[f"{url} (staff)"] = as_staff.get(url)  # staff pages outside the admin too
    for url in admin_urls():
        pages[url] = as_staff.get(url)
    settings.DEBUG = True  # the local sign-in form
    pages["/sign-in (local form)"] = client.get("/sign-in")
    settings.DEBUG = False
    settings.RATELIMIT_SIGN_IN = "1/m"
    client.get("/sign-in", REMOTE_ADDR="192.0.2.8")
    pages["429"] = client.get("/sign-in", REMOTE_ADDR="192.0.2.8")

    html = {url: r.content.decode() for url, r in pages.items() if "html" in r["Content-Type"]}
    assert pages["429"].status_code == 429
    assert len(html) > 100
    assert {url: inline_code(text) for url, text in html.items() if inline_code(text)} == {}


def test_the_inline_code_check_finds_each_kind_and_spares_data_blocks():
    pages = {
        "<script>alert(1)</script>": ["inline script"],
        '<p style="color: red">': ["style attribute"],
        "<style>p {}</style>": ["style element"],
        '<a href="#" onclick="go()">': ["event handler"],
        '<a href="javascript:go()">': ["javascript: URL"],
        '<script src="/static/js/localtime.js" defer></script>': [],
        '<script id="chart-data" type="application/json">{"points": [1, 2]}</script>': [],
    }
    assert {html: inline_code(html) for html in pages} == pages
