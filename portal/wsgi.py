"""WSGI entry point used by gunicorn."""

import os

from django.conf import settings
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

application = get_wsgi_application()

# With SSO on, the web process reads the provider's discovery document before it serves anyone,
# and refuses to start with the reason when the provider cannot be reached or answers nonsense.
# This lives here rather than in the settings or an AppConfig so that migrate, createcachetable
# and the task worker, which never talk to the provider, do not wait on it or fail with it.
if settings.OIDC_ENABLED:
    from portal.oidc import check_provider

    check_provider()
