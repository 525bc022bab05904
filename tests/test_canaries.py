"""Canary secrets: with a canary as the Dokploy API key and as the OIDC client secret, the
failure scenarios and the SSO flow run for real, and the canaries are then looked for
everywhere the portal writes: every log record at every level (as both formatters write it),
every page and error page (headers included; the admin's pages on every attempt, call, step
and staff action), every table of the database with every encoded value decoded (django-q2's
pickled task arguments and results, its signed queue payloads, sessions, the database cache),
and Redis when it is the cache and the broker.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django_q.conf import Conf
from mozilla_django_oidc import auth as oidc_auth

from stacks.dokploy.simulator import trpc_error_body
from stacks.models import DeploymentAttempt, StaffAction
from stacks.redaction import register_secret
from tests import canaries
from tests.logs import every_record, written
from tests.patterns import admin_urls
from tests.test_oidc import METADATA, sign_in, sso  # noqa: F401 (the fixture)

DOKPLOY_CANARY = "canary-dokploy-key-5d0e7b21c9f3"
OIDC_CANARY = "canary-oidc-secret-93ab1f47e2d8"
CANARIES = (DOKPLOY_CANARY, OIDC_CANARY)
STAFF = ["portal-staff"]  # a staff group of tests.test_oidc's provider

Status = DeploymentAttempt.Status
pytestmark = pytest.mark.urls("tests.urls_failing")


class Seen:
    """Everything the portal wrote or showed during a test."""

    def __init__(self) -> None:
        self.pages: dict[str, str] = {}

    def page(self, what: str, response: Any) -> Any:
        self.pages[what] = response.serialize_headers().decode() + "\n" + _body(response)
        return response


def _body(response: Any) -> str:
    if getattr(response, "streaming", False):
        return b"".join(response.streaming_content).decode(errors="replace")
    return str(response.content.decode(errors="replace"))


def assert_no_canary_anywhere(seen: Seen, records: list[Any]) -> None:
    database = canaries.database()
    store = canaries.redis_store()
    places = {
        "log lines": "\n".join(written(records)),
        "log messages": "\n".join(record.getMessage() for record in records),
        "database": database.text,
        "redis": store.text,
        **seen.pages,
    }
    for canary in CANARIES:
        assert [where for where, text in places.items() if canary in text] == []


def signed_in(user: User) -> Client:
    client = Client(raise_request_exception=False)
    client.force_login(user)
    return client


def ask(client: Client, seen: Seen, who: str, action: str = "create") -> DeploymentAttempt:
    """Press a stack button as `who`; with the inline task cluster the attempt runs to its end."""
    seen.page(f"{who} {action}", client.post(f"/stack/{action}", {"key": str(uuid.uuid4())}))
    attempt = DeploymentAttempt.objects.filter(stack__username=who).order_by("-pk").first()
    assert attempt is not None
    return attempt


def person(name: str) -> tuple[User, Client]:
    user = User.objects.create_user(name)
    return user, signed_in(user)


@pytest.fixture
def canary_key(dokploy, settings):
    """The simulator expects the canary as its key, and the portal sends it (the client
    registers it as a secret, as it does with every key it reads)."""
    dokploy.api_key = DOKPLOY_CANARY
    settings.DOKPLOY_API_KEY = DOKPLOY_CANARY
    settings.BREAKER_RESET = 3600.0  # an opened breaker stays open for the rest of the test
    return dokploy


def test_the_dokploy_key_shows_nowhere_after_every_failure(canary_key, settings, monkeypatch):
    dokploy = canary_key
    seen = Seen()
    staff = User.objects.create_superuser("olga", "olga@example.com", "correct-horse")
    as_staff = signed_in(staff)
    outcomes: dict[str, tuple[str, str]] = {}

    with every_record() as records:
        # Two 503s on application.create, retried: it still succeeds.
        _, ana = person("ana")
        dokploy.fail("application.create", times=2, status=503)
        outcomes["ana"] = _outcome(ask(ana, seen, "ana"))

        # Dokploy refuses the key (401): the portal sent the canary, Dokploy expected another.
        _, ben = person("ben")
        dokploy.api_key = "the-key-dokploy-has-now-4a1b"
        outcomes["ben"] = _outcome(ask(ben, seen, "ben"))
        dokploy.api_key = DOKPLOY_CANARY

        # The deployment fails with the key in its build log, and is rolled back.
        _, cleo = person("cleo")
        dokploy.fail_deploy("opencode-cleo", message=f"docker login -p {DOKPLOY_CANARY} failed")
        outcomes["cleo"] = _outcome(ask(cleo, seen, "cleo"))

        # Dokploy echoes the key in its error body.
        _, dan = person("dan")
        echoed = trpc_error_body(400, f"Invalid API key {DOKPLOY_CANARY} for this org", None)
        dokploy.fail("project.create", status=400, body={**echoed, "key": DOKPLOY_CANARY})
        outcomes["dan"] = _outcome(ask(dan, seen, "dan"))

        # domain.create keeps failing: the breaker opens, and the next person finds it open.
        _, eve = person("eve")
        dokploy.fail("domain.create", times=50, status=503)
        outcomes["eve"] = _outcome(ask(eve, seen, "eve"))
        _, finn = person("finn")
        outcomes["finn"] = _outcome(ask(finn, seen, "finn"))

        # Staff act: retry dan's attempt, reset the breaker, both with a reason.
        _staff_action(as_staff, seen, "deploymentattempt", _attempt_of("dan").pk, "retry")
        _staff_action(as_staff, seen, "breakerstate", "dokploy", "reset")
        # A task left in the broker, as a worker would receive it (signed and pickled).
        monkeypatch.setattr(Conf, "SYNC", False)
        _, gus = person("gus")
        ask(gus, seen, "gus")
        monkeypatch.setattr(Conf, "SYNC", True)

        for name, client in (("ana", ana), ("cleo", cleo), ("dan", dan), ("eve", eve)):
            _every_page_of(client, name, seen)
        for url in admin_urls():
            seen.page(url, as_staff.get(url))
        _error_pages(ana, seen)

    assert outcomes == {
        "ana": ("succeeded", ""),
        "ben": ("failed", "UNAUTHORIZED"),
        "cleo": ("rolled_back", "DEPLOY_FAILED"),
        "dan": ("rolled_back", "BAD_REQUEST"),
        "eve": ("failed", "BREAKER_OPEN"),
        "finn": ("failed", "BREAKER_OPEN"),
    }
    assert "Invalid API key [redacted] for this org" in _attempt_of("dan").error_message
    assert StaffAction.objects.count() == 2
    assert len(seen.pages) > 150
    assert_no_canary_anywhere(seen, records)
    _assert_it_looked_inside_the_encodings()


def _outcome(attempt: DeploymentAttempt) -> tuple[str, str]:
    attempt.refresh_from_db()
    return attempt.status, attempt.error_code


def _attempt_of(username: str) -> DeploymentAttempt:
    return DeploymentAttempt.objects.filter(stack__username=username).earliest("pk")


def _staff_action(client: Client, seen: Seen, model: str, pk: object, action: str) -> None:
    url = f"/admin/stacks/{model}/"
    chosen = {"action": action, "_selected_action": [pk]}
    seen.page(f"{model} {action} confirmation", client.post(url, chosen))
    done = client.post(url, {**chosen, "confirm": "yes", "reason": f"{action}: the canary test"})
    seen.page(f"{model} {action} done", done)
    assert done.status_code == 302


def _every_page_of(client: Client, name: str, seen: Seen) -> None:
    for url in ("/", "/stack/", "/stack/delete", "/history/"):
        seen.page(f"{name} {url}", client.get(url, follow=True))
    for attempt in DeploymentAttempt.objects.filter(stack__username=name):
        for url in (f"/attempts/{attempt.pk}/", f"/attempts/{attempt.pk}/cancel"):
            seen.page(f"{name} {url}", client.get(url, follow=True))
            seen.page(f"{name} {url} htmx", client.get(url, HTTP_HX_REQUEST="true"))


def _error_pages(client: Client, seen: Seen) -> None:
    seen.page("404", client.get("/attempts/999999/"))
    seen.page("405", client.get("/stack/create"))
    seen.page("500", client.get("/boom"))
    seen.page("CSRF", Client(enforce_csrf_checks=True).post("/sign-out"))
    seen.page("JSON", client.get("/healthz"))


def _assert_it_looked_inside_the_encodings() -> None:
    database = canaries.database()
    store = canaries.redis_store()
    opened = database.opened + store.opened
    assert opened["base64 pickle"] > 0  # task arguments and results (and the database cache)
    assert opened["signed pickle"] == 1  # gus's task, waiting in the broker
    assert opened["session"] > 0
    text = database.text + store.text
    assert "'func': 'stacks.tasks.run_attempt'" in text  # inside the signed payload
    assert "AttemptStatus.ROLLED_BACK" in text  # a task's pickled result


# --- The OIDC client secret -------------------------------------------------------------------


@pytest.fixture
def canary_secret(sso, settings):  # noqa: F811
    settings.OIDC_CLIENT_SECRET = settings.OIDC_RP_CLIENT_SECRET = OIDC_CANARY
    register_secret(OIDC_CANARY)  # as the settings do with the secret they read
    return sso


def test_the_oidc_client_secret_shows_nowhere_after_the_sso_flow(canary_secret, db, monkeypatch):
    provider = canary_secret
    seen = Seen()
    browser = Client(raise_request_exception=False)

    with every_record() as records:
        seen.page("start", browser.get("/sign-in"))
        seen.page(
            "staff signs in",
            sign_in(
                browser, provider, "sub-ola", preferred_username="ola", groups=["portal-staff"]
            ),
        )
        for url in ("/", "/history/", "/admin/", "/admin/auth/user/", "/admin/stacks/"):
            seen.page(url, browser.get(url))
        seen.page("sign out", browser.post("/oidc/logout/"))
        seen.page("refused", sign_in(browser, provider, "sub-root", preferred_username="root"))
        seen.page("forged state", browser.get("/oidc/callback/", {"code": "c", "state": "x"}))
        # The provider refuses the client, quoting the secret back.
        monkeypatch.setattr(oidc_auth.requests, "post", _echoing_token_endpoint)
        echo = sign_in(browser, provider, "sub-pia", preferred_username="pia")
        seen.page("provider echoes", echo)

    assert [request["auth"].password for request in provider.token_requests] == [OIDC_CANARY] * 2
    assert echo.status_code == 502  # the "Sign-in did not finish" page, without the quote
    assert "Sign-in did not finish" in echo.content.decode()
    assert User.objects.get(username="ola").is_staff is True
    assert_no_canary_anywhere(seen, records)


class _Refusal:
    status_code = 401
    url = METADATA.token_endpoint
    headers = {"content-type": "application/json"}
    text = f'{{"error": "invalid_client", "error_description": "bad secret {OIDC_CANARY}"}}'


def _echoing_token_endpoint(url: str, **kwargs: Any) -> _Refusal:
    return _Refusal()
