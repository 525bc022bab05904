from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from stacks.health_endpoint import database_status, queue_status
from stacks.models import Stack


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    stack = None
    if request.user.is_authenticated:
        stack = Stack.objects.filter(owner=request.user).first()
    return render(request, "home.html", {"stack": stack})


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """Web health for load balancers and the container HEALTHCHECK.

    503 only when the database is unreachable; a missing task-queue heartbeat is reported
    (status "degraded") but does not make the web process unhealthy.
    """
    database = database_status()
    queue = queue_status()
    if not database["ok"]:
        status, code = "error", 503
    elif not queue["ok"]:
        status, code = "degraded", 200
    else:
        status, code = "ok", 200
    return JsonResponse({"status": status, "database": database, "queue": queue}, status=code)
