from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _install_schedules(sender: AppConfig, **kwargs: Any) -> None:
    from stacks import metrics
    from stacks.queueing import ensure_schedules
    from stacks.reconcile import ensure_schedule as ensure_reconcile_schedule

    ensure_schedules()
    ensure_reconcile_schedule()
    metrics.ensure_schedule()


class StacksConfig(AppConfig):
    name = "stacks"
    verbose_name = "AI stacks"

    def ready(self) -> None:
        from django_q.signals import post_spawn

        from stacks import checks  # noqa: F401  (registers the deploy checks)
        from stacks.queueing import resume_on_start

        post_migrate.connect(_install_schedules, sender=self)
        post_spawn.connect(resume_on_start, dispatch_uid="stacks-resume-on-start")
