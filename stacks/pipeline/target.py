"""What a user's stack should look like in Dokploy: the names and the domain it gets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings

from stacks import names
from stacks.models import Stack


@dataclass(frozen=True)
class Target:
    username: str
    project_name: str
    project_description: str
    application_name: str
    image: str
    host: str
    port: int

    @classmethod
    def for_stack(cls, stack: Stack, image: str = "") -> Target:
        return cls(
            username=stack.username,
            project_name=names.project_name(stack.username),
            project_description=names.project_description(stack.username),
            application_name=names.application_name(stack.username),
            image=image or stack.image or settings.STACK_IMAGE,
            host=stack.host or names.stack_host(stack.username, settings.STACK_DOMAIN),
            port=int(settings.STACK_PORT),
        )

    def domain_config(self) -> dict[str, Any]:
        """domain.create's settings: https with a Let's Encrypt certificate, on the stack port."""
        return {
            "host": self.host,
            "https": True,
            "port": self.port,
            "certificate_type": "letsencrypt",
            "domain_type": "application",
            "path": "/",
        }
