"""The portal's URLs with mozilla-django-oidc's, as the single sign-on setup installs them."""

from django.urls import include, path

from portal.urls import urlpatterns as portal_urls

urlpatterns = [path("oidc/", include("mozilla_django_oidc.urls")), *portal_urls]
