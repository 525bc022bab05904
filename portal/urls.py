from django.contrib import admin
from django.urls import include, path

from portal.health import healthz
from portal.metrics import metrics_view

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("metrics", metrics_view, name="metrics"),
    path("admin/", admin.site.urls),
    # oidc_authentication_init, oidc_authentication_callback, oidc_logout (see portal.oidc)
    path("oidc/", include("mozilla_django_oidc.urls")),
    path("", include("stacks.urls")),
]
