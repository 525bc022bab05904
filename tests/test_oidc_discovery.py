"""The provider's discovery document, the SSO settings, and where start-up discovery happens."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import respx

from portal import oidc

ROOT = Path(__file__).resolve().parent.parent
ISSUER = "https://sso.example.test/realms/company"
URL = f"{ISSUER}/.well-known/openid-configuration"
# Nothing listens here: the top of this checkout's port range for the OpenID provider.
UNREACHABLE = "http://127.0.0.1:4039"


def document(**changes: object) -> dict[str, object]:
    base: dict[str, object] = {
        "issuer": ISSUER,
        "authorization_endpoint": f"{ISSUER}/auth",
        "token_endpoint": f"{ISSUER}/token",
        "userinfo_endpoint": f"{ISSUER}/userinfo",
        "jwks_uri": f"{ISSUER}/certs",
        "end_session_endpoint": f"{ISSUER}/logout",
        "response_types_supported": ["code", "id_token", "code id_token"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "id_token_signing_alg_values_supported": ["RS256", "ES256"],
        "code_challenge_methods_supported": ["plain", "S256"],
    }
    base.update(changes)
    return {key: value for key, value in base.items() if value is not None}


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    oidc.discover.cache_clear()
    yield
    oidc.discover.cache_clear()


def discover() -> oidc.ProviderMetadata:
    return oidc.discover(ISSUER, timeout=2.0, sign_algo="RS256")


@respx.mock(assert_all_called=True)
def test_discovery_reads_the_endpoints_once_per_process(respx_mock):
    route = respx_mock.get(URL).respond(json=document())

    metadata = discover()
    again = discover()

    assert metadata == oidc.ProviderMetadata(
        issuer=ISSUER,
        authorization_endpoint=f"{ISSUER}/auth",
        token_endpoint=f"{ISSUER}/token",
        userinfo_endpoint=f"{ISSUER}/userinfo",
        jwks_uri=f"{ISSUER}/certs",
        end_session_endpoint=f"{ISSUER}/logout",
    )
    assert again is metadata
    assert route.call_count == 1


@respx.mock(assert_all_called=True)
def test_discovery_accepts_an_issuer_with_a_trailing_slash_and_no_logout(respx_mock):
    respx_mock.get(URL).respond(
        json=document(
            issuer=f"{ISSUER}/",
            end_session_endpoint=None,
            token_endpoint_auth_methods_supported=None,
            code_challenge_methods_supported=None,
        )
    )

    metadata = discover()

    assert (metadata.issuer, metadata.end_session_endpoint) == (f"{ISSUER}/", "")


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (httpx.Response(404, text="Not Found"), "answered HTTP 404, not a discovery document"),
        (httpx.Response(200, text="<html>login</html>"), "did not answer JSON"),
        (httpx.Response(200, json=["not", "an", "object"]), "JSON that is not a discovery"),
        (
            httpx.Response(200, json=document(issuer="https://other.example.test")),
            "names the issuer 'https://other.example.test', not "
            "'https://sso.example.test/realms/company': check OIDC_ISSUER",
        ),
        (
            httpx.Response(200, json=document(token_endpoint=None)),
            "token_endpoint is None, not an http(s) URL",
        ),
        (
            httpx.Response(200, json=document(jwks_uri="/certs")),
            "jwks_uri is '/certs', not an http(s) URL",
        ),
        (
            httpx.Response(200, json=document(response_types_supported=["id_token"])),
            "response_types_supported is ['id_token']; the portal needs 'code'",
        ),
        (
            httpx.Response(
                200, json=document(token_endpoint_auth_methods_supported=["private_key_jwt"])
            ),
            "the portal needs 'client_secret_basic'",
        ),
        (
            httpx.Response(200, json=document(id_token_signing_alg_values_supported=["HS256"])),
            "id_token_signing_alg_values_supported is ['HS256']; the portal needs 'RS256'",
        ),
        (
            httpx.Response(200, json=document(code_challenge_methods_supported=["plain"])),
            "code_challenge_methods_supported is ['plain']; the portal needs 'S256'",
        ),
    ],
)
def test_discovery_says_what_is_wrong_with_a_nonsense_answer(answer, error):
    with respx.mock(assert_all_called=True) as respx_mock:
        respx_mock.get(URL).mock(return_value=answer)
        with pytest.raises(oidc.DiscoveryError) as caught:
            discover()

    assert error in str(caught.value)


def test_discovery_says_when_the_provider_cannot_be_reached_and_tries_again_later():
    with respx.mock(assert_all_called=True) as respx_mock:
        respx_mock.get(URL).mock(side_effect=httpx.ConnectError("Connection refused"))
        with pytest.raises(oidc.DiscoveryError) as caught:
            discover()
    assert str(caught.value) == (
        f"cannot reach the OpenID provider: GET {URL} failed: Connection refused"
    )

    with respx.mock(assert_all_called=True) as respx_mock:
        respx_mock.get(URL).respond(json=document())
        assert discover().token_endpoint == f"{ISSUER}/token"


# --- Settings and start-up, in fresh processes ------------------------------------------------


def run(code: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("OIDC_", "DJANGO_SETTINGS_MODULE"))
    }
    environment.update(
        DJANGO_SETTINGS_MODULE="portal.settings",
        DEBUG="false",
        SECRET_KEY="test-secret-key-for-a-subprocess-0123456789",
        ALLOWED_HOSTS="testserver",
        LOG_FORMAT="text",
        **env,
    )
    return subprocess.run(
        [sys.executable, *code],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


SSO_ENV = {"OIDC_ISSUER": UNREACHABLE, "OIDC_CLIENT_ID": "portal", "OIDC_CLIENT_SECRET": "s3cr3t-x"}


def test_the_web_process_refuses_to_start_when_the_provider_cannot_be_reached():
    result = run(["-c", "import portal.wsgi"], **SSO_ENV)

    assert result.returncode == 1
    assert "portal.oidc.DiscoveryError: cannot reach the OpenID provider: GET " in result.stderr
    assert f"{UNREACHABLE}/.well-known/openid-configuration failed" in result.stderr
    assert "s3cr3t-x" not in result.stderr + result.stdout


def test_migrate_and_the_worker_commands_do_not_wait_for_the_provider(tmp_path):
    database = f"sqlite:///{tmp_path / 'db.sqlite3'}"

    result = run(["manage.py", "migrate", "--plan"], DATABASE_URL=database, **SSO_ENV)

    assert result.returncode == 0, result.stderr
    assert "stacks.0005_oidc_identity" in result.stdout


@pytest.mark.parametrize(
    ("env", "error"),
    [
        ({"OIDC_CLIENT_ID": ""}, "OIDC_CLIENT_ID must be set when OIDC_ISSUER is"),
        (
            {"OIDC_CLIENT_SECRET": ""},
            "OIDC_CLIENT_SECRET or OIDC_CLIENT_SECRET_FILE must be set when OIDC_ISSUER is",
        ),
        (
            {"OIDC_CLIENT_SECRET_FILE": "/nonexistent/secret"},
            "set OIDC_CLIENT_SECRET or OIDC_CLIENT_SECRET_FILE, not both",
        ),
        (
            {"OIDC_CLIENT_SECRET": "", "OIDC_CLIENT_SECRET_FILE": "/nonexistent/secret"},
            "cannot read OIDC_CLIENT_SECRET_FILE /nonexistent/secret",
        ),
    ],
)
def test_incomplete_sso_settings_are_refused(env, error):
    result = run(["-c", "import portal.settings"], **{**SSO_ENV, **env})

    assert result.returncode == 1
    assert f"ImproperlyConfigured: {error}" in result.stderr


def test_the_client_secret_file_is_read_and_registered_as_a_secret(tmp_path):
    secret_file = tmp_path / "client_secret"
    secret_file.write_text("file-held-secret-value\n")
    code = (
        "from django.conf import settings; from stacks.redaction import redact_text; "
        "print(settings.OIDC_RP_CLIENT_SECRET == 'file-held-secret-value', "
        "settings.AUTHENTICATION_BACKENDS, redact_text('x file-held-secret-value y'))"
    )

    result = run(
        ["-c", f"import django; django.setup(); {code}"],
        **{**SSO_ENV, "OIDC_CLIENT_SECRET": "", "OIDC_CLIENT_SECRET_FILE": str(secret_file)},
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        "True ['portal.oidc.PasswordBackend', 'portal.oidc.OIDCBackend'] x [redacted] y"
    )
