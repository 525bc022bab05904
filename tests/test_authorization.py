"""The authorization matrix: every URL pattern of the project, classified, each class held to
its rule by real requests.

The patterns come from walking the root URLconf (the admin included), so a view added anywhere
is in the matrix at once, and a pattern that ACCESS does not classify fails
`test_every_url_pattern_is_classified`. Classifying a new view is one line in ACCESS: a named
pattern by its name (`"metrics": Token("METRICS_TOKEN")`, `"staff-dashboard": STAFF`), or a
whole URL namespace by `"namespace:*"`, as the admin is. A new URL parameter needs a sample
value in SAMPLES.

The classes, and what every pattern in them must do:

- PUBLIC: anyone may GET it, signed in or not.
- SIGN_OUT: a POST ends the session; a GET never does.
- SIGNED_IN: signed out, a browser is sent to sign in (an htmx or JSON client gets 403); signed
  in, a person acts only on their own stack: nothing of anyone else's changes.
- OWNER: as SIGNED_IN, on an object named in the URL: another person's answers exactly what an
  object nobody has answers (404, or 405 for a method the view does not take), and no row
  anywhere changes.
- STAFF: anyone who is not staff, signed in or not, is sent to the admin's sign-in page and
  nothing changes; staff get the page.
- Token(setting): only a request bearing the token from that setting gets an answer (401
  without it, signed in or not).

And for every pattern: a POST without a CSRF token is refused with the "form expired" page and
changes nothing, signed in or not (no view is csrf_exempt).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import pytest
from django.apps import apps
from django.contrib.auth.models import User
from django.contrib.sessions.models import Session
from django.test import Client
from django.urls import resolve

from stacks.models import DeploymentAttempt, Stack, StaffAction
from tests import urls_token
from tests.pages import attempt, deployed_stack
from tests.patterns import Pattern, project_patterns

Status = DeploymentAttempt.Status
KEY = "00000000-0000-4000-8000-000000000001"  # an ActionForm's idempotency key


# --- The classes ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Access:
    name: str


@dataclass(frozen=True)
class Token:
    """Answers only a request with `Authorization: Bearer <settings.<setting>>`."""

    setting: str


PUBLIC = Access("public")
SIGN_OUT = Access("sign-out")
SIGNED_IN = Access("signed-in, own stack only")
OWNER = Access("signed-in, owner of the object in the URL")
STAFF = Access("staff only")

# Every URL pattern of the project: by "namespace:name", or by "namespace:*" for the rest of a
# namespace. Unnamed patterns count as their namespace's.
ACCESS: dict[str, Access | Token] = {
    # portal/urls.py
    "healthz": PUBLIC,
    "metrics": Token("METRICS_TOKEN"),
    "oidc_authentication_init": PUBLIC,
    "oidc_authentication_callback": PUBLIC,
    "oidc_logout": SIGN_OUT,
    # stacks/urls.py
    "home": PUBLIC,
    "sign-in": PUBLIC,
    "sign-out": SIGN_OUT,
    "stack": SIGNED_IN,
    "stack-delete": SIGNED_IN,
    "stack-action": SIGNED_IN,
    "history": SIGNED_IN,
    "attempt": OWNER,
    "attempt-cancel": OWNER,
    "attempt-retry": OWNER,
    # The admin, staff pages included (failure analysis, reconciler, staff actions): staff only,
    # but for its own sign-in and sign-out.
    "admin:login": PUBLIC,
    "admin:logout": SIGN_OUT,
    "admin:*": STAFF,
}


# --- Every URL pattern ------------------------------------------------------------------------


def access_of(pattern: Pattern) -> Access | Token | None:
    if pattern.key in ACCESS:
        return ACCESS[pattern.key]
    return ACCESS.get(f"{pattern.namespace}:*") if pattern.namespace else None


def unclassified(patterns: list[Pattern]) -> list[str]:
    return [pattern.key for pattern in patterns if access_of(pattern) is None]


PATTERNS = project_patterns()


def of_class(*classes: Access | Token) -> list[Any]:
    return [
        pytest.param(pattern, id=pattern.key)
        for pattern in PATTERNS
        if access_of(pattern) in classes
    ]


def token_patterns() -> list[Any]:
    return [
        pytest.param(pattern, id=pattern.key)
        for pattern in PATTERNS
        if isinstance(access_of(pattern), Token)
    ]


# --- The people and their objects -------------------------------------------------------------


@dataclass
class World:
    alice: User
    bob: User
    staff: User
    running: DeploymentAttempt  # alice's, held by a live worker
    failed: DeploymentAttempt  # alice's

    def alices_rows(self) -> list[Any]:
        """Everything of alice's that anyone else might change."""
        return [
            list(Stack.objects.filter(owner=self.alice).values()),
            list(DeploymentAttempt.objects.filter(stack__owner=self.alice).order_by("pk").values()),
            list(StaffAction.objects.filter(stack__owner=self.alice).values()),
        ]


@pytest.fixture
def world(db: None) -> World:
    alice = User.objects.create_user("alice")
    bob = User.objects.create_user("bob")
    staff = User.objects.create_superuser("olga", "olga@example.com", "correct-horse")
    stack = deployed_stack(alice)
    failed = attempt(stack, Status.FAILED)
    running = attempt(stack, Status.RUNNING, kind="redeploy")
    deployed_stack(bob, project_id="p2", application_id="a2", domain_id="d2")
    return World(alice, bob, staff, running, failed)


# A value for every URL parameter: several give several URLs. A pattern with a parameter not
# listed here fails with its name.
SAMPLES: dict[str, Callable[[World], list[str]]] = {
    "attempt_id": lambda w: [str(w.running.pk), str(w.failed.pk)],
    "action": lambda w: ["create", "redeploy", "stop", "start"],
    "object_id": lambda w: ["1"],
    "id": lambda w: ["1"],
    "content_type_id": lambda w: ["1"],
    "app_label": lambda w: ["stacks"],
    "url": lambda w: ["no-such-page/"],
}


# An object id nobody has, for each parameter that names an object of an OWNER pattern.
NOBODYS = {"attempt_id": "999999"}


def urls_of(pattern: Pattern, world: World) -> Iterator[str]:
    names = pattern.params
    missing = [name for name in names if name not in SAMPLES]
    assert not missing, f"{pattern}: add sample values for {missing} to SAMPLES"
    for values in itertools.product(*(SAMPLES[name](world) for name in names)):
        url = pattern.path(**dict(zip(names, values, strict=True)))
        assert resolve(url).route == pattern.route, f"{url} does not lead to {pattern}"
        yield url


def snapshot() -> dict[str, Any]:
    """Every model's row count, and every stack and attempt as it is (sessions aside)."""
    return {
        "counts": {
            model._meta.label: model._default_manager.count()
            for model in apps.get_models()
            if model is not Session
        },
        "stacks": list(Stack.objects.order_by("pk").values()),
        "attempts": list(DeploymentAttempt.objects.order_by("pk").values()),
    }


def signed_in(user: User, **options: Any) -> Client:
    client = Client(**options)
    client.force_login(user)
    return client


def sign_in_url(path: str) -> str:
    return "/sign-in?" + urlencode({"next": path}, safe="/")


def admin_sign_in_url(path: str) -> str:
    return "/admin/login/?" + urlencode({"next": path}, safe="/")


def is_sent_to_sign_in(response: Any) -> bool:
    location = str(response.headers.get("Location", ""))
    return response.status_code == 302 and location.startswith(("/sign-in?", "/admin/login/?"))


# --- The matrix is complete -------------------------------------------------------------------


def test_every_url_pattern_is_classified():
    assert len(PATTERNS) > 50  # the admin's patterns are walked too
    assert unclassified(PATTERNS) == []


@pytest.mark.urls("tests.urls_unclassified")
def test_a_new_view_that_nobody_classified_fails_the_matrix():
    assert unclassified(project_patterns()) == ["sneaky", "extra:report"]


def test_every_class_has_patterns():
    classes = {access_of(pattern) for pattern in PATTERNS}
    assert classes == {PUBLIC, SIGN_OUT, SIGNED_IN, OWNER, STAFF, Token("METRICS_TOKEN")}


# --- PUBLIC -----------------------------------------------------------------------------------


@pytest.mark.parametrize("pattern", of_class(PUBLIC))
def test_public_pages_answer_everyone(pattern, world):
    for client in (Client(), signed_in(world.bob)):
        for url in urls_of(pattern, world):
            response = client.get(url)
            assert response.status_code not in (401, 403), url
            assert not is_sent_to_sign_in(response), url


# --- SIGN_OUT ---------------------------------------------------------------------------------


@pytest.mark.parametrize("pattern", of_class(SIGN_OUT))
def test_sign_out_ends_the_session_on_post_only(pattern, world):
    for url in urls_of(pattern, world):
        client = signed_in(world.staff)
        client.get(url)
        assert client.session.get("_auth_user_id") == str(world.staff.pk), url

        response = client.post(url)

        assert response.status_code == 302, url
        assert client.session.get("_auth_user_id") is None, url


# --- SIGNED_IN and OWNER: signed out ----------------------------------------------------------


@pytest.mark.parametrize("pattern", of_class(SIGNED_IN, OWNER))
def test_signed_out_browsers_are_sent_to_sign_in_and_nothing_changes(pattern, world):
    before = snapshot()
    anonymous = Client()
    for url in urls_of(pattern, world):
        for response in (anonymous.get(url), anonymous.post(url, {"key": "x"})):
            assert response.status_code == 302, url
            assert response["Location"] == sign_in_url(url)
    assert snapshot() == before


@pytest.mark.parametrize("pattern", of_class(SIGNED_IN, OWNER))
def test_signed_out_htmx_and_json_get_403_with_the_way_to_sign_in(pattern, world):
    anonymous = Client()
    for url in urls_of(pattern, world):
        htmx = anonymous.get(url, HTTP_HX_REQUEST="true")
        json = anonymous.get(url, HTTP_ACCEPT="application/json")

        assert (htmx.status_code, htmx["HX-Redirect"]) == (403, sign_in_url(url))
        assert json.status_code == 403
        assert json.json() == {"error": "Sign in first.", "sign_in": sign_in_url(url)}


# --- SIGNED_IN: another person's stack --------------------------------------------------------


@pytest.mark.parametrize("pattern", of_class(SIGNED_IN))
def test_a_person_never_changes_another_persons_stack(pattern, world):
    before = world.alices_rows()
    bob = signed_in(world.bob)
    for url in urls_of(pattern, world):
        for response in (bob.get(url), bob.post(url, {"key": KEY})):
            assert response.status_code < 500, url
    assert world.alices_rows() == before


# --- OWNER: another person's object -----------------------------------------------------------

REQUESTS: dict[str, Callable[[Client, str], Any]] = {
    "GET": lambda client, url: client.get(url),
    "htmx GET": lambda client, url: client.get(url, HTTP_HX_REQUEST="true"),
    "POST": lambda client, url: client.post(url, {"key": KEY}),
}


@pytest.mark.parametrize("pattern", of_class(OWNER))
def test_another_persons_object_is_one_that_does_not_exist_and_nothing_changes(pattern, world):
    """Bob gets for alice's attempt exactly what he gets for an attempt id nobody has: 404 for
    the methods the view takes, 405 for the others, whatever the attempt's state."""
    before = snapshot()
    bob = signed_in(world.bob)
    nobodys_url = pattern.path(
        **{name: NOBODYS.get(name) or SAMPLES[name](world)[0] for name in pattern.params}
    )
    nobodys = {how: ask(bob, nobodys_url) for how, ask in REQUESTS.items()}
    expected = {how: response.status_code for how, response in nobodys.items()}
    assert 404 in expected.values()
    for url in urls_of(pattern, world):
        theirs = {how: ask(bob, url).status_code for how, ask in REQUESTS.items()}
        assert theirs == expected, url
    assert snapshot() == before


@pytest.mark.parametrize("pattern", of_class(OWNER))
def test_the_owner_reaches_the_object(pattern, world):
    alice = signed_in(world.alice)
    for url in urls_of(pattern, world):
        statuses = {how: ask(alice, url).status_code for how, ask in REQUESTS.items()}
        assert 404 not in statuses.values(), url


# --- STAFF ------------------------------------------------------------------------------------


@pytest.mark.parametrize("pattern", of_class(STAFF))
def test_staff_pages_send_everyone_else_to_the_admin_sign_in_and_change_nothing(pattern, world):
    before = snapshot()
    for client in (Client(), signed_in(world.bob), signed_in(world.alice)):
        for url in urls_of(pattern, world):
            for response in (client.get(url), client.post(url, {"action": "redeploy"})):
                assert response.status_code == 302, url
                assert response["Location"] == admin_sign_in_url(url)
    assert snapshot() == before


@pytest.mark.parametrize("pattern", of_class(STAFF))
def test_staff_reach_the_staff_pages(pattern, world):
    staff = signed_in(world.staff)
    for url in urls_of(pattern, world):
        assert not is_sent_to_sign_in(staff.get(url)), url


# --- Token ------------------------------------------------------------------------------------


@pytest.mark.parametrize("pattern", token_patterns())
def test_token_pages_answer_only_the_token(pattern, world, settings):
    access = access_of(pattern)
    assert isinstance(access, Token)
    assert_answers_only_the_token(pattern, access, world, settings)


def assert_answers_only_the_token(
    pattern: Pattern, access: Token, world: World, settings: Any
) -> None:
    setattr(settings, access.setting, "matrix-token-6c1f0e9d2b")
    for client in (Client(), signed_in(world.staff)):
        for url in urls_of(pattern, world):
            none = client.get(url)
            wrong = client.get(url, HTTP_AUTHORIZATION="Bearer not-the-token")
            right = client.get(url, HTTP_AUTHORIZATION="Bearer matrix-token-6c1f0e9d2b")
            assert (none.status_code, wrong.status_code, right.status_code) == (401, 401, 200), url


@pytest.mark.urls("tests.urls_token")
def test_the_token_rule_catches_a_view_that_forgets_the_token(world, settings):
    guarded, forgetful = project_patterns("tests.urls_token")
    access = Token(urls_token.TOKEN_SETTING)

    assert_answers_only_the_token(guarded, access, world, settings)
    with pytest.raises(AssertionError, match="/forgetful"):
        assert_answers_only_the_token(forgetful, access, world, settings)


# --- CSRF on every POST -----------------------------------------------------------------------


@pytest.mark.parametrize("pattern", [pytest.param(p, id=p.key) for p in PATTERNS])
def test_every_post_without_a_csrf_token_is_refused_and_changes_nothing(pattern, world):
    before = snapshot()
    anonymous = Client(enforce_csrf_checks=True)
    staff = signed_in(world.staff, enforce_csrf_checks=True)
    for url in urls_of(pattern, world):
        for client in (anonymous, staff):
            response = client.post(url, {"key": KEY})
            assert response.status_code == 403, url
            assert "This form has expired" in response.content.decode(), url
    assert snapshot() == before
    assert staff.session.get("_auth_user_id") == str(world.staff.pk)
