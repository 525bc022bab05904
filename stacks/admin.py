"""Read-mostly admin for auditing stacks and their deployment attempts.

Records are written by the pipeline alone, so attempts and steps are read-only here.
"""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from stacks.models import BreakerState, DeploymentAttempt, DeploymentStep, DokployCall, Stack


class ReadOnlyInline(admin.TabularInline):  # type: ignore[type-arg]
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class ReadOnlyAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class StepInline(ReadOnlyInline):
    model = DeploymentStep
    fields = ["seq", "phase", "action", "status", "duration_ms", "retries", "summary", "error_code"]


@admin.register(Stack)
class StackAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["username", "observed_state", "desired_state", "host", "updated_at"]
    list_filter = ["observed_state", "desired_state"]
    search_fields = ["username", "host", "project_id", "application_id", "app_name"]
    readonly_fields = ["created_at", "updated_at", "observed_at", "last_healthy_at"]


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
class BreakerStateAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["name", "state", "consecutive_failures", "consecutive_successes", "opened_at"]
