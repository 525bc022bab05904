"""Request limits against abuse (portal/ratelimits.py): sign-in, passwords, a stack's actions and
every POST, each answered by the 429 page; counted per person, else per client address."""

from __future__ import annotations

import re
import uuid

import pytest
import time_machine
from django.contrib.auth.models import User
from django.core.exceptions import ImproperlyConfigured
from django.test import Client, RequestFactory

from portal import oidc
from portal.ratelimits import client_ip
from portal.settings import envrate
from stacks.models import DeploymentAttempt, Stack
from tests.pages import attempt, deployed_stack
from tests.test_oidc import METADATA

Status = DeploymentAttempt.Status
NOW = "2026-03-02 09:00:00+00:00"


def signed_in(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def key() -> dict[str, str]:
    return {"key": str(uuid.uuid4())}


def assert_too_many(response) -> int:
    """The 429 page in the portal's look; returns the seconds it asks to wait."""
    html = response.content.decode()
    assert response.status_code == 429
    assert '<h1 id="error-heading">Too many requests</h1>' in html
    assert "Nothing was changed." in html
    assert 'class="topbar"' in html
    seconds = int(response["Retry-After"])
    assert 1 <= seconds <= 3600
    wait = re.search(r"Please wait (.+?) and try again\.", html)
    assert wait is not None
    return seconds


# --- Sign-in --------------------------------------------------------------------------------


@time_machine.travel(NOW, tick=False)
def test_sign_in_is_limited_per_client_address(client, db, settings):
    settings.RATELIMIT_SIGN_IN = "3/m"

    answers = [client.get("/sign-in").status_code for _ in range(3)]
    refused = client.get("/sign-in")
    elsewhere = client.get("/sign-in", REMOTE_ADDR="198.51.100.20")

    assert answers == [200, 200, 200]
    assert_too_many(refused)
    assert elsewhere.status_code == 200


@time_machine.travel(NOW, tick=False)
def test_one_sign_in_limit_covers_sso_the_local_form_and_the_admin(
    client, db, settings, monkeypatch
):
    settings.RATELIMIT_SIGN_IN = "4/m"
    settings.OIDC_ENABLED = True
    settings.OIDC_ISSUER = METADATA.issuer
    settings.OIDC_CLIENT_ID = settings.OIDC_RP_CLIENT_ID = "ai-stack-portal"
    monkeypatch.setattr(oidc, "discover", lambda issuer, **kwargs: METADATA)

    answers = [
        client.get("/sign-in").status_code,
        client.get("/oidc/authenticate/").status_code,
        client.get("/oidc/callback/", {"code": "c", "state": "forged"}).status_code,
        client.get("/admin/login/").status_code,
    ]

    assert answers == [302, 302, 400, 200]
    for url in ("/sign-in", "/oidc/authenticate/", "/oidc/callback/", "/admin/login/"):
        assert_too_many(client.get(url))


def test_the_window_passes_and_sign_in_opens_again(client, db, settings):
    settings.RATELIMIT_SIGN_IN = "1/m"
    with time_machine.travel(NOW, tick=False) as clock:
        client.get("/sign-in")
        seconds = assert_too_many(client.get("/sign-in"))
        clock.shift(seconds - 1)
        assert_too_many(client.get("/sign-in"))
        clock.shift(1)  # as long as Retry-After said
        assert client.get("/sign-in").status_code == 200


@time_machine.travel(NOW, tick=False)
def test_admin_passwords_are_limited_per_address_and_per_username(client, db, settings):
    settings.RATELIMIT_PASSWORD = "2/m"
    User.objects.create_superuser("olga", "olga@example.com", "correct-horse")
    wrong = {"username": "olga", "password": "guess", "next": "/admin/"}
    right = {**wrong, "password": "correct-horse"}

    guesses = [client.post("/admin/login/", wrong).status_code for _ in range(2)]
    same_address = client.post("/admin/login/", {**wrong, "username": "root"})
    same_username = Client(REMOTE_ADDR="198.51.100.30").post("/admin/login/", right)
    fresh = Client(REMOTE_ADDR="198.51.100.31").post("/admin/login/", {**right, "username": "x"})

    assert guesses == [200, 200]  # the form again, with its error
    assert_too_many(same_address)
    assert_too_many(same_username)
    assert fresh.status_code == 200  # a wrong username, from elsewhere: the form again


# --- A stack's actions ------------------------------------------------------------------------


@time_machine.travel(NOW, tick=False)
def test_stack_actions_are_limited_per_person_over_and_above_the_deployment_limit(
    alice, bob, settings
):
    settings.RATELIMIT_ACTIONS = "3/h"
    settings.DEPLOY_RATE_LIMIT = 100
    stack = deployed_stack(alice)
    failed = attempt(stack, Status.FAILED)
    as_alice = signed_in(alice)

    asked = [
        as_alice.post("/stack/redeploy", key()).status_code,
        as_alice.post(f"/attempts/{failed.pk}/retry", key()).status_code,
        as_alice.post("/stack/stop", key()).status_code,
    ]
    before = DeploymentAttempt.objects.count()
    refused = [
        as_alice.post("/stack/start", key()),
        as_alice.post("/stack/delete", key()),
        as_alice.post(f"/attempts/{failed.pk}/cancel"),
    ]

    assert asked == [302, 302, 302]
    for response in refused:
        assert_too_many(response)
    assert DeploymentAttempt.objects.count() == before
    assert as_alice.get("/stack/delete").status_code == 200  # looking is not counted
    # Another person from the same address has limits of their own.
    assert signed_in(bob).post("/stack/create", key()).status_code == 302
    assert Stack.objects.filter(owner=bob).exists()


# --- Every POST -------------------------------------------------------------------------------


@time_machine.travel(NOW, tick=False)
def test_every_post_is_limited_the_admin_and_unknown_addresses_included(alice, settings):
    settings.RATELIMIT_POST = "2/m"
    staff = User.objects.create_superuser("olga", "olga@example.com", "correct-horse")
    as_staff = signed_in(staff)
    stack = deployed_stack(alice)

    first = as_staff.post("/no-such-page")
    second = as_staff.post(
        "/admin/stacks/stack/", {"action": "redeploy", "_selected_action": [stack.pk]}
    )
    third = as_staff.post(
        "/admin/stacks/stack/",
        {"action": "redeploy", "_selected_action": [stack.pk], "confirm": "yes", "reason": "r"},
    )

    assert (first.status_code, second.status_code) == (404, 200)
    assert_too_many(third)
    assert not DeploymentAttempt.objects.exists()
    assert as_staff.get("/admin/stacks/stack/").status_code == 200  # a GET is never counted


@time_machine.travel(NOW, tick=False)
def test_signed_out_posts_count_per_address(client, db, settings):
    settings.RATELIMIT_POST = "1/m"

    assert client.post("/sign-out").status_code == 302
    assert_too_many(client.post("/sign-out"))
    assert Client(REMOTE_ADDR="198.51.100.40").post("/sign-out").status_code == 302


def test_limits_can_be_switched_off(client, db, settings):
    settings.RATELIMIT_ENABLE = False
    settings.RATELIMIT_SIGN_IN = "1/m"

    assert [client.get("/sign-in").status_code for _ in range(3)] == [200, 200, 200]


# --- The client address -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("proxies", "forwarded", "address"),
    [
        ([], "203.0.113.9", "10.0.0.2"),  # no proxy: the header is a claim, the peer counts
        (["10.0.0.2"], "203.0.113.9", "203.0.113.9"),
        (["10.0.0.2"], "1.2.3.4, 203.0.113.9", "203.0.113.9"),  # the client wrote 1.2.3.4
        (["10.0.0.0/24"], "1.2.3.4, 203.0.113.9, 10.0.0.7", "203.0.113.9"),  # two proxies
        (["10.0.0.2"], "2001:db8::5", "2001:db8::5"),
        (["10.0.0.2"], "", "10.0.0.2"),  # the proxy did not append: the request began there
        (["10.0.0.2"], "not-an-address", "10.0.0.2"),
        (["10.0.0.2"], "203.0.113.9\r\nX-Evil: 1", "10.0.0.2"),
        (["192.0.2.1"], "203.0.113.9", "10.0.0.2"),  # from a proxy nobody declared
    ],
)
def test_the_client_address_believes_only_the_trusted_proxies(
    settings, proxies, forwarded, address
):
    settings.TRUSTED_PROXIES = proxies
    request = RequestFactory().get("/", REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR=forwarded)

    assert client_ip(request) == address


@time_machine.travel(NOW, tick=False)
def test_behind_a_proxy_clients_are_told_apart_and_cannot_dodge_by_spoofing(client, db, settings):
    settings.TRUSTED_PROXIES = ["10.0.0.2"]
    settings.RATELIMIT_SIGN_IN = "1/m"
    proxy = {"REMOTE_ADDR": "10.0.0.2"}

    first = client.get("/sign-in", HTTP_X_FORWARDED_FOR="203.0.113.9", **proxy)
    spoofed = client.get("/sign-in", HTTP_X_FORWARDED_FOR="1.1.1.1, 203.0.113.9", **proxy)
    other = client.get("/sign-in", HTTP_X_FORWARDED_FOR="203.0.113.10", **proxy)

    assert (first.status_code, other.status_code) == (200, 200)
    assert_too_many(spoofed)


def test_an_empty_remote_address_is_a_configuration_error(settings):
    request = RequestFactory().get("/", REMOTE_ADDR="")

    with pytest.raises(ImproperlyConfigured, match="Unix socket"):
        client_ip(request)


# --- Settings ---------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["30/m", "5/10m", "100/h", "1/s", "2000/d"])
def test_rates_are_read_like_django_ratelimit(monkeypatch, value):
    monkeypatch.setenv("RATELIMIT_X", value)
    assert envrate("RATELIMIT_X", "1/m") == value


@pytest.mark.parametrize("value", ["ten/m", "0/m", "5/0m", "5", "5/minute", "-1/m"])
def test_a_bad_rate_names_the_variable(monkeypatch, value):
    monkeypatch.setenv("RATELIMIT_X", value)
    with pytest.raises(ImproperlyConfigured, match="RATELIMIT_X must be a rate such as 30/m"):
        envrate("RATELIMIT_X", "1/m")
