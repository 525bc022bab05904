"""Admin for auditing stacks and their deployment attempts.

The records are written by the pipeline alone and are evidence of what happened, so attempts,
steps, Dokploy calls and the breaker are append-only here: nobody, superusers included, adds,
edits or deletes them from the admin. A stack is changed only through its lifecycle; deleting
its row is refused while it still owns Dokploy resources (tear it down first) or has history.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse

from stacks.models import BreakerState, DeploymentAttempt, DeploymentStep, DokployCall, Stack


# The admin classes are generic in django-stubs only; at run time they take no parameters.
class ReadOnlyInline(admin.TabularInline):  # type: ignore[type-arg]
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class ReadOnlyAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """View only, for every user: no add, no change, no delete, no delete_selected."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class StepInline(ReadOnlyInline):
    model = DeploymentStep
    fields = ["seq", "phase", "action", "status", "duration_ms", "retries", "summary", "error_code"]


@admin.register(Stack)
class StackAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["username", "observed_state", "desired_state", "host", "updated_at"]
    list_filter = ["observed_state", "desired_state"]
    search_fields = ["username", "host", "project_id", "application_id", "app_name"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # a stack is created by its owner's first request

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False  # changes go through the lifecycle (deploy, stop, start, teardown)

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # one stack at a time, each checked below
        return actions

    def delete_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        stack = self.get_object(request, object_id)
        if stack is not None:
            owned = stack.dokploy_resources()
            if owned:
                self.message_user(
                    request,
                    f"{stack.username}'s stack still owns {', '.join(owned)} in Dokploy. "
                    f"Tear it down first (manage.py teardown_stack {stack.username}); "
                    "deleting the row would leave them behind.",
                    messages.ERROR,
                )
                change = reverse("admin:stacks_stack_change", args=[stack.pk])
                return HttpResponseRedirect(change)
        return super().delete_view(request, object_id, extra_context)


@admin.register(DeploymentAttempt)
class DeploymentAttemptAdmin(ReadOnlyAdmin):
    list_display = ["id", "stack", "kind", "status", "failure_phase", "error_code", "queued_at"]
    list_filter = ["status", "kind", "failure_phase", "error_code"]
    search_fields = ["stack__username", "error_message"]
    date_hierarchy = "queued_at"
    inlines = [StepInline]


@admin.register(DokployCall)
class DokployCallAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "method", "endpoint", "status_code", "duration_ms", "try_number"]
    list_filter = ["endpoint", "status_code", "phase"]


@admin.register(BreakerState)
class BreakerStateAdmin(ReadOnlyAdmin):
    list_display = ["name", "state", "consecutive_failures", "consecutive_successes", "opened_at"]
