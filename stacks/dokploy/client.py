"""Dokploy's HTTP API: one typed method per endpoint.

Every method names the endpoint it calls (`/api/<router>.<procedure>`). Queries are GET with
query parameters, mutations POST a JSON body; the key travels in the `x-api-key` header. Each
call goes through the one retry layer and the shared circuit breaker (`stacks.resilience`), and
each HTTP request is timed and reported as a CallRecord (by default a DokployCall row).

The creates (project, application, domain) are not idempotent in Dokploy, so they are never
retried blindly: after a failure that may have taken effect, and after the backoff wait, the
client looks the resource up and returns it if the earlier try made it.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import httpx
from django.conf import settings
from django.db import DatabaseError
from django.utils import timezone

from stacks.dokploy.docker_rules import (
    DOCKER_MIN_MEMORY_BYTES,
    SWARM_MIN_NANO_CPUS,
    VOLUME_NAME_PATTERN,
    is_volume_name,
)
from stacks.dokploy.errors import CONFIG, NETWORK_ERROR, TIMEOUT, DokployError
from stacks.dokploy.types import (
    JSON,
    Application,
    Deployment,
    DockerVolume,
    Domain,
    Environment,
    Mount,
    Project,
    ProjectCreated,
    parse_time,
    production_environment,
)
from stacks.models import DokployCall
from stacks.redaction import redact, register_secret
from stacks.resilience import CircuitBreaker, RetryPolicy, Ticket

logger = logging.getLogger("stacks.dokploy")

T = TypeVar("T")
Recover = Callable[[int, datetime], T | None]

GET = "GET"
POST = "POST"


# --- Call records -----------------------------------------------------------------------------


@dataclass(frozen=True)
class CallRecord:
    """One HTTP request to Dokploy, as it went."""

    endpoint: str
    method: str
    status_code: int | None
    duration_ms: int
    try_number: int
    error_code: str = ""


def record_call_to_db(
    record: CallRecord, *, attempt_id: int | None = None, phase: str = ""
) -> None:
    """A DokployCall row: the raw material of latency percentiles and retry counts."""
    DokployCall.objects.create(
        endpoint=record.endpoint[:64],
        method=record.method,
        status_code=record.status_code,
        duration_ms=record.duration_ms,
        try_number=record.try_number,
        error_code=record.error_code[:64],
        attempt_id=attempt_id,
        phase=phase[:16],
    )


def record_call(record: CallRecord) -> None:
    """The default `on_call`: a row tied to no attempt (reconciler, commands, staff pages).

    A pipeline run passes hooks of its own that tie each call to its attempt and phase.
    """
    record_call_to_db(record)


def pace(endpoint: str) -> None:
    """The default `before_request`: the per-second budget of calls made outside any phase."""
    from stacks import throttle

    throttle.acquire("")


# --- The API key ------------------------------------------------------------------------------


class _ApiKey:
    """The key from settings, or from a file read again whenever the file changes.

    With both, the file wins: it is how a rotated key reaches running processes.
    """

    def __init__(self, key: str | None, path: str | None) -> None:
        self._key = (key or "").strip()
        self._path = path or None
        self._stamp: tuple[int, int, int] | None = None
        self._lock = threading.Lock()
        register_secret(self._key)

    def get(self, endpoint: str) -> str:
        key = self._key if self._path is None else self._from_file(endpoint)
        if not key:
            raise DokployError.config(
                endpoint, "no API key: set DOKPLOY_API_KEY or DOKPLOY_API_KEY_FILE"
            )
        return key

    def _from_file(self, endpoint: str) -> str:
        assert self._path is not None
        problem = ""
        with self._lock:
            try:
                info = os.stat(self._path)
                stamp = (info.st_mtime_ns, info.st_size, info.st_ino)
                if stamp != self._stamp:
                    self._key = Path(self._path).read_text(encoding="utf-8").strip()
                    self._stamp = stamp
                    register_secret(self._key)
            except OSError as exc:
                problem = f"cannot read DOKPLOY_API_KEY_FILE {self._path}: {exc.strerror}"
            except UnicodeDecodeError:
                problem = f"DOKPLOY_API_KEY_FILE {self._path} is not UTF-8 text"
            key = self._key
        if problem:
            raise DokployError.config(endpoint, problem)
        return key


# --- The client -------------------------------------------------------------------------------


class DokployClient:
    def __init__(
        self,
        *,
        base_url: str,
        api_key: str | None = None,
        api_key_file: str | None = None,
        timeout: float = 10.0,
        retry_base: float = 1.0,
        retry_after_max: float = 60.0,
        breaker: CircuitBreaker | None = None,
        on_call: Callable[[CallRecord], None] | None = None,
        before_request: Callable[[str], None] | None = None,
        on_wait: Callable[[str, int, float], None] | None = None,
        time_left: Callable[[], float | None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
        jitter: bool = True,
    ) -> None:
        """The hooks let the caller follow each call: `before_request(endpoint)` may pace it,
        `on_call(record)` hears of every request sent, `on_wait(endpoint, next_try, seconds)`
        of every wait between tries, and `time_left()` gives the seconds until the caller's
        deadline (None for none): every wait and request timeout is cut to it."""
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.breaker = breaker
        self.on_call = on_call
        self.before_request = before_request
        self.on_wait = on_wait
        self.time_left = time_left
        self.retry = RetryPolicy(
            base=retry_base, retry_after_max=retry_after_max, jitter=jitter, sleep=sleep
        )
        self._api_key = _ApiKey(api_key, api_key_file)
        api_root = self.base_url if self.base_url.endswith("/api") else f"{self.base_url}/api"
        self._http = httpx.Client(
            base_url=f"{api_root}/",
            timeout=timeout,
            transport=transport,
            headers={"Accept": "application/json", "User-Agent": "ai-stack-portal"},
            follow_redirects=False,
        )

    @classmethod
    def from_settings(cls, **overrides: Any) -> DokployClient:
        """A client configured by the DOKPLOY_* and BREAKER_* settings, recording every call."""
        options: dict[str, Any] = {
            "base_url": settings.DOKPLOY_URL,
            "api_key": settings.DOKPLOY_API_KEY or None,
            "api_key_file": settings.DOKPLOY_API_KEY_FILE or None,
            "timeout": float(settings.DOKPLOY_TIMEOUT),
            "retry_base": float(settings.DOKPLOY_RETRY_BASE),
            "retry_after_max": float(settings.DOKPLOY_RETRY_AFTER_MAX),
            "on_call": record_call,
            "before_request": pace,
        }
        options.update(overrides)
        if "breaker" not in options:
            options["breaker"] = CircuitBreaker()
        return cls(**options)

    def __repr__(self) -> str:
        return f"DokployClient({self.base_url!r})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> DokployClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # project -----------------------------------------------------------------------------

    def project_create(self, *, name: str, description: str | None = None) -> ProjectCreated:
        """POST project.create: the project and the `production` environment made with it."""
        body: JSON = {"name": name}
        if description is not None:
            body["description"] = description
        return self._call(
            "project.create",
            POST,
            _one(ProjectCreated.from_api),
            body=body,
            recover=self._recover_project(name),
        )

    def project_all(self) -> list[Project]:
        """GET project.all: every project, newest first, with environments and applications."""
        return self._call("project.all", GET, _many(Project.from_api))

    def project_one(self, project_id: str) -> Project:
        """GET project.one."""
        return self._call(
            "project.one", GET, _one(Project.from_api), params={"projectId": project_id}
        )

    def project_remove(self, project_id: str) -> Project:
        """POST project.remove: deletes rows only; delete the applications first."""
        return self._call(
            "project.remove", POST, _one(Project.from_api), body={"projectId": project_id}
        )

    # environment -------------------------------------------------------------------------

    def environment_by_project_id(self, project_id: str) -> list[Environment]:
        """GET environment.byProjectId: oldest first; an unknown project gives []."""
        return self._call(
            "environment.byProjectId",
            GET,
            _many(Environment.from_api),
            params={"projectId": project_id},
        )

    # application -------------------------------------------------------------------------

    def application_create(
        self,
        *,
        name: str,
        environment_id: str,
        app_name: str | None = None,
        description: str | None = None,
        source_type: str | None = None,
        project_id: str | None = None,
    ) -> Application:
        """POST application.create. Dokploy appends a random suffix to `app_name`.

        `project_id` is not sent: it only spares a project.all look-up if the create has to be
        checked after an ambiguous failure.
        """
        body: JSON = {"name": name, "environmentId": environment_id}
        if app_name is not None:
            body["appName"] = app_name
        if description is not None:
            body["description"] = description
        if source_type is not None:
            body["sourceType"] = source_type
        return self._call(
            "application.create",
            POST,
            _one(Application.from_api),
            body=body,
            recover=self._recover_application(name, environment_id, project_id),
        )

    def application_one(self, application_id: str) -> Application:
        """GET application.one, with domains and deployments."""
        return self._call(
            "application.one",
            GET,
            _one(Application.from_api),
            params={"applicationId": application_id},
        )

    def application_save_docker_provider(
        self,
        *,
        application_id: str,
        docker_image: str,
        username: str | None = None,
        password: str | None = None,
        registry_url: str | None = None,
    ) -> bool:
        """POST application.saveDockerProvider: all five keys are required, null allowed."""
        register_secret(password)
        body: JSON = {
            "applicationId": application_id,
            "dockerImage": docker_image,
            "username": username,
            "password": password,
            "registryUrl": registry_url,
        }
        return self._call("application.saveDockerProvider", POST, _flag, body=body)

    def application_update(self, application_id: str, **fields: Any) -> bool:
        """POST application.update with Dokploy's column names (snake_case is converted)."""
        body: JSON = {"applicationId": application_id}
        body.update({_camel(name): value for name, value in fields.items()})
        if isinstance(body.get("password"), str):
            register_secret(body["password"])
        return self._call("application.update", POST, _flag, body=body)

    def application_deploy(
        self, application_id: str, *, title: str | None = None, description: str | None = None
    ) -> None:
        """POST application.deploy: only queues the deployment; the answer is empty."""
        body: JSON = {"applicationId": application_id}
        if title is not None:
            body["title"] = title
        if description is not None:
            body["description"] = description
        self._call("application.deploy", POST, _nothing, body=body)

    def application_stop(self, application_id: str) -> Application:
        """POST application.stop: the application as it was before stopping."""
        return self._application_action("application.stop", application_id)

    def application_start(self, application_id: str) -> Application:
        """POST application.start: the application as it was before starting."""
        return self._application_action("application.start", application_id)

    def application_delete(self, application_id: str) -> Application:
        """POST application.delete: also removes its domains, service and Traefik config."""
        return self._application_action("application.delete", application_id)

    def application_set_limits(
        self,
        application_id: str,
        *,
        memory_bytes: int | None,
        cpu_nanos: int | None,
        memory_reservation_bytes: int | None = None,
        cpu_reservation_nanos: int | None = None,
    ) -> bool:
        """POST application.update with all four limit columns; effective at the next deploy,
        redeploy or reload.

        Dokploy stores them as text and `parseInt`s them into Swarm's MemoryBytes and NanoCPUs:
        "2G" becomes 2 bytes and "1.5" one nano-CPU, which Swarm refuses at deploy time. So the
        values are whole bytes and nano-CPUs sent as digit strings, None is sent as null (no
        limit), and what Docker would refuse (below 6 MiB or 0.001 CPU, a reservation above its
        limit) is refused here, before anything is sent.
        """
        memory = _limit("memory_bytes", memory_bytes, DOCKER_MIN_MEMORY_BYTES)
        reserved_memory = _limit(
            "memory_reservation_bytes", memory_reservation_bytes, DOCKER_MIN_MEMORY_BYTES
        )
        cpus = _limit("cpu_nanos", cpu_nanos, SWARM_MIN_NANO_CPUS)
        reserved_cpus = _limit("cpu_reservation_nanos", cpu_reservation_nanos, SWARM_MIN_NANO_CPUS)
        if memory_bytes and memory_reservation_bytes and memory_reservation_bytes > memory_bytes:
            raise ValueError("memory_reservation_bytes must not exceed memory_bytes")
        body: JSON = {
            "applicationId": application_id,
            "memoryLimit": memory,
            "memoryReservation": reserved_memory,
            "cpuLimit": cpus,
            "cpuReservation": reserved_cpus,
        }
        return self._call("application.update", POST, _flag, body=body)

    def _application_action(self, endpoint: str, application_id: str) -> Application:
        return self._call(
            endpoint, POST, _one(Application.from_api), body={"applicationId": application_id}
        )

    # domain ------------------------------------------------------------------------------

    def domain_create(
        self,
        *,
        host: str,
        application_id: str,
        https: bool = True,
        port: int,
        certificate_type: str = "letsencrypt",
        domain_type: str = "application",
        path: str = "/",
    ) -> Domain:
        """POST domain.create: live at once; Dokploy does not refuse duplicate hosts."""
        body: JSON = {
            "host": host,
            "applicationId": application_id,
            "https": https,
            "port": port,
            "certificateType": certificate_type,
            "domainType": domain_type,
            "path": path,
        }
        return self._call(
            "domain.create",
            POST,
            _one(Domain.from_api),
            body=body,
            recover=self._recover_domain(host, application_id),
        )

    def domain_by_application_id(self, application_id: str) -> list[Domain]:
        """GET domain.byApplicationId: an unknown application gives []."""
        return self._call(
            "domain.byApplicationId",
            GET,
            _many(Domain.from_api),
            params={"applicationId": application_id},
        )

    def domain_update(
        self,
        domain_id: str,
        *,
        host: str,
        https: bool,
        port: int,
        certificate_type: str,
        domain_type: str,
        path: str,
    ) -> Domain:
        """POST domain.update: the updated row."""
        body: JSON = {
            "domainId": domain_id,
            "host": host,
            "https": https,
            "port": port,
            "certificateType": certificate_type,
            "domainType": domain_type,
            "path": path,
        }
        return self._call("domain.update", POST, _one(Domain.from_api), body=body)

    def domain_delete(self, domain_id: str) -> Domain:
        """POST domain.delete: the deleted row."""
        return self._call(
            "domain.delete", POST, _one(Domain.from_api), body={"domainId": domain_id}
        )

    # mounts and volumes ------------------------------------------------------------------

    def mounts_list_by_service_id(self, application_id: str) -> list[Mount]:
        """GET mounts.listByServiceId for an application: its mount rows, the same as
        application.one's `mounts`. A row created without serviceType is in neither; an unknown
        application is a 404, not []."""
        return self._call(
            "mounts.listByServiceId",
            GET,
            _many(Mount.from_api),
            params={"serviceId": application_id, "serviceType": "application"},
        )

    def mounts_create_volume(
        self, *, application_id: str, volume_name: str, mount_path: str
    ) -> Mount:
        """POST mounts.create of the named Docker volume at `mount_path`, effective at the next
        deploy, redeploy or reload: the created row.

        Without serviceType Dokploy saves the row unattached and never mounts it, so
        "application" is always sent. An empty volume name would mean a new, empty anonymous
        volume at every deploy, so an empty or invalid name is refused before sending. Not
        idempotent: a second mount on the same path makes every later deploy fail, so look at
        the application's mounts first and create only what is missing; after a failure that
        may have taken effect, the mount is looked up before it is sent again.
        """
        if not is_volume_name(volume_name):
            raise ValueError(
                f"{volume_name!r} is not a Docker volume name (it must match {VOLUME_NAME_PATTERN})"
            )
        if not mount_path.startswith("/") or mount_path.rstrip("/") == "":
            raise ValueError(f"{mount_path!r} is not an absolute path below /")
        body: JSON = {
            "serviceId": application_id,
            "serviceType": "application",
            "type": "volume",
            "volumeName": volume_name,
            "mountPath": mount_path,
        }
        return self._call(
            "mounts.create",
            POST,
            _one(Mount.from_api),
            body=body,
            recover=self._recover_mount(application_id, volume_name, mount_path),
        )

    def mounts_remove(self, mount_id: str) -> Mount:
        """POST mounts.remove: the deleted row. Only the row goes: the Docker volume and its
        files stay, and a running container keeps the mount until its next deploy."""
        return self._call("mounts.remove", POST, _one(Mount.from_api), body={"mountId": mount_id})

    def docker_volumes(self) -> list[DockerVolume]:
        """GET dockerVolume.getVolumes: every volume on Dokploy's own Docker host.

        Dokploy runs `docker volume ls` and answers [] when that fails (it logs the error and
        swallows it), so an empty list never proves that there are no volumes.
        """
        return self._call("dockerVolume.getVolumes", GET, _many(DockerVolume.from_api))

    def docker_volume_remove(self, volume_name: str) -> None:
        """POST dockerVolume.removeVolume: deletes the volume and every file in it; the answer
        is empty.

        Nothing else deletes a volume: application.delete, project.remove and mounts.remove all
        keep it. Call it after application.delete. While a container uses the volume, and for a
        moment after the deletion while Swarm removes the container, Dokploy answers a 500
        "volume is in use" (`volume_in_use()`); a volume already gone is a 500 too ("no such
        volume", `volume_missing()`). Dokploy's prune of unused volumes has no method here on
        purpose: it would delete every stopped person's files. "No such volume" is final, not
        retried; neither answer counts against the circuit breaker (Dokploy is up).
        """
        if not is_volume_name(volume_name):
            raise ValueError(f"{volume_name!r} is not a Docker volume name")
        self._call(
            "dockerVolume.removeVolume",
            POST,
            _nothing,
            body={"volumeName": volume_name},
            final=volume_missing,
        )

    # deployment --------------------------------------------------------------------------

    def deployment_all(self, application_id: str) -> list[Deployment]:
        """GET deployment.all: newest first, about the last ten."""
        return self._call(
            "deployment.all",
            GET,
            _many(Deployment.from_api),
            params={"applicationId": application_id},
        )

    def deployment_read_logs(self, deployment_id: str, *, tail: int = 100) -> str:
        """GET deployment.readLogs: the build log's last `tail` lines."""
        return self._call(
            "deployment.readLogs",
            GET,
            _text,
            params={"deploymentId": deployment_id, "tail": tail},
        )

    # Look-ups after an ambiguous create --------------------------------------------------

    def _recover_project(self, name: str) -> Recover[ProjectCreated]:
        def recover(try_number: int, started: datetime) -> ProjectCreated | None:
            projects = self._send("project.all", GET, try_number, lookup=True)
            row = _made_since([p for p in _rows(projects) if p.get("name") == name], started)
            if row is None:
                return None
            project = Project.from_api(row)
            environment = project.production_environment()
            if environment is None:
                listed = self._send(
                    "environment.byProjectId",
                    GET,
                    try_number,
                    params={"projectId": project.project_id},
                    lookup=True,
                )
                environment = production_environment(
                    [Environment.from_api(e) for e in _rows(listed)]
                )
            if environment is None:
                raise DokployError.bad_response(
                    "project.create", f"project {name} exists without a production environment"
                )
            raw: JSON = redact({"project": row, "environment": environment.raw})
            return ProjectCreated(project=project, environment=environment, raw=raw)

        return recover

    def _recover_application(
        self, name: str, environment_id: str, project_id: str | None
    ) -> Recover[Application]:
        known = {"project_id": project_id}

        def recover(try_number: int, started: datetime) -> Application | None:
            known["project_id"] = known["project_id"] or self._project_of(
                environment_id, try_number
            )
            if known["project_id"] is None:
                return None
            listed = self._send(
                "environment.byProjectId",
                GET,
                try_number,
                params={"projectId": known["project_id"]},
                lookup=True,
            )
            for environment in _rows(listed):
                if environment.get("environmentId") == environment_id:
                    apps = [
                        a for a in _rows(environment.get("applications")) if a.get("name") == name
                    ]
                    row = _made_since(apps, started)
                    return Application.from_api(row, environment_id=environment_id) if row else None
            return None

        return recover

    def _project_of(self, environment_id: str, try_number: int) -> str | None:
        for project in _rows(self._send("project.all", GET, try_number, lookup=True)):
            for environment in _rows(project.get("environments")):
                if environment.get("environmentId") == environment_id:
                    return str(project["projectId"])
        return None

    def _recover_mount(
        self, application_id: str, volume_name: str, mount_path: str
    ) -> Recover[Mount]:
        def recover(try_number: int, started: datetime) -> Mount | None:
            listed = self._send(
                "mounts.listByServiceId",
                GET,
                try_number,
                params={"serviceId": application_id, "serviceType": "application"},
                lookup=True,
            )
            for row in _rows(listed):
                if row.get("mountPath") == mount_path and row.get("volumeName") == volume_name:
                    return Mount.from_api(row)
            return None

        return recover

    def _recover_domain(self, host: str, application_id: str) -> Recover[Domain]:
        def recover(try_number: int, started: datetime) -> Domain | None:
            listed = self._send(
                "domain.byApplicationId",
                GET,
                try_number,
                params={"applicationId": application_id},
                lookup=True,
            )
            row = _made_since([d for d in _rows(listed) if d.get("host") == host], started)
            return Domain.from_api(row) if row else None

        return recover

    # One call: retries around requests ---------------------------------------------------

    def _call(
        self,
        endpoint: str,
        method: str,
        parse: Callable[[Any], T],
        *,
        params: JSON | None = None,
        body: JSON | None = None,
        recover: Recover[T] | None = None,
        final: Callable[[DokployError], bool] | None = None,
    ) -> T:
        """One call: tries of one request, with waits, look-ups and the breaker between them.

        What happens after a failed try is decided in one place, RetryPolicy.next_step(). For
        a create (`recover` given), a try after an ambiguous failure first looks for what an
        earlier try made, so a create is never sent twice.
        """
        self._api_key.get(endpoint)  # no key: fail before anything is sent
        started = timezone.now()

        def send_try(try_number: int) -> T:
            data = self._send(endpoint, method, try_number, params=params, body=body)
            # An answer we cannot read after a mutation: it may still have taken effect.
            return _checked(endpoint, lambda: parse(data), ambiguous=method == POST)

        def look_up(try_number: int) -> T | None:
            assert recover is not None
            return _checked(endpoint, lambda: recover(try_number, started))

        return self.retry.run(
            send_try,
            endpoint=endpoint,
            breaker=self.breaker,
            time_left=self.time_left,
            look_up=look_up if recover is not None else None,
            on_wait=self.on_wait,
            final=final,
        )

    # One HTTP request --------------------------------------------------------------------

    def _send(
        self,
        endpoint: str,
        method: str,
        try_number: int,
        *,
        params: JSON | None = None,
        body: JSON | None = None,
        lookup: bool = False,
    ) -> Any:
        """Send one request; the decoded JSON answer (None for an empty body) or DokployError.

        A `lookup` is made to settle an ambiguous create: its failure counts against the
        breaker, its success does not (it shows nothing about the operation that failed).
        """
        mutation = method == POST
        headers = {"x-api-key": self._api_key.get(endpoint)}
        content = None
        if mutation:
            headers["Content-Type"] = "application/json"
            content = json.dumps(body or {}, separators=(",", ":")).encode()
        if self.before_request is not None:
            self.before_request(endpoint)
        timeout = self._request_timeout(endpoint, try_number)
        ticket = self.breaker.claim(endpoint) if self.breaker is not None else Ticket()
        response: httpx.Response | None = None
        error: DokployError | None = None
        began = time.perf_counter()
        try:
            response = self._http.request(
                method, endpoint, params=params, content=content, headers=headers, timeout=timeout
            )
        except httpx.RequestError as exc:
            error = DokployError.from_transport(endpoint, exc, mutation=mutation, timeout=timeout)
        except BaseException:
            self._settle(ticket, None, sent=False)
            raise
        duration_ms = round((time.perf_counter() - began) * 1000)
        if response is not None and not response.is_success:
            error = DokployError.from_response(endpoint, response, mutation=mutation)
        self._settle(ticket, error, lookup=lookup)
        self._report(
            CallRecord(
                endpoint=endpoint,
                method=method,
                status_code=response.status_code if response is not None else None,
                duration_ms=duration_ms,
                try_number=try_number,
                error_code=error.code if error is not None else "",
            )
        )
        # Raised here, outside the except clause, so no httpx exception (whose request holds
        # the key header) rides along as __context__.
        if error is not None:
            raise error
        assert response is not None
        return _decode(endpoint, response, mutation=mutation)

    def _request_timeout(self, endpoint: str, try_number: int) -> float:
        """The request timeout, cut to the caller's deadline; no time left sends nothing."""
        left = self.time_left() if self.time_left is not None else None
        if left is None:
            return self.timeout
        if left <= 0:
            raise DokployError.deadline(endpoint, left, try_number)
        return min(self.timeout, left)

    def _settle(
        self, ticket: Ticket, error: DokployError | None, *, sent: bool = True, lookup: bool = False
    ) -> None:
        if self.breaker is None:
            return
        try:
            no_verdict = error is not None and (error.status == 429 or error.code == CONFIG)
            if not sent or no_verdict or (error is None and lookup):
                self.breaker.release(ticket)
            elif error is not None and _server_side(error):
                self.breaker.record_failure(ticket)
            else:
                self.breaker.record_success(ticket)
        except DatabaseError:
            logger.warning("could not update circuit breaker %s", self.breaker.name, exc_info=True)

    def _report(self, record: CallRecord) -> None:
        logger.debug(
            "%s %s -> %s in %d ms (try %d)",
            record.method,
            record.endpoint,
            record.status_code or record.error_code,
            record.duration_ms,
            record.try_number,
            extra={
                "endpoint": record.endpoint,
                "status": record.status_code,
                "duration_ms": record.duration_ms,
                "try": record.try_number,
                "error_code": record.error_code,
            },
        )
        if self.on_call is None:
            return
        try:
            self.on_call(record)
        except Exception:
            # Losing a metrics row must not turn a call that worked into a failure.
            logger.warning("could not record a Dokploy call", exc_info=True)


# --- Reading errors ---------------------------------------------------------------------------


def ignore_missing(delete: Callable[[str], object], resource_id: str) -> None:
    """Call a delete (application.delete, project.remove, ...); something already gone counts
    as deleted (Dokploy answers 404)."""
    try:
        delete(resource_id)
    except DokployError as exc:
        if exc.status != 404:
            raise


def volume_in_use(error: DokployError) -> bool:
    """dockerVolume.removeVolume failed because a container still uses the volume: after
    application.delete this passes once Swarm has removed the container."""
    return _volume_failure(error, "volume is in use")


def volume_missing(error: DokployError) -> bool:
    """dockerVolume.removeVolume failed because there is no such volume: it is already gone
    (an earlier try may have removed it)."""
    return _volume_failure(error, "no such volume")


def _volume_failure(error: DokployError, reason: str) -> bool:
    return (
        error.endpoint == "dockerVolume.removeVolume"
        and error.status == 500
        and reason in error.message
    )


# --- Helpers ----------------------------------------------------------------------------------


def _server_side(error: DokployError) -> bool:
    """A failure that says Dokploy is unwell (for the circuit breaker)."""
    if volume_in_use(error) or volume_missing(error):
        return False  # Docker's sensible answer about one volume, sent as a 500
    if error.status is not None:
        return error.status >= 500
    return error.code in (NETWORK_ERROR, TIMEOUT)


def _decode(endpoint: str, response: httpx.Response, *, mutation: bool) -> Any:
    text = response.text
    if not text.strip():
        return None
    try:
        return json.loads(text)
    except ValueError:
        if "json" not in response.headers.get("content-type", ""):
            return text
    raise DokployError.bad_response(
        endpoint, "the answer is not valid JSON", text[:500], ambiguous=mutation
    )


def _checked(endpoint: str, build: Callable[[], T], *, ambiguous: bool = False) -> T:
    """`build()`, with an answer of an unexpected shape turned into BAD_RESPONSE."""
    try:
        return build()
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        problem = f"unexpected answer: {type(exc).__name__}: {exc}"
    raise DokployError.bad_response(endpoint, problem, ambiguous=ambiguous)


def _one(build: Callable[[JSON], T]) -> Callable[[Any], T]:
    def parse(data: Any) -> T:
        if not isinstance(data, dict):
            raise TypeError(f"expected an object, got {type(data).__name__}")
        return build(data)

    return parse


def _many(build: Callable[[JSON], T]) -> Callable[[Any], list[T]]:
    def parse(data: Any) -> list[T]:
        if not isinstance(data, list):
            raise TypeError(f"expected a list, got {type(data).__name__}")
        return [build(row) for row in data]

    return parse


def _flag(data: Any) -> bool:
    """Dokploy answers `true` for updates."""
    return data is not None and data is not False


def _nothing(data: Any) -> None:
    """Deploys answer with an empty body (or `true` on Dokploy Cloud)."""


def _text(data: Any) -> str:
    if data is None:
        return ""
    if not isinstance(data, str):
        raise TypeError(f"expected text, got {type(data).__name__}")
    return data


def _rows(data: Any) -> list[JSON]:
    if data is None:
        return []
    if not isinstance(data, list):
        raise TypeError(f"expected a list, got {type(data).__name__}")
    return [row for row in data if isinstance(row, dict)]


def _made_since(rows: list[JSON], started: datetime) -> JSON | None:
    """The row a create made: created at or after `started` when every row has a timestamp,
    else the only row there is. Compared to the second: Dokploy keeps milliseconds at most."""
    if not rows:
        return None
    since = started.replace(microsecond=0)
    stamped: list[tuple[datetime, int]] = []
    for index, row in enumerate(rows):
        created = row.get("createdAt")
        when = parse_time(created if isinstance(created, str) else None)
        if when is None:
            return rows[0] if len(rows) == 1 else None
        stamped.append((when, index))
    fresh = sorted(item for item in stamped if item[0] >= since)
    return rows[fresh[0][1]] if fresh else None


def _limit(name: str, value: int | None, minimum: int) -> str | None:
    """A limit as the digit string Dokploy parseInt-s, or None (sent as null: no limit)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be a whole number, not {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, not {value}")
    return str(value)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)
