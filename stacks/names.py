"""Stack names: which portal usernames may own a stack, and the Dokploy names derived from them.

A username becomes a DNS label (`{username}.{STACK_DOMAIN}`) and part of Dokploy names, so it is
held to an allow-list: lowercase letters, digits and inner single hyphens, starting with a letter.
Dokploy appends `-` plus six random characters to the requested appName and Docker limits service
names to 63 characters, so `opencode-{username}` may take at most 56.
"""

from __future__ import annotations

import re
import secrets

from django.core.exceptions import ValidationError

PROJECT_PREFIX = "ai-stack-"
APPLICATION_PREFIX = "opencode-"
DOKPLOY_SUFFIX_LENGTH = 7  # "-" and six random characters
DOCKER_NAME_MAX = 63
USERNAME_MIN = 2
USERNAME_MAX = DOCKER_NAME_MAX - DOKPLOY_SUFFIX_LENGTH - len(APPLICATION_PREFIX)  # 47

USERNAME_RE = re.compile(r"^[a-z](?:[a-z0-9]|-(?=[a-z0-9]))*$")

RESERVED_USERNAMES = frozenset(
    """
    admin administrator ai api app apps assets auth billing blog cdn dashboard dns docs dokploy
    ftp git grafana health help imap internal localhost login logout mail media metrics monitor
    mx ns1 ns2 null oauth opencode pop pop3 portal postgres postmaster production prometheus
    redis registry root smtp sso staff staging static status support system test traefik ttyd
    undefined webmail www
    """.split()
)


def validate_stack_username(value: str) -> None:
    """Raise ValidationError with a message a person can act on, or return None."""
    if not isinstance(value, str) or not value:
        raise ValidationError("A username is required.", code="required")
    if len(value) < USERNAME_MIN or len(value) > USERNAME_MAX:
        raise ValidationError(
            f"Usernames are {USERNAME_MIN} to {USERNAME_MAX} characters long.", code="length"
        )
    if not USERNAME_RE.fullmatch(value):
        raise ValidationError(
            "Use lowercase letters, digits and single hyphens between them, "
            "starting with a letter.",
            code="invalid",
        )
    if value in RESERVED_USERNAMES:
        raise ValidationError(f"“{value}” is reserved; choose another username.", code="reserved")


def project_name(username: str) -> str:
    return f"{PROJECT_PREFIX}{username}"


def project_description(username: str) -> str:
    return f"AI Stack for {username}"


def application_name(username: str) -> str:
    return f"{APPLICATION_PREFIX}{username}"


def stack_host(username: str, stack_domain: str) -> str:
    return f"{username}.{stack_domain}"


# ai-stack-{username}-files-{8 hex}: the username for people reading `docker volume ls`, and a
# token drawn once per stack (so per account) that a later account with the same username
# never gets. Docker allows [a-zA-Z0-9][a-zA-Z0-9_.-]*, which usernames always satisfy.
VOLUME_RE = re.compile(rf"^{PROJECT_PREFIX}([a-z0-9-]+)-files-[0-9a-f]{{8}}$")


def new_volume_name(username: str) -> str:
    return f"{PROJECT_PREFIX}{username}-files-{secrets.token_hex(4)}"


def looks_like_a_workspace_volume(name: str) -> bool:
    """A volume named the way the portal names workspaces (for finding unowned ones)."""
    return VOLUME_RE.fullmatch(name) is not None


def username_of_volume(name: str) -> str:
    """The username in a workspace volume's name, or "" for another name."""
    match = VOLUME_RE.fullmatch(name)
    return match.group(1) if match else ""
