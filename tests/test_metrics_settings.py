"""The settings of /metrics and the messages: networks, secrets from files, the redirect."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import Client

from portal.settings import envnetworks, envsecret
from stacks.redaction import redact_text
from tests.metrics_scrape import TOKEN


def test_networks(monkeypatch):
    monkeypatch.setenv(
        "METRICS_ALLOWED_NETWORKS", " 10.0.0.0/8, 192.168.1.5 ,fd00::/8, 172.16.3.9/12"
    )

    assert envnetworks("METRICS_ALLOWED_NETWORKS") == [
        "10.0.0.0/8",
        "192.168.1.5/32",
        "fd00::/8",
        "172.16.0.0/12",
    ]


def test_a_network_that_is_not_one(monkeypatch):
    monkeypatch.setenv("METRICS_ALLOWED_NETWORKS", "10.0.0.0/8,intranet")

    with pytest.raises(ImproperlyConfigured) as refused:
        envnetworks("METRICS_ALLOWED_NETWORKS")

    assert str(refused.value) == (
        "METRICS_ALLOWED_NETWORKS: 'intranet' is not an IP network. "
        "Example: METRICS_ALLOWED_NETWORKS=10.0.0.0/8,192.168.1.5"
    )


def test_a_secret_from_a_file_is_read_and_masked(monkeypatch, tmp_path: Path):
    secret = tmp_path / "metrics_token"
    secret.write_text("file-token-abcdef0123456789\n")
    monkeypatch.delenv("METRICS_TOKEN", raising=False)
    monkeypatch.setenv("METRICS_TOKEN_FILE", str(secret))

    assert envsecret("METRICS_TOKEN", "METRICS_TOKEN_FILE") == "file-token-abcdef0123456789"
    assert redact_text("token file-token-abcdef0123456789") == "token [redacted]"


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        (
            {"METRICS_TOKEN": "a" * 20, "METRICS_TOKEN_FILE": "/x"},
            "set METRICS_TOKEN or METRICS_TOKEN_FILE, not both",
        ),
        (
            {"METRICS_TOKEN_FILE": "/nonexistent/metrics_token"},
            "cannot read METRICS_TOKEN_FILE /nonexistent/metrics_token",
        ),
    ],
)
def test_secret_settings_refused(monkeypatch, env: dict[str, str], problem: str):
    monkeypatch.delenv("METRICS_TOKEN", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    with pytest.raises(ImproperlyConfigured) as refused:
        envsecret("METRICS_TOKEN", "METRICS_TOKEN_FILE")

    assert str(refused.value).startswith(problem)


def test_an_empty_secret_file_is_refused(monkeypatch, tmp_path: Path):
    empty = tmp_path / "metrics_token"
    empty.write_text("\n")
    monkeypatch.delenv("METRICS_TOKEN", raising=False)
    monkeypatch.setenv("METRICS_TOKEN_FILE", str(empty))

    with pytest.raises(ImproperlyConfigured) as refused:
        envsecret("METRICS_TOKEN", "METRICS_TOKEN_FILE")

    assert str(refused.value) == f"METRICS_TOKEN_FILE {empty} is empty"


def test_metrics_are_not_redirected_to_https(db, settings):
    """Prometheus inside the deployment speaks plain HTTP to the container."""
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^metrics$"]
    settings.METRICS_TOKEN = TOKEN

    scraped = Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    page = Client().get("/admin/login/")

    assert scraped.status_code == 200
    assert page.status_code == 301
