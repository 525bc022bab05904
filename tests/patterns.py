"""Every URL pattern of the project, walked from the root URLconf (the admin's included), and
URLs made from them: for the authorization matrix, the header checks and the canary sweep."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from django.apps import apps
from django.db.models import Model
from django.urls import URLPattern, URLResolver, get_resolver, resolve
from django.urls.resolvers import RoutePattern


@dataclass(frozen=True)
class Pattern:
    key: str  # "namespace:name", or "namespace:" + route for an unnamed pattern
    namespace: str  # "admin", or "" outside any namespace
    route: str  # as ResolverMatch.route spells it
    parts: tuple[Any, ...]  # RoutePattern and RegexPattern, outermost first

    def __str__(self) -> str:
        return self.key

    @property
    def params(self) -> list[str]:
        return [name for part in self.parts for name in part.regex.groupindex]

    def path(self, **values: str) -> str:
        """A URL of this pattern with these parameter values."""
        return "/" + "".join(_fill(part, values) for part in self.parts)


def _fill(part: Any, values: dict[str, str]) -> str:
    if isinstance(part, RoutePattern):
        return re.sub(r"<(?:[^>:]+:)?([^>]+)>", lambda m: values[m.group(1)], str(part))
    text = re.sub(r"\(\?P<(\w+)>[^)]*\)", lambda m: values[m.group(1)], str(part))
    return text.removeprefix("^").removesuffix("$")


def project_patterns(urlconf: str | None = None) -> list[Pattern]:
    found: list[Pattern] = []

    def walk(entries: list[Any], parts: tuple[Any, ...], route: str, namespace: str) -> None:
        for entry in entries:
            here = str(entry.pattern)
            joined = route + (here.removeprefix("^") if route else here)
            if isinstance(entry, URLResolver):
                inner = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
                walk(entry.url_patterns, (*parts, entry.pattern), joined, inner)
            elif isinstance(entry, URLPattern):
                key = f"{namespace}{entry.name}" if entry.name else f"{namespace}{joined}"
                found.append(Pattern(key, namespace.rstrip(":"), joined, (*parts, entry.pattern)))

    walk(get_resolver(urlconf).url_patterns, (), "", "")
    return found


def admin_urls(limit: int = 50) -> Iterator[str]:
    """A URL of every admin pattern for each of (up to `limit`) objects of its model: what staff
    can look at, every change page, history and delete confirmation included."""
    for pattern in project_patterns():
        if pattern.namespace != "admin" or pattern.key in ("admin:logout", "admin:view_on_site"):
            continue
        names = pattern.params
        if not names:
            yield pattern.path()
        elif names == ["app_label"]:
            for app_label in ("auth", "django_q", "stacks"):
                yield pattern.path(app_label=app_label)
        elif names == ["url"]:
            yield pattern.path(url="no-such-page/")
        else:
            [name] = names  # object_id, or id for a user's password
            for pk in _model_of(pattern)._default_manager.values_list("pk", flat=True)[:limit]:
                url = pattern.path(**{name: str(pk)})
                assert resolve(url).route == pattern.route
                yield url


def _model_of(pattern: Pattern) -> type[Model]:
    app_label, model_name = pattern.route.split("/")[1:3]
    return apps.get_model(app_label, model_name)
