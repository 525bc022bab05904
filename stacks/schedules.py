"""The task cluster's schedules (django-q2 `Schedule` rows), each kept under one name.

Writing a schedule by name moves or changes it rather than adding another, so every caller may
call these as often as it likes (after each migrate, after each run).
"""

from __future__ import annotations

from datetime import datetime

from django_q.models import Schedule


def every(name: str, func: str, minutes: int) -> None:
    """Run `func` every `minutes` minutes; 0 or less removes the schedule."""
    if minutes <= 0:
        Schedule.objects.filter(name=name).delete()
        return
    Schedule.objects.update_or_create(
        name=name,
        defaults={
            "func": func,
            "schedule_type": Schedule.MINUTES,
            "minutes": minutes,
            "repeats": -1,
        },
    )


def once_at(when: datetime, *, name: str, func: str) -> None:
    """One run of `func` at `when`: a one-off schedule, moved rather than added each time."""
    Schedule.objects.update_or_create(
        name=name,
        defaults={"func": func, "schedule_type": Schedule.ONCE, "next_run": when, "repeats": 1},
    )
