"""The self-service pages.

Each view fetches only the signed-in person's objects (attempts through `own_attempt`, the
stack by its owner), asks `stacks.lifecycle` for every change and renders. Every change is a
POST, held to the request limits of `portal.ratelimits`; a GET changes nothing. Errors from the
lifecycle become messages on the page.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from functools import wraps
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login, logout
from django.contrib.auth.models import User
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseStopPolling
from django_htmx.middleware import HtmxDetails

from portal import ratelimits
from portal.oidc import provider_logout_url
from portal.ratelimits import limited
from stacks import lifecycle, names, progress, queueing
from stacks.forms import ActionForm, DeleteStackForm, LocalSignInForm
from stacks.models import AttemptKind, DeploymentAttempt, Stack
from stacks.units import format_bytes, format_cpus

# The actions a button on the stack page may ask for, by the name in their URL.
ACTIONS = {
    "create": AttemptKind.CREATE,
    "redeploy": AttemptKind.REDEPLOY,
    "stop": AttemptKind.STOP,
    "start": AttemptKind.START,
}
HISTORY_PAGE_SIZE = 20


class HtmxRequest(HttpRequest):
    """A request after the htmx middleware."""

    htmx: HtmxDetails


class SignedInRequest(HtmxRequest):
    """A request to a view behind @login_required."""

    user: User


def signed_in_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """@login_required that answers scripts in their terms. A browser is sent to the sign-in
    page. An htmx request (a poll after signing out in another tab, a session that expired) gets
    403 with HX-Redirect, so htmx sends the whole tab to the sign-in page instead of swapping it
    into a fragment; a client asking for JSON gets 403 with a JSON body."""

    @wraps(view)
    def guarded(request: HtmxRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if request.user.is_authenticated:
            return view(request, *args, **kwargs)
        to_sign_in = redirect_to_login(request.get_full_path())
        if request.htmx:
            return HttpResponse(status=403, headers={"HX-Redirect": to_sign_in.url})
        if request.get_preferred_type(["text/html", "application/json"]) == "application/json":
            return JsonResponse({"error": "Sign in first.", "sign_in": to_sign_in.url}, status=403)
        return to_sign_in

    return guarded


def own_attempt(request: HttpRequest, attempt_id: int) -> DeploymentAttempt:
    """The signed-in person's attempt, else 404: another person's attempt does not exist here."""
    return get_object_or_404(
        DeploymentAttempt.objects.select_related("stack", "requested_by"),
        pk=attempt_id,
        stack__owner_id=request.user.pk,
    )


def own_stack(request: HttpRequest) -> Stack | None:
    return Stack.objects.filter(owner_id=request.user.pk).first()


def _ask(
    request: SignedInRequest, kind: str, form_class: type[ActionForm] = ActionForm
) -> HttpResponse:
    """Ask the lifecycle for an attempt from a posted ActionForm; land on its progress page."""
    form = form_class(request.POST)
    if not form.is_valid():
        messages.error(request, "That form was incomplete; please use the button again.")
        return redirect("home")
    try:
        attempt = lifecycle.request_attempt(
            request.user,
            kind,
            idempotency_key=form.cleaned_data["key"],
            delete_data=bool(form.cleaned_data.get("delete_data")),
        )
    except lifecycle.StackBusy as busy:
        messages.error(request, f"{busy} Follow it here; it must end first.")
        return redirect("attempt", busy.attempt.pk)
    except lifecycle.LifecycleError as error:
        messages.error(request, str(error))
        return redirect("home")
    return redirect("attempt", attempt.pk)


@never_cache
@require_GET
def home(request: HttpRequest) -> HttpResponse:
    if not request.user.is_authenticated:
        return render(request, "home.html")
    stack = own_stack(request)
    if stack is not None and stack.application_id:
        return redirect("stack")
    username = request.user.get_username()
    try:
        names.validate_stack_username(username)
        refusal = ""
    except ValidationError as error:
        refusal = " ".join(error.messages)
    return render(
        request,
        "home.html",
        {
            "active": stack.active_attempt() if stack else None,
            "last": stack.attempts.first() if stack else None,
            "host": names.stack_host(username, settings.STACK_DOMAIN),
            "refusal": refusal,
            "quota": queueing.quota(request.user.pk),
            "form": ActionForm.fresh(),
        },
    )


@signed_in_required
@never_cache
@require_GET
def stack_page(request: SignedInRequest) -> HttpResponse:
    stack = own_stack(request)
    active = stack.active_attempt() if stack else None
    if stack is None or (not stack.application_id and active is None):
        return redirect("home")
    return render(
        request,
        "stack.html",
        {
            "stack": stack,
            "active": active,
            "status": stack.status(active),
            "last_deployed": stack.last_deployed_at(),
            "update_available": bool(stack.image) and stack.image != settings.STACK_IMAGE,
            "new_image": settings.STACK_IMAGE,
            "form": ActionForm.fresh(),
            "volume_path": settings.STACK_VOLUME_PATH,
            # What the stack was last deployed with (a changed setting applies at a redeploy).
            "memory_limit": format_bytes(stack.memory_limit_bytes),
            "cpu_limit": format_cpus(stack.cpu_limit_nanos),
        },
    )


@signed_in_required
@limited(ratelimits.ACTIONS)
@require_POST
def stack_action(request: SignedInRequest, action: str) -> HttpResponse:
    if action not in ACTIONS:
        raise Http404("no such action")
    return _ask(request, ACTIONS[action])


@signed_in_required
@limited(ratelimits.ACTIONS)
@never_cache
@require_http_methods(["GET", "POST"])
def delete_stack(request: SignedInRequest) -> HttpResponse:
    """GET: what will be removed, and a confirmation button; POST: the teardown."""
    if request.method == "POST":
        return _ask(request, AttemptKind.TEARDOWN, DeleteStackForm)
    stack = own_stack(request)
    if stack is None or not stack.dokploy_resources():
        messages.info(request, "There is no stack to delete.")
        return redirect("home")
    return render(
        request,
        "stack_delete.html",
        {
            "stack": stack,
            "application": names.application_name(stack.username),
            "project": names.project_name(stack.username),
            "form": DeleteStackForm(initial={"key": uuid.uuid4()}),
            "volume_path": settings.STACK_VOLUME_PATH,
        },
    )


@signed_in_required
@never_cache
@require_GET
def attempt_page(request: SignedInRequest, attempt_id: int) -> HttpResponse:
    """The live progress page; htmx polls its `progress` partial until the attempt ends."""
    attempt = own_attempt(request, attempt_id)
    context = {"progress": progress.load(attempt), "form": ActionForm.fresh()}
    if not request.htmx:
        return render(request, "attempt.html", context)
    fragment = render_to_string("attempt.html#progress", context, request=request)
    if attempt.is_active:
        return HttpResponse(fragment)
    return HttpResponseStopPolling(fragment)


@signed_in_required
@limited(ratelimits.ACTIONS)
@never_cache
@require_http_methods(["GET", "POST"])
def cancel_attempt(request: SignedInRequest, attempt_id: int) -> HttpResponse:
    """GET: a confirmation; POST: the cancel (a running attempt then rolls back)."""
    attempt = own_attempt(request, attempt_id)
    if request.method == "POST":
        try:
            lifecycle.cancel_attempt(attempt, by=request.user)
        except lifecycle.LifecycleError as error:
            messages.error(request, str(error))
        return redirect("attempt", attempt.pk)
    if not attempt.is_active:
        messages.info(request, "This attempt has already ended.")
        return redirect("attempt", attempt.pk)
    return render(request, "attempt_cancel.html", {"attempt": attempt})


@signed_in_required
@limited(ratelimits.ACTIONS)
@require_POST
def retry_attempt(request: SignedInRequest, attempt_id: int) -> HttpResponse:
    attempt = own_attempt(request, attempt_id)
    form = ActionForm(request.POST)
    if not form.is_valid():
        messages.error(request, "That form was incomplete; please use the button again.")
        return redirect("attempt", attempt.pk)
    try:
        again = lifecycle.retry_attempt(
            attempt, by=request.user, idempotency_key=form.cleaned_data["key"]
        )
    except lifecycle.StackBusy as busy:
        messages.error(request, f"{busy} Follow it here; it must end first.")
        return redirect("attempt", busy.attempt.pk)
    except lifecycle.LifecycleError as error:
        messages.error(request, str(error))
        return redirect("attempt", attempt.pk)
    return redirect("attempt", again.pk)


@signed_in_required
@never_cache
@require_GET
def history(request: SignedInRequest) -> HttpResponse:
    attempts = (
        DeploymentAttempt.objects.filter(stack__owner_id=request.user.pk)
        .select_related("requested_by")
        .order_by("-queued_at", "-id")
    )
    page = Paginator(attempts, HISTORY_PAGE_SIZE).get_page(request.GET.get("page"))
    return render(request, "history.html", {"page": page})


def _next_url(request: HttpRequest) -> str:
    wanted = request.POST.get("next") or request.GET.get("next") or ""
    safe = url_has_allowed_host_and_scheme(
        wanted, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    )
    return wanted if safe else reverse("home")


@limited(ratelimits.SIGN_IN)
@never_cache
@require_http_methods(["GET", "POST"])
def sign_in(request: HttpRequest) -> HttpResponse:
    """SSO when configured; else, only with DEBUG on, "sign in as" any valid username."""
    next_url = _next_url(request)
    local = settings.DEBUG and not settings.OIDC_ENABLED
    if request.method == "POST" and not local:
        return HttpResponse(status=405, headers={"Allow": "GET"})
    if settings.OIDC_ENABLED:
        start = reverse("oidc_authentication_init")
        return redirect(f"{start}?{urlencode({'next': next_url})}")
    if not local:
        return render(request, "sign_in.html", {"configured": False})
    form = LocalSignInForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        login(request, form.user(), backend="django.contrib.auth.backends.ModelBackend")
        return redirect(next_url)
    return render(request, "sign_in.html", {"configured": True, "form": form, "next": next_url})


@require_POST
def sign_out(request: HttpRequest) -> HttpResponse:
    """End the portal's session and, after an SSO sign-in, the provider's too."""
    where = provider_logout_url(request)  # needs the session's ID token: read it first
    logout(request)
    messages.info(request, "You are signed out.")
    return redirect(where)
