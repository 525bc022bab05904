"""Single sign-on without a network: claims to accounts, refusals, staff, sign-out, settings.

The browser flow runs through the real views (`/oidc/authenticate/`, `/oidc/callback/`,
`/oidc/logout/`). Only the two HTTP calls mozilla-django-oidc makes to the provider (token and
userinfo) and its JWT signature check are replaced; tests/e2e/test_sso.py runs the same flow
against a real provider.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from django.contrib.auth.models import User
from mozilla_django_oidc import auth as oidc_auth

from portal import oidc
from stacks.models import OIDCIdentity, Stack

ISSUER = "https://sso.example.test/realms/company"
CLIENT_ID = "ai-stack-portal"
SECRET = "canary-oidc-client-secret-7f3a9c"  # must never show up anywhere
SUPPORT = "the platform team (#platform)"
METADATA = oidc.ProviderMetadata(
    issuer=ISSUER,
    authorization_endpoint=f"{ISSUER}/protocol/openid-connect/auth",
    token_endpoint=f"{ISSUER}/protocol/openid-connect/token",
    userinfo_endpoint=f"{ISSUER}/protocol/openid-connect/userinfo",
    jwks_uri=f"{ISSUER}/protocol/openid-connect/certs",
    end_session_endpoint=f"{ISSUER}/protocol/openid-connect/logout",
)


@dataclass
class FakeProvider:
    """Answers mozilla-django-oidc's token and userinfo requests and records them."""

    claims: dict[str, Any] = field(default_factory=dict)
    id_token: dict[str, Any] = field(default_factory=dict)
    token_requests: list[dict[str, Any]] = field(default_factory=list)
    nonce: str = ""

    def post(self, url: str, *, data: dict[str, Any], auth: Any, **kwargs: Any) -> Any:
        self.token_requests.append({"url": url, "data": dict(data), "auth": auth})
        return _Response({"access_token": "access-token", "id_token": "id-token-jwt"})

    def get(self, url: str, *, headers: dict[str, str], **kwargs: Any) -> Any:
        assert url == METADATA.userinfo_endpoint
        assert headers == {"Authorization": "Bearer access-token"}
        return _Response(self.claims)

    def verify_token(self, token: str, **kwargs: Any) -> dict[str, Any]:
        assert token == "id-token-jwt"
        assert kwargs["nonce"] == self.nonce
        return {"iss": ISSUER, "aud": CLIENT_ID, "nonce": self.nonce, **self.id_token}


class _Response:
    status_code = 200
    headers = {"content-type": "application/json"}

    def __init__(self, body: dict[str, Any]) -> None:
        self._body = body
        self.url = "https://sso.example.test/"
        self.text = ""

    def json(self) -> dict[str, Any]:
        return self._body

    def raise_for_status(self) -> None:
        return None


class _HttpAnswer:
    """Just enough of a requests.Response for an HTTPError raised by raise_for_status()."""

    def __init__(self, status_code: int) -> None:
        self.status_code = status_code


@pytest.fixture
def sso(settings, monkeypatch) -> FakeProvider:
    settings.OIDC_ISSUER = ISSUER
    settings.OIDC_ENABLED = True
    settings.OIDC_CLIENT_ID = settings.OIDC_RP_CLIENT_ID = CLIENT_ID
    settings.OIDC_CLIENT_SECRET = settings.OIDC_RP_CLIENT_SECRET = SECRET
    settings.OIDC_USERNAME_CLAIM = "preferred_username"
    settings.OIDC_GROUPS_CLAIM = "groups"
    settings.OIDC_STAFF_GROUPS = ["portal-staff", "platform-admins"]
    settings.SUPPORT_CONTACT = SUPPORT
    settings.AUTHENTICATION_BACKENDS = ["portal.oidc.PasswordBackend", "portal.oidc.OIDCBackend"]
    monkeypatch.setattr(oidc, "discover", lambda issuer, **kwargs: METADATA)
    provider = FakeProvider()
    monkeypatch.setattr(oidc_auth.requests, "post", provider.post)
    monkeypatch.setattr(oidc_auth.requests, "get", provider.get)
    monkeypatch.setattr(
        oidc.OIDCBackend,
        "verify_token",
        lambda self, token, **kw: provider.verify_token(token, **kw),
    )
    return provider


def start(client) -> dict[str, str]:
    """GET /oidc/authenticate/ and return the query it sends the browser to the provider with."""
    response = client.get("/oidc/authenticate/")
    assert response.status_code == 302
    url = urlsplit(response["Location"])
    assert f"{url.scheme}://{url.netloc}{url.path}" == METADATA.authorization_endpoint
    return {key: values[0] for key, values in parse_qs(url.query).items()}


def sign_in(client, sso: FakeProvider, sub: str, **claims: Any):
    """The whole browser round trip for a person with this `sub` and these userinfo claims."""
    query = start(client)
    sso.nonce = query["nonce"]
    sso.id_token = {"sub": sub}
    sso.claims = {"sub": sub, **claims}
    return client.get("/oidc/callback/", {"code": "the-code", "state": query["state"]})


def signed_in_as(client) -> User | None:
    user_id = client.session.get("_auth_user_id")
    return User.objects.get(pk=user_id) if user_id else None


def current_user(client) -> User:
    user = signed_in_as(client)
    assert user is not None
    return user


# --- The protocol as configured --------------------------------------------------------------


def test_sign_in_starts_a_code_flow_with_pkce_state_and_nonce(client, sso, db):
    query = start(client)

    assert query["response_type"] == "code"
    assert query["client_id"] == CLIENT_ID
    assert query["redirect_uri"] == "http://testserver/oidc/callback/"
    assert query["scope"] == "openid email profile"
    assert query["code_challenge_method"] == "S256"
    assert len(query["state"]) == 32
    assert len(query["nonce"]) == 32
    assert set(query) == {
        "response_type", "client_id", "redirect_uri", "scope", "state", "nonce",
        "code_challenge", "code_challenge_method",
    }  # fmt: skip


def test_the_code_is_exchanged_with_client_secret_basic_and_the_pkce_verifier(client, sso, db):
    query = start(client)
    sso.nonce = query["nonce"]
    sso.id_token = {"sub": "sub-1"}
    sso.claims = {"sub": "sub-1", "preferred_username": "alice"}

    client.get("/oidc/callback/", {"code": "the-code", "state": query["state"]})

    [request] = sso.token_requests
    assert request["url"] == METADATA.token_endpoint
    assert (request["auth"].username, request["auth"].password) == (CLIENT_ID, SECRET)
    verifier = request["data"].pop("code_verifier")
    assert request["data"] == {
        "client_id": CLIENT_ID,
        "grant_type": "authorization_code",
        "code": "the-code",
        "redirect_uri": "http://testserver/oidc/callback/",
    }
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
    assert challenge.decode() == query["code_challenge"]


def test_an_unknown_state_is_refused(client, sso, db):
    start(client)
    response = client.get("/oidc/callback/", {"code": "the-code", "state": "forged"})
    assert response.status_code == 400
    assert sso.token_requests == []
    assert User.objects.count() == 0


# --- Claims to an account --------------------------------------------------------------------


def test_first_sign_in_creates_the_account_keyed_on_sub(client, sso, db):
    response = sign_in(
        client, sso, "sub-alice", preferred_username="Alice", email="alice@example.com"
    )

    assert response.status_code == 302
    assert response["Location"] == "/"
    user = signed_in_as(client)
    assert user is not None
    assert (user.username, user.email, user.is_staff) == ("alice", "alice@example.com", False)
    assert not user.has_usable_password()
    identity = OIDCIdentity.objects.get()
    assert (identity.issuer, identity.subject, identity.user) == (ISSUER, "sub-alice", user)
    assert client.get("/").context["user"] == user


@pytest.mark.parametrize("preferred", [None, ""])
def test_without_the_username_claim_the_email_local_part_is_used(client, sso, db, preferred):
    claims = {"email": "Carol@Example.com"}
    if preferred is not None:
        claims["preferred_username"] = preferred
    sign_in(client, sso, "sub-carol", **claims)

    user = signed_in_as(client)
    assert user is not None
    assert (user.username, user.email) == ("carol", "Carol@Example.com")


def test_the_username_claim_is_configurable(client, sso, db, settings):
    settings.OIDC_USERNAME_CLAIM = "nickname"
    sign_in(client, sso, "sub-dan", nickname="dan", preferred_username="daniel")

    assert current_user(client).username == "dan"


def test_the_same_sub_is_the_same_account_when_email_and_name_change(client, sso, db):
    sign_in(client, sso, "sub-erin", preferred_username="erin", email="erin@old.example")
    first = signed_in_as(client)
    client.logout()

    response = sign_in(
        client, sso, "sub-erin", preferred_username="erin-new", email="erin@new.example"
    )

    assert response.status_code == 302
    again = current_user(client)
    assert again == first
    again.refresh_from_db()
    assert (again.username, again.email) == ("erin", "erin@new.example")
    assert User.objects.count() == 1
    assert OIDCIdentity.objects.count() == 1


def test_an_email_match_is_not_an_account_match(client, sso, db):
    User.objects.create_user("frank", "shared@example.com")
    sign_in(client, sso, "sub-gina", preferred_username="gina", email="shared@example.com")

    assert current_user(client).username == "gina"
    assert User.objects.count() == 2


# --- Refusals --------------------------------------------------------------------------------


def assert_refused(client, response, *, rule: str, why: str) -> str:
    page: str = response.content.decode()
    assert response.status_code == 403
    assert "<h1>This username cannot be used here</h1>" in page
    assert f"<dt>Rule</dt><dd>{rule}</dd>" in page
    assert why in page
    assert "Ask the platform team (#platform) to give your" in " ".join(page.split())
    assert signed_in_as(client) is None
    assert "oidc_id_token" not in client.session
    return page


@pytest.mark.parametrize(
    ("claims", "rule", "why"),
    [
        ({"preferred_username": "admin"}, "A reserved name", "is reserved"),
        ({"preferred_username": "john.doe"}, "Characters that are not allowed", "single hyphens"),
        ({"preferred_username": "jo_hn"}, "Characters that are not allowed", "single hyphens"),
        ({"preferred_username": "1up"}, "Characters that are not allowed", "starting with a"),
        ({"preferred_username": "\u212aate"}, "Characters that are not allowed", "lowercase"),
        ({"preferred_username": "\uff4bate"}, "Characters that are not allowed", "lowercase"),
        ({"preferred_username": "ka\u200bte"}, "Characters that are not allowed", "lowercase"),
        ({"preferred_username": "k"}, "Too short or too long", "2 to 47 characters"),
        ({"preferred_username": "k" * 48}, "Too short or too long", "2 to 47 characters"),
        ({"preferred_username": ["kate"]}, "Characters that are not allowed", "not text"),
        ({"email": "first.last@example.com"}, "Characters that are not allowed", "hyphens"),
        ({}, "No username was given", "neither “preferred_username” nor an email"),
    ],
)
def test_a_claim_that_breaks_a_rule_is_refused_and_creates_nothing(
    client, sso, db, claims, rule, why
):
    response = sign_in(client, sso, "sub-new", **claims)

    assert_refused(client, response, rule=rule, why=why)
    assert User.objects.count() == 0
    assert OIDCIdentity.objects.count() == 0


def test_a_username_held_by_another_sub_is_refused(client, sso, db):
    sign_in(client, sso, "sub-hank", preferred_username="hank")
    client.logout()

    response = sign_in(client, sso, "sub-impostor", preferred_username="HANK")

    page = assert_refused(client, response, rule="Already taken", why="already belongs")
    assert "“hank”" in page
    assert list(OIDCIdentity.objects.values_list("subject", flat=True)) == ["sub-hank"]
    assert User.objects.count() == 1


def test_a_username_held_by_a_local_account_or_a_stack_is_refused(client, sso, db):
    local = User.objects.create_user("Ivy")
    other = User.objects.create_user("owner-of-jack")
    Stack.objects.create(owner=other, username="jack")

    for name in ("ivy", "jack"):
        response = sign_in(client, sso, f"sub-{name}", preferred_username=name)
        assert_refused(client, response, rule="Already taken", why="already belongs")

    assert set(User.objects.all()) == {local, other}
    assert OIDCIdentity.objects.count() == 0


def test_a_refusal_ends_a_session_that_was_open(client, sso, db):
    sign_in(client, sso, "sub-kim", preferred_username="kim")
    assert signed_in_as(client) is not None

    response = sign_in(client, sso, "sub-other", preferred_username="root")

    assert_refused(client, response, rule="A reserved name", why="is reserved")


def test_claimed_text_is_escaped_on_the_refusal_page(client, sso, db):
    response = sign_in(client, sso, "sub-x", preferred_username="<script>x</script>")

    page = assert_refused(
        client, response, rule="Characters that are not allowed", why="single hyphens"
    )
    assert "<script>x" not in page
    assert "&lt;script&gt;x&lt;/script&gt;" in page


# --- Staff -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("groups", "staff"),
    [
        (["portal-staff"], True),
        (["engineering", "platform-admins"], True),
        ("portal-staff", True),
        (["portal-staff-readonly"], False),
        (["Portal-Staff"], False),
        (["/portal-staff"], False),
        (["portal-staff "], False),
        ([], False),
        ({"portal-staff": True}, False),
    ],
)
def test_staff_is_exact_membership_of_a_staff_group(client, sso, db, groups, staff):
    sign_in(client, sso, "sub-lena", preferred_username="lena", groups=groups)

    assert current_user(client).is_staff is staff


def test_staff_follows_the_groups_at_every_sign_in(client, sso, db):
    sign_in(client, sso, "sub-max", preferred_username="max", groups=["portal-staff"])
    assert client.get("/admin/").status_code == 200
    client.logout()

    sign_in(client, sso, "sub-max", preferred_username="max", groups=["engineering"])

    assert current_user(client).is_staff is False
    response = client.get("/admin/")
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_the_groups_claim_is_configurable(client, sso, db, settings):
    settings.OIDC_GROUPS_CLAIM = "roles"
    sign_in(client, sso, "sub-nina", preferred_username="nina", roles=["portal-staff"])

    assert current_user(client).is_staff is True


def test_superusers_keep_their_flags_whatever_the_groups(client, sso, db):
    sign_in(client, sso, "sub-olga", preferred_username="olga", groups=["portal-staff"])
    User.objects.filter(username="olga").update(is_superuser=True)
    client.logout()

    sign_in(client, sso, "sub-olga", preferred_username="olga", groups=[])

    user = current_user(client)
    assert (user.is_staff, user.is_superuser) == (True, True)


def test_an_inactive_account_is_not_signed_in(client, sso, db):
    sign_in(client, sso, "sub-pia", preferred_username="pia")
    User.objects.filter(username="pia").update(is_active=False)
    assert signed_in_as(client) is not None
    assert not client.get("/").context["user"].is_authenticated  # the open session ends too
    client.logout()

    response = sign_in(client, sso, "sub-pia", preferred_username="pia")

    assert response["Location"] == "/"
    assert signed_in_as(client) is None


# --- Tokens that are not for us --------------------------------------------------------------


@pytest.mark.parametrize(
    ("id_token", "userinfo_sub"),
    [
        ({"iss": "https://evil.example.test"}, "sub-quinn"),
        ({"aud": "some-other-client"}, "sub-quinn"),
        ({"aud": ["some-other-client"]}, "sub-quinn"),
        ({}, "sub-someone-else"),
        ({"sub": ""}, ""),
    ],
)
def test_tokens_for_another_issuer_client_or_person_sign_nobody_in(
    client, sso, db, id_token, userinfo_sub
):
    query = start(client)
    sso.nonce = query["nonce"]
    sso.id_token = {"sub": "sub-quinn", **id_token}
    sso.claims = {"sub": userinfo_sub, "preferred_username": "quinn"}

    response = client.get("/oidc/callback/", {"code": "the-code", "state": query["state"]})

    assert response.status_code == 302
    assert response["Location"] == "/"
    assert signed_in_as(client) is None
    assert User.objects.count() == 0


# --- Signing out -----------------------------------------------------------------------------


def test_sign_out_ends_the_portal_session_and_the_providers(client, sso, db):
    sign_in(client, sso, "sub-rosa", preferred_username="rosa")
    id_token = client.session["oidc_id_token"]

    response = client.post("/oidc/logout/")

    assert response.status_code == 302
    url = urlsplit(response["Location"])
    assert f"{url.scheme}://{url.netloc}{url.path}" == METADATA.end_session_endpoint
    assert parse_qs(url.query) == {
        "id_token_hint": [id_token],
        "post_logout_redirect_uri": ["http://testserver/"],
        "client_id": [CLIENT_ID],
    }
    assert signed_in_as(client) is None


def test_sign_out_stays_local_when_the_provider_has_no_end_session_endpoint(
    client, sso, db, monkeypatch
):
    bare = oidc.ProviderMetadata(**{**METADATA.__dict__, "end_session_endpoint": ""})
    monkeypatch.setattr(oidc, "discover", lambda issuer, **kwargs: bare)
    sign_in(client, sso, "sub-sam", preferred_username="sam")

    response = client.post("/oidc/logout/")

    assert (response.status_code, response["Location"]) == (302, "/")
    assert signed_in_as(client) is None


def test_sign_out_is_a_post(client, sso, db):
    sign_in(client, sso, "sub-tom", preferred_username="tom")

    assert client.get("/oidc/logout/").status_code == 405
    assert signed_in_as(client) is not None


def test_sign_out_checks_csrf(sso, db):
    from django.test import Client

    browser = Client(enforce_csrf_checks=True)
    sign_in(browser, sso, "sub-uma", preferred_username="uma")

    assert browser.post("/oidc/logout/").status_code == 403
    assert signed_in_as(browser) is not None


# --- Password sign-in ------------------------------------------------------------------------


def test_with_sso_only_superusers_sign_in_with_a_password(client, sso, db):
    User.objects.create_superuser("breakglass", "bg@example.com", "correct-horse")
    User.objects.create_user("vera", "vera@example.com", "correct-horse", is_staff=True)

    assert client.login(username="vera", password="correct-horse") is False
    assert client.login(username="breakglass", password="correct-horse") is True
    assert client.get("/admin/").status_code == 200

    response = client.post("/oidc/logout/")
    assert (response.status_code, response["Location"]) == (302, "/")


def test_without_sso_the_oidc_views_are_not_found_and_password_sign_in_works(client, db):
    User.objects.create_user("walt", "walt@example.com", "correct-horse")

    assert client.get("/oidc/authenticate/").status_code == 404
    assert client.get("/oidc/callback/", {"code": "c", "state": "s"}).status_code == 404
    assert client.login(username="walt", password="correct-horse") is True
    response = client.post("/oidc/logout/")
    assert (response.status_code, response["Location"]) == (302, "/")
    assert signed_in_as(client) is None


# --- The secret ------------------------------------------------------------------------------


def test_the_client_secret_never_shows(client, sso, db, caplog):
    caplog.set_level(logging.DEBUG)
    pages = [
        sign_in(client, sso, "sub-xena", preferred_username="xena", groups=["portal-staff"]),
        client.get("/"),
        client.get("/admin/"),
        client.post("/oidc/logout/"),
        sign_in(client, sso, "sub-yuri", preferred_username="admin"),
        client.get("/oidc/callback/", {"code": "c", "state": "forged"}),
    ]

    for response in pages:
        assert SECRET not in response.content.decode()
        assert SECRET not in str(response.headers)
    assert caplog.records
    assert all(SECRET not in str(vars(record)) for record in caplog.records)
    assert all(SECRET not in str(value) for value in client.session.values())
    assert SECRET not in str(list(User.objects.values()))
    assert SECRET not in str(list(OIDCIdentity.objects.values()))


@pytest.mark.parametrize(
    ("failure", "reason"),
    [
        (requests.HTTPError("401 Client Error", response=_HttpAnswer(401)), "it answered 401"),
        (requests.ConnectionError("refused"), "it could not be reached"),
    ],
)
def test_a_provider_that_refuses_the_code_gets_a_clear_page(
    client, sso, db, monkeypatch, failure, reason
):
    def refuse(url, **kwargs):
        raise failure

    monkeypatch.setattr(oidc_auth.requests, "post", refuse)
    query = start(client)

    response = client.get("/oidc/callback/", {"code": "the-code", "state": query["state"]})

    assert response.status_code == 502
    text = response.content.decode()
    assert "Sign-in did not finish" in text
    assert reason in text
    assert SECRET not in text
    assert signed_in_as(client) is None
    assert not User.objects.exists()
