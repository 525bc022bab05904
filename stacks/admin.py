"""Admin for auditing and operating stacks and their deployment attempts.

The records are written by the pipeline alone and are evidence of what happened, so attempts,
steps, Dokploy calls, the breaker, staff actions and reconcile runs are append-only here:
nobody, superusers included, adds, edits or deletes them from the admin. A stack is changed only
through its lifecycle; deleting its row is refused while it still owns Dokploy resources (tear it
down first) or has history.

Staff with the `stacks.operate_stacks` permission act through admin actions. An action only
collects a confirmation and a typed reason; the work, its checks and its audit entry belong to
`stacks.lifecycle`, which answers one message per object.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.db.models import Model, Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from stacks import lifecycle, reconcile, staff, staff_actions
from stacks.models import (
    BreakerState,
    DeploymentAttempt,
    DeploymentStep,
    DokployCall,
    ReconcileFinding,
    ReconcileRun,
    Stack,
    StaffAction,
)
from stacks.resilience import CircuitBreaker

OPERATE = "stacks.operate_stacks"


# The admin classes are generic in django-stubs only; at run time they take no parameters.
class ReadOnlyInline(admin.TabularInline):  # type: ignore[type-arg]
    extra = 0
    can_delete = False
    show_change_link = False

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


class OperateMixin:
    """Admin actions listing `allowed_permissions = ("operate",)` need stacks.operate_stacks."""

    def has_operate_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(OPERATE)


# --- Confirmation and reason for every staff action -------------------------------------------


class ReasonForm(forms.Form):
    reason = forms.CharField(
        max_length=500,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 80}),
        help_text="Recorded in the audit trail with your name; the stack's owner sees it on "
        "any attempt this queues.",
    )


Perform = Callable[..., staff_actions.StaffResult]


@dataclass(frozen=True)
class Operation:
    """What an admin action does to each selected object, in words and in deed."""

    title: str  # "Redeploy stacks"
    describe: Callable[[Any], str]  # what will be done to this object
    perform: Perform  # the lifecycle function: perform(obj, by=, reason=, batch=)


def confirm_and_run(
    modeladmin: admin.ModelAdmin[Any],
    request: HttpRequest,
    queryset: QuerySet[Any],
    operation: Operation,
) -> HttpResponse | None:
    """Show the confirmation page until a reason comes with it; then act on each object."""
    if not request.user.has_perm(OPERATE):
        raise PermissionDenied
    objects = list(queryset)
    form = ReasonForm(request.POST if request.POST.get("confirm") == "yes" else None)
    if form.is_bound and form.is_valid():
        assert isinstance(request.user, User)
        batch = uuid.uuid4()
        for obj in objects:
            result = operation.perform(
                obj, by=request.user, reason=form.cleaned_data["reason"], batch=batch
            )
            verdict = "done" if result.done else "not done"
            modeladmin.message_user(
                request,
                f"{_label(obj)}: {verdict}: {result.message}",
                messages.SUCCESS if result.done else messages.WARNING,
            )
        return None
    opts = modeladmin.model._meta
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": f"{operation.title}: are you sure?",
        "operation": operation,
        "rows": [(obj, _label(obj), operation.describe(obj)) for obj in objects],
        "form": form,
        "action_name": request.POST.get("action", ""),
        "action_checkbox_name": ACTION_CHECKBOX_NAME,
        "opts": opts,
        "app_label": opts.app_label,
        "media": modeladmin.media,
    }
    return TemplateResponse(request, "admin/stacks/confirm_action.html", context)


def _label(obj: Model) -> str:
    if isinstance(obj, DeploymentAttempt):
        return staff_actions.attempt_label(obj)
    if isinstance(obj, Stack):
        return f"{obj.username}'s stack"
    if isinstance(obj, BreakerState):
        return f"circuit breaker {obj.name}"
    return str(obj)


def _stack_operation(action: str, verb: str, effect: Callable[[Stack], str]) -> Operation:
    def perform(stack: Stack, **kwargs: Any) -> staff_actions.StaffResult:
        return staff_actions.staff_stack_action(stack, action, **kwargs)

    return Operation(title=f"{verb} stacks", describe=effect, perform=perform)


REDEPLOY = _stack_operation(
    StaffAction.Action.REDEPLOY,
    "Redeploy",
    lambda stack: f"queue a redeploy with image {settings.STACK_IMAGE}",
)
STOP = _stack_operation(
    StaffAction.Action.STOP, "Stop", lambda stack: "queue a stop: the application scales to 0"
)
START = _stack_operation(
    StaffAction.Action.START,
    "Start",
    lambda stack: "queue a start: the application scales to 1 and its health is checked",
)
TEARDOWN = _stack_operation(
    StaffAction.Action.TEARDOWN,
    "Tear down",
    lambda stack: (
        "queue a teardown: its application, domains and service are deleted, then "
        f"project {stack.project_id or '(none recorded)'}"
    ),
)
RETRY = Operation(
    title="Retry failed attempts",
    describe=lambda a: (
        f"queue a new {a.kind} of {a.stack.username}'s stack "
        f"(this one {a.get_status_display().lower()}: {a.error_code or 'no error code'})"
    ),
    perform=staff_actions.staff_retry,
)
CANCEL = Operation(
    title="Cancel attempts",
    describe=lambda a: (
        f"cancel it (now {a.get_status_display().lower()}); "
        "a running one rolls back what it created"
    ),
    perform=staff_actions.staff_cancel,
)
RESUME = Operation(
    title="Resume stuck attempts",
    describe=lambda a: (
        f"hand it back to a worker if its lease expired (lease until {_when(a.lease_expires_at)})"
    ),
    perform=staff_actions.staff_resume,
)


def _reset(row: BreakerState, **kwargs: Any) -> staff_actions.StaffResult:
    return staff_actions.staff_reset_breaker(CircuitBreaker(row.name), **kwargs)


RESET_BREAKER = Operation(
    title="Reset the circuit breaker",
    describe=lambda row: (
        f"close it (now {row.state}, {row.consecutive_failures} "
        "consecutive failures) so requests go through at once"
    ),
    perform=_reset,
)


def _when(moment: Any) -> str:
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M:%S") if moment else "none"


# --- Links between the records ----------------------------------------------------------------


def _changelist(model: str, **filters: Any) -> str:
    query = "&".join(f"{key}={value}" for key, value in filters.items())
    return f"{reverse(f'admin:stacks_{model}_changelist')}?{query}"


def _links(pairs: Iterable[tuple[str, str]]) -> str:
    return format_html_join(" · ", '<a href="{}">{}</a>', ((url, text) for text, url in pairs))


class StaffActionInline(ReadOnlyInline):
    model = StaffAction
    fk_name = "stack"
    fields = ["created_at", "actor_name", "action", "target", "outcome", "message", "reason"]
    verbose_name_plural = "Staff actions"


class AttemptStaffActionInline(StaffActionInline):
    fk_name = "attempt"
    verbose_name_plural = "Staff actions on this attempt"


class RequestedByStaffInline(StaffActionInline):
    fk_name = "result_attempt"
    verbose_name_plural = "Staff actions that queued or resumed this attempt"


class StepInline(ReadOnlyInline):
    model = DeploymentStep
    fields = ["seq", "phase", "action", "status", "duration_ms", "retries", "summary", "error_code"]


# --- List filters -----------------------------------------------------------------------------


class StuckFilter(admin.SimpleListFilter):
    title = "stuck"
    parameter_name = "stuck"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Running past its deadline or with an expired lease")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() != "yes":
            return queryset
        now = timezone.now()
        return queryset.filter(status=DeploymentAttempt.Status.RUNNING).filter(
            Q(deadline__lt=now) | Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lt=now)
        )


class HasOrphansFilter(admin.SimpleListFilter):
    title = "has orphans"
    parameter_name = "orphans"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Yes, in the last reconcile run"), ("no", "No")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() not in ("yes", "no"):
            return queryset
        run = reconcile.latest_run()
        flagged = ReconcileFinding.objects.filter(
            run=run, kind__in=ReconcileFinding.ORPHANS
        ).exclude(fix=ReconcileFinding.Fix.REMOVED)
        ids = flagged.values("stack_id")
        if self.value() == "yes":
            return queryset.filter(pk__in=ids)
        return queryset.exclude(pk__in=ids.exclude(stack_id__isnull=True))


# --- Stacks -----------------------------------------------------------------------------------


@admin.register(Stack)
class StackAdmin(OperateMixin, admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["username", "observed_state", "desired_state", "host", "updated_at"]
    list_filter = ["observed_state", "desired_state", HasOrphansFilter]
    search_fields = [
        "username",
        "host",
        "project_id",
        "environment_id",
        "application_id",
        "app_name",
        "domain_id",
    ]
    fieldsets = [
        (None, {"fields": ["username", "owner", "host", "image"]}),
        (
            "State",
            {"fields": ["desired_state", "observed_state", "observed_at", "last_healthy_at"]},
        ),
        (
            "Dokploy",
            {"fields": ["project_id", "environment_id", "application_id", "app_name", "domain_id"]},
        ),
        ("Records", {"fields": ["records"]}),
    ]
    readonly_fields = ["records"]
    inlines = [StaffActionInline]
    actions = ["redeploy", "stop", "start", "teardown"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # a stack is created by its owner's first request

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False  # changes go through the lifecycle (deploy, stop, start, teardown)

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # one stack at a time, each checked below
        return actions

    @admin.display(description="Attempts, calls, findings")
    def records(self, stack: Stack) -> str:
        return _links(
            [
                (
                    f"{stack.attempts.count()} attempts",
                    _changelist("deploymentattempt", stack__id__exact=stack.pk),
                ),
                ("Dokploy calls", _changelist("dokploycall", attempt__stack__id__exact=stack.pk)),
                (
                    "reconciler findings",
                    _changelist("reconcilefinding", stack__id__exact=stack.pk),
                ),
            ]
        )

    @admin.action(description="Redeploy the selected stacks…", permissions=["operate"])
    def redeploy(self, request: HttpRequest, queryset: QuerySet[Stack]) -> HttpResponse | None:
        return confirm_and_run(self, request, queryset, REDEPLOY)

    @admin.action(description="Stop the selected stacks…", permissions=["operate"])
    def stop(self, request: HttpRequest, queryset: QuerySet[Stack]) -> HttpResponse | None:
        return confirm_and_run(self, request, queryset, STOP)

    @admin.action(description="Start the selected stacks…", permissions=["operate"])
    def start(self, request: HttpRequest, queryset: QuerySet[Stack]) -> HttpResponse | None:
        return confirm_and_run(self, request, queryset, START)

    @admin.action(description="Tear down the selected stacks…", permissions=["operate"])
    def teardown(self, request: HttpRequest, queryset: QuerySet[Stack]) -> HttpResponse | None:
        return confirm_and_run(self, request, queryset, TEARDOWN)

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


# --- Attempts ---------------------------------------------------------------------------------


@admin.register(DeploymentAttempt)
class DeploymentAttemptAdmin(OperateMixin, ReadOnlyAdmin):
    list_display = [
        "id",
        "stack",
        "kind",
        "status",
        "failure_phase",
        "error_code",
        "requested_by",
        "queued_at",
    ]
    list_filter = [
        "status",
        "kind",
        "failure_phase",
        "error_code",
        StuckFilter,
        ("queued_at", admin.DateFieldListFilter),
    ]
    search_fields = [
        "stack__username",
        "stack__project_id",
        "stack__environment_id",
        "stack__application_id",
        "stack__app_name",
        "stack__domain_id",
        "created_resources",
        "error_message",
    ]
    list_select_related = ["stack", "requested_by"]
    date_hierarchy = "queued_at"
    readonly_fields = ["stack_link", "asked_by", "records"]
    inlines = [StepInline, RequestedByStaffInline, AttemptStaffActionInline]
    actions = ["retry", "cancel", "resume"]
    change_list_template = "admin/stacks/deploymentattempt/change_list.html"

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        fields = [f.name for f in DeploymentAttempt._meta.fields if f.name not in ("id", "stack")]
        return ["stack_link", "asked_by", "records", *fields]

    @admin.display(description="Stack")
    def stack_link(self, attempt: DeploymentAttempt) -> str:
        url = reverse("admin:stacks_stack_change", args=[attempt.stack_id])
        return format_html('<a href="{}">{}</a>', url, attempt.stack.username)

    @admin.display(description="Asked for by")
    def asked_by(self, attempt: DeploymentAttempt) -> str:
        someone = lifecycle.asked_by_someone_else(attempt)
        if someone:
            return f"{someone}, on the owner's behalf"
        return "the owner" if attempt.requested_by_id else "the system (reconciler)"

    @admin.display(description="Records")
    def records(self, attempt: DeploymentAttempt) -> str:
        return _links(
            [("Dokploy calls", _changelist("dokploycall", attempt__id__exact=attempt.pk))]
        )

    @admin.action(description="Retry the selected failed attempts…", permissions=["operate"])
    def retry(
        self, request: HttpRequest, queryset: QuerySet[DeploymentAttempt]
    ) -> HttpResponse | None:
        return confirm_and_run(self, request, queryset.select_related("stack"), RETRY)

    @admin.action(description="Cancel the selected attempts…", permissions=["operate"])
    def cancel(
        self, request: HttpRequest, queryset: QuerySet[DeploymentAttempt]
    ) -> HttpResponse | None:
        return confirm_and_run(self, request, queryset.select_related("stack"), CANCEL)

    @admin.action(
        description="Resume the selected stuck attempts (lease expired)…", permissions=["operate"]
    )
    def resume(
        self, request: HttpRequest, queryset: QuerySet[DeploymentAttempt]
    ) -> HttpResponse | None:
        return confirm_and_run(self, request, queryset.select_related("stack"), RESUME)

    def get_urls(self) -> list[URLPattern]:
        failures = self.admin_site.admin_view(self.failure_analysis_view)
        return [
            path("failures/", failures, name="stacks_failure_analysis"),
            *super().get_urls(),
        ]

    def failure_analysis_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        form = PeriodForm(request.GET or None)
        period = form.chosen()
        context = {
            **self.admin_site.each_context(request),
            "title": "Failure analysis",
            "opts": self.model._meta,
            "form": form,
            "report": staff.failure_report(period),
        }
        return TemplateResponse(request, "admin/stacks/failure_analysis.html", context)


class PeriodForm(forms.Form):
    period = forms.ChoiceField(
        choices=[(key, label) for key, (label, _) in staff.PERIODS.items()],
        initial=staff.DEFAULT_PERIOD,
        required=False,
    )

    def chosen(self) -> staff.Period:
        key = self.cleaned_data.get("period") if self.is_valid() else None
        return staff.Period.last(key or staff.DEFAULT_PERIOD)


@admin.register(DokployCall)
class DokployCallAdmin(ReadOnlyAdmin):
    list_display = [
        "created_at",
        "method",
        "endpoint",
        "status_code",
        "duration_ms",
        "try_number",
        "phase",
        "attempt_link",
    ]
    list_filter = ["endpoint", "status_code", "phase"]
    search_fields = ["endpoint", "attempt__stack__username", "error_code"]
    list_select_related = ["attempt__stack"]

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest | None = None) -> bool:
        if lookup in ("attempt__id__exact", "attempt__stack__id__exact"):
            return True
        return super().lookup_allowed(lookup, value, request)

    @admin.display(description="Attempt")
    def attempt_link(self, call: DokployCall) -> str:
        if call.attempt is None:
            return "-"
        url = reverse("admin:stacks_deploymentattempt_change", args=[call.attempt_id])
        return format_html('<a href="{}">{}</a>', url, staff_actions.attempt_label(call.attempt))


@admin.register(BreakerState)
class BreakerStateAdmin(OperateMixin, ReadOnlyAdmin):
    list_display = ["name", "state", "consecutive_failures", "consecutive_successes", "opened_at"]
    actions = ["reset"]

    @admin.action(description="Reset the selected circuit breakers…", permissions=["operate"])
    def reset(self, request: HttpRequest, queryset: QuerySet[BreakerState]) -> HttpResponse | None:
        return confirm_and_run(self, request, queryset, RESET_BREAKER)


# --- Audit trail and reconciler ---------------------------------------------------------------


@admin.register(StaffAction)
class StaffActionAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "actor_name", "action", "target", "outcome", "message", "reason"]
    list_filter = ["action", "outcome", "actor_name"]
    search_fields = ["actor_name", "target", "reason", "message", "stack__username"]
    date_hierarchy = "created_at"


class FindingInline(ReadOnlyInline):
    model = ReconcileFinding
    fields = ["kind", "username", "project_id", "application_id", "detail", "fix", "fix_detail"]


@admin.register(ReconcileRun)
class ReconcileRunAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "started_at",
        "trigger",
        "fix",
        "status",
        "projects_seen",
        "stacks_checked",
        "protected",
    ]
    list_filter = ["status", "trigger", "fix"]
    inlines = [FindingInline]
    change_list_template = "admin/stacks/reconcilerun/change_list.html"

    def get_urls(self) -> list[URLPattern]:
        latest = self.admin_site.admin_view(self.latest_view)
        return [path("latest/", latest, name="stacks_reconcile_latest"), *super().get_urls()]

    def latest_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        run = reconcile.latest_run()
        newest = ReconcileRun.objects.order_by("-started_at", "-id").first()
        findings: list[ReconcileFinding] = []
        if run is not None:
            rows = run.findings.select_related("stack", "attempt").order_by("username", "id")
            findings = sorted(rows, key=lambda f: staff.finding_order(f.kind))
        context = {
            **self.admin_site.each_context(request),
            "title": "Reconciler: latest findings",
            "opts": self.model._meta,
            "run": run,
            # A newer run that did not finish (Dokploy down) is shown above the findings.
            "newest": newest if newest != run else None,
            "counts": staff.finding_counts(run) if run is not None else [],
            "findings": findings,
            "schedule_minutes": settings.RECONCILE_INTERVAL,
        }
        return TemplateResponse(request, "admin/stacks/reconcile_latest.html", context)


@admin.register(ReconcileFinding)
class ReconcileFindingAdmin(ReadOnlyAdmin):
    list_display = ["run", "kind", "username", "project_name", "application_id", "fix"]
    list_filter = ["kind", "fix", "run"]
    search_fields = [
        "username",
        "project_id",
        "project_name",
        "application_id",
        "domain_id",
        "volume_name",
    ]
    list_select_related = ["run"]
