"""The project's URLs and a view that fails, for the 500 page."""

from django.http import HttpRequest, HttpResponse
from django.urls import path

from portal.urls import urlpatterns as project


def boom(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("a bug")


urlpatterns = [*project, path("boom", boom)]
