"""The Content Security Policy header (django-csp): the portal's own scripts and styles only.

settings.CONTENT_SECURITY_POLICY holds the policy. This middleware adds the one source that
follows the SSO settings: signing out is a form POST whose answer redirects to the provider's
end-session endpoint, and browsers hold a redirect after a form to `form-action`, so with SSO on
the issuer's origin joins `form-action` (providers serve their end-session endpoint there).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from csp.middleware import CSPMiddleware, PolicyParts
from django.conf import settings
from django.http import HttpRequest, HttpResponseBase


class PortalCSPMiddleware(CSPMiddleware):
    def get_policy_parts(
        self, request: HttpRequest, response: HttpResponseBase, report_only: bool = False
    ) -> PolicyParts:
        parts = super().get_policy_parts(request, response, report_only)
        origin = provider_origin()
        if origin and not report_only:
            parts.update = {**(parts.update or {}), "form-action": [origin]}
        return parts


def provider_origin() -> str:
    """`https://sso.example.com` for OIDC_ISSUER `https://sso.example.com/realms/x`; "" without."""
    if not settings.OIDC_ENABLED:
        return ""
    parts = urlsplit(settings.OIDC_ISSUER)
    return f"{parts.scheme}://{parts.netloc}"
