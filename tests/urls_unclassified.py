"""The project's URLs and two views nobody classified: the authorization matrix must catch both."""

from django.http import HttpRequest, HttpResponse
from django.urls import include, path

from portal.urls import urlpatterns as project


def forgotten(request: HttpRequest) -> HttpResponse:
    return HttpResponse("nobody checks who is asking")


urlpatterns = [
    *project,
    path("sneaky/", forgotten, name="sneaky"),
    path("extra/", include(([path("report/", forgotten, name="report")], "extra"))),
]
