"""`manage.py check --deploy` warns about a production portal that cannot reach a real Dokploy."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from stacks.checks import dokploy_configured


def test_no_dokploy_url_is_the_simulator_and_is_reported(settings):
    settings.DOKPLOY_SIMULATED = True
    settings.DOKPLOY_URL = "http://127.0.0.1:3900"
    [warning] = dokploy_configured()
    assert warning.id == "stacks.W001"
    assert "embedded Dokploy simulator at http://127.0.0.1:3900" in warning.msg
    with pytest.raises(SystemCheckError, match=r"stacks\.W001"):
        call_command("check", deploy=True, fail_level="WARNING", tags=["compatibility"])


def test_a_dokploy_url_without_a_key_is_reported(settings):
    settings.DOKPLOY_SIMULATED = False
    settings.DOKPLOY_URL = "https://dokploy.example.com"
    settings.DOKPLOY_API_KEY = ""
    settings.DOKPLOY_API_KEY_FILE = ""
    [warning] = dokploy_configured()
    assert warning.id == "stacks.W002"
    assert warning.hint == "Set DOKPLOY_API_KEY or DOKPLOY_API_KEY_FILE."


@pytest.mark.parametrize(("key", "key_file"), [("a-key", ""), ("", "/run/secrets/dokploy")])
def test_a_dokploy_url_with_a_key_is_fine(settings, key, key_file):
    settings.DOKPLOY_SIMULATED = False
    settings.DOKPLOY_URL = "https://dokploy.example.com"
    settings.DOKPLOY_API_KEY = key
    settings.DOKPLOY_API_KEY_FILE = key_file
    assert dokploy_configured() == []
    call_command("check", deploy=True, fail_level="WARNING", tags=["compatibility"])
