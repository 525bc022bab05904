"""System checks that `manage.py check --deploy` reports for a production installation."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Tags, Warning, register


@register(Tags.compatibility, deploy=True)
def dokploy_configured(**kwargs: Any) -> list[CheckMessage]:
    """With DEBUG off, the embedded simulator is almost certainly not what was meant."""
    found: list[CheckMessage] = []
    if settings.DOKPLOY_SIMULATED:
        found.append(
            Warning(
                "DOKPLOY_URL is not set, so the portal talks to the embedded Dokploy simulator "
                f"at {settings.DOKPLOY_URL}, which only scripts/run starts.",
                hint="Set DOKPLOY_URL and DOKPLOY_API_KEY (or DOKPLOY_API_KEY_FILE).",
                id="stacks.W001",
            )
        )
    elif not (settings.DOKPLOY_API_KEY or settings.DOKPLOY_API_KEY_FILE):
        found.append(
            Warning(
                f"DOKPLOY_URL is {settings.DOKPLOY_URL} but no API key is set: every Dokploy "
                "request will be refused.",
                hint="Set DOKPLOY_API_KEY or DOKPLOY_API_KEY_FILE.",
                id="stacks.W002",
            )
        )
    return found
