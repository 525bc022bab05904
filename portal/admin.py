"""The admin site: Django's, with its sign-in page held to the sign-in and password limits."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.utils.decorators import method_decorator

from portal import ratelimits


class PortalAdminSite(admin.AdminSite):
    @method_decorator(
        ratelimits.limited(
            ratelimits.SIGN_IN, ratelimits.PASSWORD_BY_ADDRESS, ratelimits.PASSWORD_BY_USERNAME
        )
    )
    def login(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        return super().login(request, extra_context)
