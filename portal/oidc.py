"""Single sign-on: from the OpenID provider's claims to a portal account.

mozilla-django-oidc speaks the protocol (authorization code flow with PKCE, state and nonce,
client_secret_basic, ID token signature). This module adds what is ours:

- the provider's endpoints come from its discovery document, read once per process;
- an account is found by the provider's `sub`, never by email or username (`OIDCIdentity`);
- a new account's username is the configured claim (or the local part of the email),
  lowercased and held to the stack-name rules; a name that breaks them or is already held is
  refused with a page that says why, and nobody is signed in;
- staff status follows exact membership of the staff groups at every sign-in;
- signing out also ends the provider's session where it offers an end-session endpoint;
- with SSO on, password sign-in is left to superusers (the admin's break-glass login).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeGuard
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
import requests
from django.conf import settings
from django.contrib import auth
from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser, User
from django.core.exceptions import ImproperlyConfigured, SuspiciousOperation, ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render, resolve_url
from django.utils.decorators import method_decorator
from mozilla_django_oidc.auth import OIDCAuthenticationBackend
from mozilla_django_oidc.utils import import_from_settings
from mozilla_django_oidc.views import (
    OIDCAuthenticationCallbackView,
    OIDCAuthenticationRequestView,
)

from portal.ratelimits import SIGN_IN, limited
from stacks.models import OIDCIdentity, Stack
from stacks.names import USERNAME_MAX, USERNAME_MIN, validate_stack_username

logger = logging.getLogger(__name__)


# --- The provider's metadata ------------------------------------------------------------------


class DiscoveryError(ImproperlyConfigured):
    """The issuer's discovery document cannot be read or does not describe a usable provider."""


@dataclass(frozen=True)
class ProviderMetadata:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    userinfo_endpoint: str
    jwks_uri: str
    end_session_endpoint: str  # "" when the provider offers no RP-initiated logout


def provider_metadata() -> ProviderMetadata:
    """The configured provider's endpoints, discovered on first use and kept for the process."""
    if not settings.OIDC_ENABLED:
        raise ImproperlyConfigured("single sign-on is off: OIDC_ISSUER is not set")
    return discover(
        settings.OIDC_ISSUER, timeout=settings.OIDC_TIMEOUT, sign_algo=settings.OIDC_SIGN_ALGO
    )


def check_provider() -> None:
    """Discover the provider now, so that a web process without one fails at start with why."""
    metadata = provider_metadata()
    logger.info(
        "OpenID provider discovered",
        extra={"issuer": metadata.issuer, "logout": bool(metadata.end_session_endpoint)},
    )


@functools.cache
def discover(issuer: str, *, timeout: float, sign_algo: str) -> ProviderMetadata:
    """Read `{issuer}/.well-known/openid-configuration`; raise DiscoveryError saying what is wrong.

    Failures are not cached, so a later call tries again.
    """
    url = f"{issuer}/.well-known/openid-configuration"
    try:
        response = httpx.get(url, timeout=timeout)
    except httpx.HTTPError as exc:
        raise DiscoveryError(f"cannot reach the OpenID provider: GET {url} failed: {exc}") from None
    if response.status_code != 200:
        raise DiscoveryError(
            f"GET {url} answered HTTP {response.status_code}, not a discovery document: "
            "check OIDC_ISSUER"
        )
    try:
        document = response.json()
    except ValueError:
        raise DiscoveryError(f"GET {url} did not answer JSON: check OIDC_ISSUER") from None
    if not isinstance(document, dict):
        raise DiscoveryError(f"GET {url} answered JSON that is not a discovery document")
    return _metadata_from(document, url=url, issuer=issuer, sign_algo=sign_algo)


def _metadata_from(
    document: dict[str, Any], *, url: str, issuer: str, sign_algo: str
) -> ProviderMetadata:
    declared = document.get("issuer")
    # Exact match, as discovery requires, except for a trailing slash that OIDC_ISSUER drops.
    if not isinstance(declared, str) or declared.rstrip("/") != issuer:
        raise DiscoveryError(
            f"{url} names the issuer {_short(declared)}, not {issuer!r}: check OIDC_ISSUER"
        )

    def endpoint(name: str, *, required: bool = True) -> str:
        value = document.get(name)
        if value is None and not required:
            return ""
        parts = urlsplit(value) if isinstance(value, str) else None
        if parts is None or parts.scheme not in {"http", "https"} or not parts.netloc:
            raise DiscoveryError(f"{url}: {name} is {_short(value)}, not an http(s) URL")
        return str(value)

    def supports(name: str, wanted: str, *, default: list[str] | None) -> None:
        offered = document.get(name, default)
        if not isinstance(offered, list) or wanted not in offered:
            raise DiscoveryError(f"{url}: {name} is {_short(offered)}; the portal needs {wanted!r}")

    metadata = ProviderMetadata(
        issuer=declared,
        authorization_endpoint=endpoint("authorization_endpoint"),
        token_endpoint=endpoint("token_endpoint"),
        userinfo_endpoint=endpoint("userinfo_endpoint"),
        jwks_uri=endpoint("jwks_uri"),
        end_session_endpoint=endpoint("end_session_endpoint", required=False),
    )
    supports("response_types_supported", "code", default=None)
    # Absent means client_secret_basic only (OpenID Connect Discovery 1.0, section 3).
    supports(
        "token_endpoint_auth_methods_supported",
        "client_secret_basic",
        default=["client_secret_basic"],
    )
    supports("id_token_signing_alg_values_supported", sign_algo, default=None)
    if "code_challenge_methods_supported" in document:
        supports("code_challenge_methods_supported", "S256", default=None)
    return metadata


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 120 else f"{text[:117]}..."


_DISCOVERED = {
    "OIDC_OP_AUTHORIZATION_ENDPOINT": "authorization_endpoint",
    "OIDC_OP_TOKEN_ENDPOINT": "token_endpoint",
    "OIDC_OP_USER_ENDPOINT": "userinfo_endpoint",
    "OIDC_OP_JWKS_ENDPOINT": "jwks_uri",
}


def oidc_setting(name: str, *default: Any) -> Any:
    """mozilla-django-oidc's settings, with the provider's endpoints taken from discovery."""
    if name in _DISCOVERED:
        if not settings.OIDC_ENABLED:
            return ""  # the views answer 404 before using it
        return getattr(provider_metadata(), _DISCOVERED[name])
    return import_from_settings(name, *default)


# --- Claims to an account ---------------------------------------------------------------------

RULE_TITLES = {
    "required": "No username was given",
    "length": "Too short or too long",
    "invalid": "Characters that are not allowed",
    "reserved": "A reserved name",
    "taken": "Already taken",
}


class UsernameRefused(Exception):
    """The provider's claims cannot become a portal username; `rule` names the rule broken."""

    def __init__(self, *, claimed: str, rule: str, message: str) -> None:
        super().__init__(f"{rule}: {message}")
        self.claimed = claimed
        self.rule = rule
        self.message = message


def username_from_claims(claims: Mapping[str, Any]) -> str:
    """The username a new account gets: the configured claim, else the email's local part.

    Lowercased and held to the stack-name rules (`stacks.names`), or UsernameRefused.
    """
    claimed = claims.get(settings.OIDC_USERNAME_CLAIM)
    if claimed is None or claimed == "":
        email = claims.get("email")
        if not isinstance(email, str) or "@" not in email:
            raise UsernameRefused(
                claimed="",
                rule="required",
                message=(
                    f"Your sign-in provider sent neither “{settings.OIDC_USERNAME_CLAIM}” "
                    "nor an email address."
                ),
            )
        claimed = email.rsplit("@", 1)[0]
    if not isinstance(claimed, str):
        raise UsernameRefused(
            claimed="",
            rule="invalid",
            message="Your sign-in provider sent a username that is not text.",
        )
    # Lowercasing beyond ASCII can turn a look-alike into a plain letter (the Kelvin sign becomes
    # "k"), so only ASCII is lowercased; anything else fails the allow-list as it was sent.
    username = claimed.lower() if claimed.isascii() else claimed
    try:
        validate_stack_username(username)
    except ValidationError as exc:
        raise UsernameRefused(
            claimed=claimed, rule=str(exc.code), message=" ".join(exc.messages)
        ) from None
    return username


def is_staff_member(claims: Mapping[str, Any]) -> bool:
    """Whether the groups claim names one of OIDC_STAFF_GROUPS, compared exactly."""
    groups = claims.get(settings.OIDC_GROUPS_CLAIM)
    if isinstance(groups, str):
        groups = [groups]
    if not isinstance(groups, list):
        return False
    staff_groups = set(settings.OIDC_STAFF_GROUPS)
    return any(isinstance(group, str) and group in staff_groups for group in groups)


def sign_in_account(*, issuer: str, subject: str, claims: Mapping[str, Any]) -> User:
    """The account of the person with this `sub`, created on their first sign-in.

    Their email and staff status are brought up to date from the claims every time; the
    username is not, since their stack is named after it. Raises UsernameRefused when a new
    account cannot get a username, creating nothing.
    """
    with transaction.atomic():
        identity = (
            OIDCIdentity.objects.select_for_update()
            .select_related("user")
            .filter(issuer=issuer, subject=subject)
            .first()
        )
        user = identity.user if identity else _create_account(issuer, subject, claims)
        email = claims.get("email")
        if _is_address(email):
            user.email = email
        # Superusers are the break-glass accounts: the provider does not take their rights away.
        if not user.is_superuser:
            user.is_staff = is_staff_member(claims)
        user.save(update_fields=["email", "is_staff"])
    return user


def _is_address(email: object) -> TypeGuard[str]:
    """An email claim worth keeping: a printable address a database holds (no NUL, line break
    or lone surrogate, at most 254 characters); anything else is left out, the old one kept."""
    if not isinstance(email, str) or len(email) > 254 or not email.isprintable():
        return False
    try:
        validate_email(email)
    except ValidationError:
        return False
    return True


def _create_account(issuer: str, subject: str, claims: Mapping[str, Any]) -> User:
    username = username_from_claims(claims)
    if _username_held(username):
        raise _taken(username)
    try:
        with transaction.atomic():
            user = get_user_model().objects.create_user(username)  # no usable password
            OIDCIdentity.objects.create(issuer=issuer, subject=subject, user=user)
    except IntegrityError:
        # A concurrent first sign-in won: the same person (use that account) or someone else
        # whose claim maps to the same username (refused, like any name already held).
        identity = (
            OIDCIdentity.objects.select_related("user")
            .filter(issuer=issuer, subject=subject)
            .first()
        )
        if identity is None:
            raise _taken(username) from None
        return identity.user
    logger.info("account created", extra={"username": username})
    return user


def _username_held(username: str) -> bool:
    return (
        get_user_model().objects.filter(username__iexact=username).exists()
        or Stack.objects.filter(username=username).exists()
    )


def _taken(username: str) -> UsernameRefused:
    return UsernameRefused(
        claimed=username,
        rule="taken",
        message=f"“{username}” already belongs to another person here.",
    )


# --- mozilla-django-oidc hooks ----------------------------------------------------------------


class OIDCBackend(OIDCAuthenticationBackend):  # type: ignore[misc]
    """mozilla-django-oidc's backend with accounts keyed on `sub` (see sign_in_account)."""

    get_settings = staticmethod(oidc_setting)

    def verify_claims(self, claims: Any) -> bool:
        # The email is optional here: accounts are keyed on `sub`, checked in get_or_create_user.
        return isinstance(claims, dict)

    def get_or_create_user(
        self, access_token: str, id_token: str, payload: dict[str, Any]
    ) -> User | None:
        subject = _id_token_subject(payload)
        claims = self.get_userinfo(access_token, id_token, payload)
        if not self.verify_claims(claims):
            raise SuspiciousOperation("the userinfo response is not a JSON object")
        # OpenID Connect Core 5.3.2: userinfo must describe the person the ID token names.
        if claims.get("sub") != subject:
            raise SuspiciousOperation("the userinfo response names another subject")
        user = sign_in_account(issuer=settings.OIDC_ISSUER, subject=subject, claims=claims)
        logger.info("signed in", extra={"username": user.get_username(), "staff": user.is_staff})
        return user

    def get_user(self, user_id: int) -> AbstractBaseUser | None:
        # The parent class skips the is_active check that Django's ModelBackend makes.
        return ModelBackend.get_user(self, user_id)


def _id_token_subject(payload: dict[str, Any]) -> str:
    """The ID token's `sub`, once its issuer and audience are ours.

    mozilla-django-oidc checks the signature, expiry and nonce but neither `iss` nor `aud`.
    """
    issuer = payload.get("iss")
    if not isinstance(issuer, str) or issuer.rstrip("/") != settings.OIDC_ISSUER:
        raise SuspiciousOperation("the ID token comes from another issuer")
    audience = payload.get("aud")
    audiences = [audience] if isinstance(audience, str) else audience
    if not isinstance(audiences, list) or settings.OIDC_CLIENT_ID not in audiences:
        raise SuspiciousOperation("the ID token is meant for another client")
    subject = payload.get("sub")
    if not isinstance(subject, str) or not 0 < len(subject) <= 255:
        raise SuspiciousOperation("the ID token has no usable subject")
    return subject


class PasswordBackend(ModelBackend):
    """Password sign-in while SSO is on: superusers only, the admin's break-glass login.

    Everyone else signs in through the provider; their accounts have no usable password anyway,
    and a local account that has one is not let in by it.
    """

    def user_can_authenticate(self, user: User | AnonymousUser | None) -> bool:
        return user is not None and user.is_superuser and super().user_can_authenticate(user)


class AuthenticationRequestView(OIDCAuthenticationRequestView):  # type: ignore[misc]
    """`oidc_authentication_init`: sends the browser to the provider (404 without SSO)."""

    get_settings = staticmethod(oidc_setting)

    @method_decorator(limited(SIGN_IN))
    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not settings.OIDC_ENABLED:
            raise Http404("single sign-on is not configured")
        response: HttpResponse = super().dispatch(request, *args, **kwargs)
        return response


class AuthenticationCallbackView(OIDCAuthenticationCallbackView):  # type: ignore[misc]
    """`oidc_authentication_callback`: signs the person in, or shows why their name is refused."""

    get_settings = staticmethod(oidc_setting)

    @method_decorator(limited(SIGN_IN))
    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not settings.OIDC_ENABLED:
            raise Http404("single sign-on is not configured")
        try:
            response: HttpResponse = super().dispatch(request, *args, **kwargs)
        except UsernameRefused as refusal:
            return _refused(request, refusal)
        except requests.RequestException as exc:
            # The token or userinfo endpoint refused or did not answer: the library raises.
            return _provider_failed(request, exc)
        return response


def _provider_failed(request: HttpRequest, exc: requests.RequestException) -> HttpResponse:
    auth.logout(request)
    status = getattr(exc.response, "status_code", None)
    reason = f"it answered {status}" if status else "it could not be reached"
    logger.warning("sign-in failed at the provider", extra={"reason": reason})
    context = {"reason": reason, "support_contact": settings.SUPPORT_CONTACT}
    return render(request, "oidc/provider_failed.html", context, status=502)


def _refused(request: HttpRequest, refusal: UsernameRefused) -> HttpResponse:
    # Nobody stays signed in, and the ID token the library already put in the session goes too.
    auth.logout(request)
    logger.warning("sign-in refused", extra={"rule": refusal.rule, "claimed": refusal.claimed[:64]})
    context = {
        "claimed": refusal.claimed[:100],
        "rule": RULE_TITLES.get(refusal.rule, refusal.rule),
        "message": refusal.message,
        "support_contact": settings.SUPPORT_CONTACT,
        "min_length": USERNAME_MIN,
        "max_length": USERNAME_MAX,
    }
    return render(request, "oidc/refused.html", context, status=403)


def provider_logout_url(request: HttpRequest) -> str:
    """Where signing out leads (OIDC_OP_LOGOUT_URL_METHOD), read before the session ends.

    After an SSO sign-in, and when the provider has an end-session endpoint, that is the
    provider's logout (RP-initiated logout) with the ID token as hint and the portal's home as
    the way back; otherwise the portal's home.
    """
    home = resolve_url(settings.LOGOUT_REDIRECT_URL)
    id_token = request.session.get("oidc_id_token")
    if not settings.OIDC_ENABLED or not isinstance(id_token, str) or not id_token:
        return home
    endpoint = provider_metadata().end_session_endpoint
    if not endpoint:
        return home
    params = {
        "id_token_hint": id_token,
        "post_logout_redirect_uri": request.build_absolute_uri(home),
        "client_id": settings.OIDC_CLIENT_ID,
    }
    parts = urlsplit(endpoint)
    query = urlencode([*parse_qsl(parts.query), *params.items()])
    return urlunsplit(parts._replace(query=query))
