"""Checks run inside a started portal container by scripts/image-smoke.

It is fed to the container's own Python on stdin (`podman exec -i NAME python - CHECK`), so
nothing of it lands in the image, and it speaks to gunicorn on the container's loopback the way
the HEALTHCHECK does. Each check prints what it saw and exits 1 at the first thing that is wrong.

    web        /healthz (database ok, and not redirected over plain http), the HTTPS redirect,
               a page and every static file it links (hashed, immutable, gzipped), the
               production 404, 400 for an unknown Host; under the host the HEALTHCHECK presents
    queue      /healthz until a task cluster reports its heartbeat (status "ok")
    task       a task queued from this container comes back from the worker with its result
    processes  every process in the container runs as uid and gid 10001
    files      the code and static files are read-only to that user, var/ is writable, and
               what .dockerignore keeps out of the image is not in it
    bytecode   importing the whole application (Django set up, every module of portal/ and
               stacks/, the WSGI application) compiles no module from source: every .pyc was
               made at build time
"""

from __future__ import annotations

import gzip
import json
import os
import re
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

BASE = "http://127.0.0.1:8000"
PORTAL_UID = 10001
STATIC_LINK = re.compile(r"""(?:href|src)="(/static/[^"]+)\"""")


class CheckFailed(Exception):
    pass


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def host() -> str:
    """The host the HEALTHCHECK presents, read from ALLOWED_HOSTS as the settings read it."""
    from portal.container_health import probe_host

    return probe_host()


def get(
    path: str, *, https: bool = True, gzip_ok: bool = False, as_host: str | None = None
) -> Answer:
    """One GET as the TLS-terminating proxy would send it (or plain http with https=False)."""
    headers = {"Host": as_host or host()}
    if https:
        headers["X-Forwarded-Proto"] = "https"
    if gzip_ok:
        headers["Accept-Encoding"] = "gzip"
    # S310 warns about file:// and custom schemes; BASE is a fixed http:// constant.
    request = urllib.request.Request(BASE + path, headers=headers)  # noqa: S310
    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(request, timeout=10) as response:
            return Answer(response.status, dict(response.headers.items()), response.read())
    except urllib.error.HTTPError as exc:
        return Answer(exc.code, dict(exc.headers.items()), exc.read())


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


def healthz() -> dict[str, Any]:
    answer = get("/healthz")
    expect(answer.status == 200, f"/healthz answered {answer.status}")
    body: dict[str, Any] = json.loads(answer.body)
    return body


def check_web() -> None:
    health = healthz()
    expect(health["database"]["ok"] is True, f"/healthz database: {health['database']}")
    print(f"/healthz 200, status {health['status']}, database ok, as Host {host()!r}")

    plain_health = get("/healthz", https=False)
    expect(plain_health.status == 200, f"plain-http /healthz answered {plain_health.status}")
    print("plain-http /healthz 200 (exempt from the HTTPS redirect)")

    stranger = get("/healthz", as_host="unknown.example.net")
    expect(stranger.status == 400, f"an unknown Host answered {stranger.status}, not 400")
    print("Host unknown.example.net: 400")

    plain = get("/", https=False)
    expect(plain.status == 301, f"plain-http / answered {plain.status}, not the HTTPS redirect")
    expect(plain.headers.get("Location", "").startswith("https://"), "redirect is not to https")
    print("plain-http / redirects to https (production settings)")

    page, path = get("/"), "/"
    for _ in range(3):  # the home page may send an anonymous visitor to sign in
        if page.status not in {301, 302}:
            break
        path = page.headers["Location"]
        expect(path.startswith("/"), f"redirect leaves the site: {path}")
        page = get(path)
    expect(page.status == 200, f"{path} answered {page.status}")
    html = page.body.decode()
    links = sorted(set(STATIC_LINK.findall(html)))
    expect(bool(links), f"{path} links no static file")
    print(f"{path} 200, {len(page.body)} bytes, links {len(links)} static file(s)")
    for link in links:
        check_static(link)

    missing = get("/no-such-page-for-the-image-check")
    expect(missing.status == 404, f"an unknown page answered {missing.status}")
    expect(b"URLconf" not in missing.body, "the 404 page is Django's DEBUG page")
    print("unknown page 404 without the DEBUG page")


HASHED_NAME = re.compile(r"\.[0-9a-f]{12}\.[a-z0-9]+$")


def check_static(link: str) -> None:
    expect(bool(HASHED_NAME.search(link)), f"{link} has no content hash in its name")
    plain = get(link)
    expect(plain.status == 200, f"{link} answered {plain.status}")
    expect(len(plain.body) > 0, f"{link} is empty")
    cache = plain.headers.get("Cache-Control", "")
    expect("immutable" in cache, f"{link} is not served as immutable: {cache!r}")
    packed = get(link, gzip_ok=True)
    expect(packed.headers.get("Content-Encoding") == "gzip", f"{link} has no gzip variant")
    expect(gzip.decompress(packed.body) == plain.body, f"{link}: gzip variant differs")
    print(f"{link} 200, {len(plain.body)} bytes, {cache}, gzip {len(packed.body)} bytes")


def check_queue(timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        health = healthz()
        queue = health["queue"]
        if health["status"] == "ok":
            print(
                f"/healthz status ok: {queue['clusters']} cluster(s), {queue['workers']} "
                f"worker(s), heartbeat {queue['heartbeat_age_s']} s old"
            )
            return
        expect(time.monotonic() < deadline, f"no task cluster heartbeat in {timeout:.0f} s")
        time.sleep(1)


def check_task() -> None:
    import django

    django.setup()
    from django_q.tasks import async_task, result

    started = time.monotonic()
    task_id = async_task("math.floor", 2.5)
    value = result(task_id, wait=30_000)
    expect(value == 2, f"the queued task came back with {value!r}, not 2")
    print(f"math.floor(2.5) ran on the worker and returned 2 in {time.monotonic() - started:.1f} s")


def check_processes() -> None:
    seen = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status", encoding="utf-8") as status:
                fields = dict(line.split(":", 1) for line in status if ":" in line)
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                command = cmdline.read().replace(b"\0", b" ").decode().strip()
        except FileNotFoundError:  # a process that ended while we looked
            continue
        uids, gids = fields["Uid"].split(), fields["Gid"].split()
        expect(
            set(uids) == {str(PORTAL_UID)} and set(gids) == {str(PORTAL_UID)},
            f"pid {entry} ({command}) runs as uid {uids} gid {gids}",
        )
        seen.append(f"{entry}:{fields['Name'].strip()}")
    print(f"{len(seen)} processes, all uid/gid {PORTAL_UID}: {' '.join(seen)}")


# Kept out of the image by .dockerignore: version control, CI, tests, tooling, documentation and
# deployment files.
KEPT_OUT = [
    ".git",
    ".gitea",
    ".ci",
    "tests",
    "scripts",
    "benchmarks",
    "docs",
    "deploy",
    "Dockerfile",
    ".env",
    ".hypothesis",
    ".pytest_cache",
]


def check_files() -> None:
    for path in ("/app", "/app/portal", "/app/staticfiles", "/app/.venv", "/app/docker"):
        expect(not os.access(path, os.W_OK), f"{path} is writable by uid {os.getuid()}")
    expect(os.access("/app/var", os.W_OK), f"/app/var is not writable by uid {os.getuid()}")
    present = sorted(os.listdir("/app"))
    leaked = [name for name in KEPT_OUT if name in present]
    expect(not leaked, f"the image holds {leaked}")
    print(f"/app read-only, /app/var writable; /app holds: {' '.join(present)}")


def check_bytecode() -> None:
    import importlib.machinery
    import pkgutil

    compiled: list[str] = []
    loader = importlib.machinery.SourceFileLoader
    source_to_code = loader.source_to_code

    def counting(self: Any, data: Any, path: Any, *args: Any, **kwargs: Any) -> Any:
        compiled.append(str(path))
        return source_to_code(self, data, path, *args, **kwargs)

    loader.source_to_code = counting  # type: ignore[method-assign]
    import django

    django.setup()
    import portal
    import stacks

    names = ["portal.wsgi"]
    for package in (portal, stacks):
        for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if module.name not in {"portal.settings_test"}:
                names.append(module.name)
    for name in names:
        __import__(name)
    loader.source_to_code = source_to_code  # type: ignore[method-assign]

    loaded = [getattr(module, "__file__", None) or "" for module in list(sys.modules.values())]
    from_app = [path for path in loaded if path.startswith("/app/") and path.endswith(".py")]
    own = [path for path in from_app if not path.startswith("/app/.venv/")]
    at_start = [path for path in compiled if path.startswith("/app/")]
    expect(not at_start, f"compiled from source at start: {', '.join(sorted(at_start)[:10])}")
    print(
        f"imported {len(from_app)} modules from /app ({len(own)} of the portal's own, "
        f"{len(from_app) - len(own)} from its dependencies): none compiled from source"
    )


CHECKS: dict[str, Callable[[], None]] = {
    "web": check_web,
    "queue": check_queue,
    "task": check_task,
    "processes": check_processes,
    "files": check_files,
    "bytecode": check_bytecode,
}


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in CHECKS:
        print(f"usage: image_probe.py {{{','.join(CHECKS)}}}", file=sys.stderr)
        return 2
    try:
        CHECKS[argv[0]]()
    except (CheckFailed, OSError, ValueError, KeyError) as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
