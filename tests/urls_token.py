"""Two token-protected views for checking the matrix's Token rule: one right, one that forgets."""

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.urls import path
from django.utils.crypto import constant_time_compare

TOKEN_SETTING = "SELF_TEST_TOKEN"  # the test sets it


def guarded(request: HttpRequest) -> HttpResponse:
    sent = request.headers.get("Authorization", "")
    if not constant_time_compare(sent, f"Bearer {getattr(settings, TOKEN_SETTING)}"):
        return HttpResponse(status=401, headers={"WWW-Authenticate": "Bearer"})
    return HttpResponse("counted 3 things\n", content_type="text/plain")


def forgetful(request: HttpRequest) -> HttpResponse:
    return HttpResponse("counted 3 things\n", content_type="text/plain")


urlpatterns = [
    path("guarded", guarded, name="guarded"),
    path("forgetful", forgetful, name="forgetful"),
]
