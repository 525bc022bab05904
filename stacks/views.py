from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from stacks.models import Stack


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    stack = None
    if request.user.is_authenticated:
        stack = Stack.objects.filter(owner=request.user).first()
    return render(request, "home.html", {"stack": stack})
