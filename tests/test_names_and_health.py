from __future__ import annotations

import json

import pytest
from django.core.exceptions import ValidationError

from stacks import health, names


@pytest.mark.parametrize("username", ["al", "alice", "a1-b2", "x" * names.USERNAME_MAX])
def test_valid_usernames(username):
    names.validate_stack_username(username)
    assert len(names.application_name(username)) + names.DOKPLOY_SUFFIX_LENGTH <= 63


@pytest.mark.parametrize(
    ("username", "code"),
    [
        ("", "required"),
        ("a", "length"),
        ("x" * (names.USERNAME_MAX + 1), "length"),
        ("Alice", "invalid"),
        ("1alice", "invalid"),
        ("alice-", "invalid"),
        ("al--ice", "invalid"),
        ("al_ice", "invalid"),
        ("al.ice", "invalid"),
        ("alice;rm", "invalid"),
        ("traefik", "reserved"),
        ("www", "reserved"),
    ],
)
def test_invalid_usernames_say_why(username, code):
    with pytest.raises(ValidationError) as caught:
        names.validate_stack_username(username)
    assert caught.value.code == code


def test_derived_names():
    assert names.project_name("bob") == "ai-stack-bob"
    assert names.application_name("bob") == "opencode-bob"
    assert names.stack_host("bob", "ai.example.com") == "bob.ai.example.com"


def test_dns_check_fails_clearly_for_a_host_that_does_not_resolve():
    result = health.check_dns_https("nothing-here.invalid", timeout=2)
    assert not result.ok
    assert "does not resolve" in result.detail


def test_stack_base_url_fills_the_template(settings):
    settings.STACK_URL = "http://127.0.0.1:9/_stack/{host}/"
    assert health.stack_base_url("bob.ai.test") == "http://127.0.0.1:9/_stack/bob.ai.test"


@pytest.mark.django_db
def test_healthz_reports_database_and_missing_queue_heartbeat(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    body = json.loads(response.content)
    assert body["database"]["ok"] is True
    assert body["queue"] == {"ok": False, "clusters": 0, "heartbeat_age_s": None}
    assert body["status"] == "degraded"


@pytest.mark.django_db
def test_healthz_is_503_when_the_database_is_unreachable(client, monkeypatch):
    from portal import health

    monkeypatch.setattr(
        health, "database_status", lambda: {"ok": False, "error": "OperationalError"}
    )
    response = client.get("/healthz")
    assert response.status_code == 503
    assert json.loads(response.content)["status"] == "error"
