"""Typed results of Dokploy calls.

Each type is built by `from_api()` from the JSON Dokploy returns, keeps the handful of fields the
portal reads, and tolerates missing optional keys (Dokploy's responses differ between endpoints:
project.all lists applications without `appName`, environment.byProjectId with it). Identifiers
are required: a row without its id is a bad response, and `from_api()` raises KeyError for it.

`raw` holds the response redacted (`stacks.redaction.redact`): it is what step records store.
Timestamps stay the ISO-8601 strings Dokploy sends; `parse_time()` turns them into datetimes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from stacks.redaction import redact

JSON = dict[str, Any]

# The kinds of service an environment can hold besides applications.
OTHER_SERVICE_KINDS = ("compose", "mariadb", "mongo", "mysql", "postgres", "redis", "libsql")


def parse_time(value: str | None) -> datetime | None:
    """An aware datetime from Dokploy's ISO-8601 timestamp, or None if there is none."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _str(data: JSON, key: str) -> str | None:
    value = data.get(key)
    return value if isinstance(value, str) else None


def _int(data: JSON, key: str) -> int | None:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value)


def _rows(data: JSON, key: str) -> list[JSON]:
    value = data.get(key)
    return [row for row in value if isinstance(row, dict)] if isinstance(value, list) else []


def _raw(data: JSON) -> JSON:
    cleaned: JSON = redact(data)
    return cleaned


@dataclass(frozen=True)
class ApplicationSummary:
    """An application as listed inside an environment."""

    application_id: str
    name: str
    app_name: str | None
    application_status: str | None
    created_at: str | None = None

    @classmethod
    def from_api(cls, data: JSON) -> ApplicationSummary:
        return cls(
            application_id=data["applicationId"],
            name=data.get("name") or "",
            app_name=_str(data, "appName"),
            application_status=_str(data, "applicationStatus"),
            created_at=_str(data, "createdAt"),
        )


@dataclass(frozen=True)
class Environment:
    environment_id: str
    name: str
    is_default: bool
    project_id: str | None
    applications: list[ApplicationSummary] = field(default_factory=list)
    description: str | None = None
    # One entry per non-application service (compose, databases), named by its kind.
    other_services: list[str] = field(default_factory=list)
    raw: JSON = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_api(cls, data: JSON, *, project_id: str | None = None) -> Environment:
        project = data.get("project")
        nested_project_id = _str(project, "projectId") if isinstance(project, dict) else None
        return cls(
            environment_id=data["environmentId"],
            name=data.get("name") or "",
            is_default=bool(data.get("isDefault")),
            project_id=_str(data, "projectId") or nested_project_id or project_id,
            applications=[ApplicationSummary.from_api(a) for a in _rows(data, "applications")],
            description=_str(data, "description"),
            other_services=[kind for kind in OTHER_SERVICE_KINDS for _ in _rows(data, kind)],
            raw=_raw(data),
        )


def production_environment(environments: list[Environment]) -> Environment | None:
    """The environment Dokploy makes with a project: the default one, named production."""
    defaults = (e for e in environments if e.is_default)
    named = (e for e in environments if e.name == "production")
    return next(defaults, None) or next(named, None)


@dataclass(frozen=True)
class Project:
    project_id: str
    name: str
    description: str | None = None
    created_at: str | None = None
    organization_id: str | None = None
    environments: list[Environment] = field(default_factory=list)
    raw: JSON = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_api(cls, data: JSON) -> Project:
        project_id = data["projectId"]
        return cls(
            project_id=project_id,
            name=data.get("name") or "",
            description=_str(data, "description"),
            created_at=_str(data, "createdAt"),
            organization_id=_str(data, "organizationId"),
            environments=[
                Environment.from_api(e, project_id=project_id) for e in _rows(data, "environments")
            ],
            raw=_raw(data),
        )

    def production_environment(self) -> Environment | None:
        return production_environment(self.environments)

    def applications(self) -> list[ApplicationSummary]:
        """Every application in the project's environments."""
        return [app for environment in self.environments for app in environment.applications]

    def services(self) -> list[str]:
        """Everything still in the project's environments, in words ("application x", ...)."""
        found = [f"application {app.name}" for app in self.applications()]
        for environment in self.environments:
            found.extend(f"{kind} service" for kind in environment.other_services)
        return found


@dataclass(frozen=True)
class ProjectCreated:
    """project.create's answer: the project and the production environment made with it."""

    project: Project
    environment: Environment
    raw: JSON = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_api(cls, data: JSON) -> ProjectCreated:
        project = Project.from_api(data["project"])
        environment = Environment.from_api(data["environment"], project_id=project.project_id)
        return cls(project=project, environment=environment, raw=_raw(data))


@dataclass(frozen=True)
class Domain:
    domain_id: str
    host: str
    https: bool
    port: int | None
    path: str | None
    certificate_type: str | None
    domain_type: str | None
    application_id: str | None
    created_at: str | None = None
    raw: JSON = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_api(cls, data: JSON) -> Domain:
        return cls(
            domain_id=data["domainId"],
            host=data.get("host") or "",
            https=bool(data.get("https")),
            port=_int(data, "port"),
            path=_str(data, "path"),
            certificate_type=_str(data, "certificateType"),
            domain_type=_str(data, "domainType"),
            application_id=_str(data, "applicationId"),
            created_at=_str(data, "createdAt"),
            raw=_raw(data),
        )


@dataclass(frozen=True)
class Deployment:
    deployment_id: str
    status: str | None
    title: str | None = None
    created_at: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    error_message: str | None = None
    log_path: str | None = None
    raw: JSON = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_api(cls, data: JSON) -> Deployment:
        return cls(
            deployment_id=data["deploymentId"],
            status=_str(data, "status"),
            title=_str(data, "title"),
            created_at=_str(data, "createdAt"),
            started_at=_str(data, "startedAt"),
            finished_at=_str(data, "finishedAt"),
            error_message=_str(data, "errorMessage"),
            log_path=_str(data, "logPath"),
            raw=_raw(data),
        )


@dataclass(frozen=True)
class Mount:
    """A mount row: what a service's container gets at its next deploy, redeploy or reload.

    `application_id` is None for a row created without `serviceType`: Dokploy keeps it but never
    mounts it. For a volume, an empty `volume_name` means an anonymous volume, new and empty at
    every deploy.
    """

    mount_id: str
    type: str | None
    mount_path: str
    volume_name: str | None
    service_type: str | None
    application_id: str | None
    host_path: str | None = None
    raw: JSON = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_api(cls, data: JSON) -> Mount:
        return cls(
            mount_id=data["mountId"],
            type=_str(data, "type"),
            mount_path=data.get("mountPath") or "",
            volume_name=_str(data, "volumeName"),
            service_type=_str(data, "serviceType"),
            application_id=_str(data, "applicationId"),
            host_path=_str(data, "hostPath"),
            raw=_raw(data),
        )

    @property
    def is_named_volume(self) -> bool:
        """A volume mount whose files outlive the container: it has a volume name."""
        return self.type == "volume" and bool(self.volume_name)


@dataclass(frozen=True)
class DockerVolume:
    """A volume on the Docker host, as `docker volume ls` lists it."""

    name: str
    driver: str | None = None
    mountpoint: str | None = None

    @classmethod
    def from_api(cls, data: JSON) -> DockerVolume:
        return cls(
            name=data["Name"], driver=_str(data, "Driver"), mountpoint=_str(data, "Mountpoint")
        )


@dataclass(frozen=True)
class Application:
    application_id: str
    name: str
    app_name: str | None
    environment_id: str | None
    application_status: str | None
    source_type: str | None = None
    docker_image: str | None = None
    replicas: int | None = None
    created_at: str | None = None
    # The limit columns as Dokploy stores them: digit strings (bytes, nano-CPUs) or None.
    memory_limit: str | None = None
    memory_reservation: str | None = None
    cpu_limit: str | None = None
    cpu_reservation: str | None = None
    domains: list[Domain] = field(default_factory=list)
    deployments: list[Deployment] = field(default_factory=list)
    mounts: list[Mount] = field(default_factory=list)
    raw: JSON = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_api(cls, data: JSON, *, environment_id: str | None = None) -> Application:
        return cls(
            application_id=data["applicationId"],
            name=data.get("name") or "",
            app_name=_str(data, "appName"),
            environment_id=_str(data, "environmentId") or environment_id,
            application_status=_str(data, "applicationStatus"),
            source_type=_str(data, "sourceType"),
            docker_image=_str(data, "dockerImage"),
            replicas=_int(data, "replicas"),
            created_at=_str(data, "createdAt"),
            memory_limit=_str(data, "memoryLimit"),
            memory_reservation=_str(data, "memoryReservation"),
            cpu_limit=_str(data, "cpuLimit"),
            cpu_reservation=_str(data, "cpuReservation"),
            domains=[Domain.from_api(d) for d in _rows(data, "domains")],
            deployments=[Deployment.from_api(d) for d in _rows(data, "deployments")],
            mounts=[Mount.from_api(m) for m in _rows(data, "mounts")],
            raw=_raw(data),
        )
