"""Times and durations the way people read them.

A time is rendered in UTC inside `<time datetime=...>`; static/js/localtime.js rewrites it in
the viewer's time zone. Relative times ("2 min ago", "in 4 s") are computed here, against the
time of the request, so they are right without JavaScript too.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django import template
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

register = template.Library()

FORMATS = {"datetime": "%-d %b %Y, %H:%M UTC", "time": "%H:%M:%S UTC"}


@register.filter
def duration(value: timedelta | int | None) -> str:
    """A timedelta, or milliseconds: "850 ms", "4.2 s", "12 s", "1 min 12 s", "2 h 5 min"."""
    if value is None:
        return ""
    seconds = value.total_seconds() if isinstance(value, timedelta) else value / 1000
    seconds = max(0.0, seconds)
    if seconds < 1:
        return f"{round(seconds * 1000)} ms"
    if seconds < 10:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        minutes, rest = divmod(whole, 60)
        return f"{minutes} min {rest} s" if rest else f"{minutes} min"
    hours, rest = divmod(whole, 3600)
    if hours < 24:
        return f"{hours} h {rest // 60} min" if rest >= 60 else f"{hours} h"
    days, rest = divmod(hours, 24)
    return f"{days} d {rest} h" if rest else f"{days} d"


@register.filter
def elapsed(value: timedelta | None) -> str:
    """How long something has taken, for people: "under a second", else like `duration`."""
    if value is None:
        return ""
    return "under a second" if value < timedelta(seconds=1) else duration(value)


@register.filter
def period(value: timedelta) -> str:
    """A window for "in the last ...": "hour", "minute", "day", else "10 min"."""
    names = {60: "minute", 3600: "hour", 86400: "day"}
    return names.get(round(value.total_seconds()), duration(value))


@register.filter
def ago(when: datetime | None, now: datetime | None = None) -> str:
    """Relative to now: "just now", "45 s ago", "2 min ago", "in 4 s", "in 3 min"."""
    if when is None:
        return ""
    seconds = (when - (now or timezone.now())).total_seconds()
    if abs(seconds) < 1:
        return "now" if seconds >= 0 else "just now"
    if seconds > 0:
        return f"in {_span(seconds)}"
    if seconds > -5:
        return "just now"
    return f"{_span(-seconds)} ago"


def _span(seconds: float) -> str:
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min"
    if whole < 86400:
        return f"{whole // 3600} h"
    days = whole // 86400
    return f"{days} day" if days == 1 else f"{days} days"


@register.simple_tag
def local_time(when: datetime | None, style: str = "datetime") -> SafeString:
    """`<time>` with the UTC time as text, turned into the viewer's local time by script."""
    if when is None:
        return format_html("{}", "")
    utc = when.astimezone(UTC)
    return format_html(
        '<time datetime="{}" data-local="{}">{}</time>',
        utc.isoformat().replace("+00:00", "Z"),
        style,
        utc.strftime(FORMATS[style]),
    )
