"""An in-process stand-in for Dokploy's REST API, with state and fault injection.

It speaks the REST flavour of Dokploy's API (``/api/<router>.<procedure>``) for the procedures the
portal uses, with the same transport rules: ``x-api-key`` checked before routing (401
``{"message":"Unauthorized"}``), queries as GET and mutations as POST (the wrong method is a 404),
415 without a JSON content type, raw JSON results with no envelope, an empty body for procedures
that return nothing, and tRPC-shaped error bodies with zod-style ``issues`` on input validation
failures.

What it models:

* Database rows for projects, environments, applications, domains and deployments, with the
  cascades Dokploy's schema has (project -> environments -> applications -> domains/deployments).
* The Docker side separately from the rows: ``services`` (the Swarm services, keyed by appName)
  and ``routes`` (the Traefik file-provider routers, host -> appName). ``project.remove`` deletes
  rows only, so the services and routes of its applications stay behind and keep serving, like in
  Dokploy; ``application.delete`` removes both.
* Mounts (``mounts.create``, ``remove``, ``one``, ``listByServiceId``) as rows like Dokploy's: the
  create is not idempotent, and a row made without ``serviceType`` is stored with
  ``applicationId`` null and never mounted. ``application.one`` answers the rows in ``mounts``.
* The Docker host (``stacks.dokploy.docker_host``): every deploy, redeploy and reload rebuilds
  the service spec from the rows, with the mounts and the four limit columns ``parseInt``-ed the
  way Dokploy does, and checks it the way Swarm and the daemon would (limits below Docker's
  minimums, more CPUs than the simulated host has, two mounts on one path): a spec they refuse
  fails the deployment with their message. ``application.start`` reuses the last spec.
* Docker volumes with files in them. A named volume comes into existence at the first deploy
  that mounts it and outlives redeploys, stop/start, ``application.delete``, ``project.remove``
  and ``mounts.remove``; an empty volume name gets a new anonymous volume for every container,
  so its files are lost. Each running container also has a writable layer that its successor
  does not inherit. ``dockerVolume.removeVolume`` answers 500 "volume is in use" while a service
  mounts the volume, and for a while after ``application.delete`` (the next
  ``volume_release_calls`` calls and ``volume_release_seconds``), as Swarm takes the container
  down; ``settings.cleanUnusedVolumes`` prunes every volume no running service uses.
* Asynchronous deployments: ``application.deploy``/``redeploy`` only queue a job. One FIFO queue
  per server (all applications here are on the local server, so deployments run one at a time,
  like Dokploy's queue). After ``queue_delay`` the worker inserts a ``running`` deployment row and
  marks the application ``running``; after ``deploy_seconds`` both become ``done`` (the service
  is created or updated) or ``error``.
* The public side of the stacks: ``GET /_stack/<host>/health`` and ``GET /_stack/<host>/`` answer
  like the deployed ttyd container behind Traefik: 200 when a route for the host leads to a service
  with at least one replica, 502 when the route exists but no service answers, 404 (Traefik's
  "404 page not found") when no router knows the host, 503 when the host is marked unhealthy.
* Faults, through the Python API or the ``/_sim/`` control API: failing the next N calls of an
  endpoint (status, body, ``Retry-After``, delay, dropped connection, or failing after the effect
  happened), latency on every call, failing deployments, unhealthy stacks.
* Files, through the Python API (``write_file``, ``read_file``, ``add_volume``, ``volume``) or
  ``/_sim/files`` and ``/_sim/volumes``: a marker written at a path inside a running service lands
  in the volume mounted there (or in the container's own layer), so tests can see what survives.

Where it simplifies:

* One organization and one all-powerful API key: no members, permissions, rate limits or 403s.
* No remote servers: a non-null ``serverId`` fails like a foreign-key error (400).
* Builds are not run: only docker-image sources deploy; any other source type, or a missing
  image, ends the deployment in ``error``. Images are never pulled, so any image name works.
* Only the columns and relations the portal reads are modelled in depth; ports, redirects,
  security rules, preview deployments, compose and databases are always empty lists. Bind and
  file mounts are stored and count as mount points, but hold no files.
* One Swarm node with ``host_cpus`` CPUs and ``host_memory_bytes`` of memory (4 and 8 GiB unless
  given). A task the daemon or scheduler refuses fails the deployment here; in Dokploy the
  deployment says ``done`` and the task never runs. A service update Swarm refuses is reported
  with Swarm's reason (Dokploy then retries it as a create and reports the name conflict).
* A redeploy replaces the container at once: the old and new containers never share a volume.
  A stopped service keeps its volumes in use for ``dockerVolume.removeVolume`` (its spec still
  mounts them), while ``settings.cleanUnusedVolumes`` counts only running services, as
  API-NOTES item 14 describes.
* Validation covers the zod rules of the modelled inputs (required keys, types, min/max lengths,
  enums, the appName and host patterns, port range); messages follow zod 4's wording.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import html
import json
import math
import queue
import re
import secrets
import signal
import socket
import string
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType, TracebackType
from typing import Any, Final
from urllib.parse import parse_qsl, unquote, urlsplit

from stacks.dokploy import docker_host
from stacks.dokploy.docker_host import Volume
from stacks.dokploy.docker_rules import is_volume_name
from stacks.dokploy.trpc import TRPC_CODES

Row = dict[str, Any]
Input = dict[str, Any]
Issue = dict[str, Any]

DEFAULT_API_KEY: Final = "simulator-key"
MAX_DEPLOYMENTS_PER_APP: Final = 10
_NANOID_ALPHABET: Final = string.ascii_letters + string.digits + "_-"
_SUFFIX_ALPHABET: Final = string.ascii_lowercase + string.digits
_LOCAL_SERVER: Final = "local"


class _NoContent:
    """Marker for procedures that return nothing (the body is empty)."""


NO_CONTENT: Final = _NoContent()


def nanoid(size: int = 21) -> str:
    return "".join(secrets.choice(_NANOID_ALPHABET) for _ in range(size))


def now_iso() -> str:
    """The current time the way JavaScript's ``Date.toISOString()`` writes it."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --- Errors -------------------------------------------------------------------------------------


def trpc_error_body(
    status: int,
    message: str,
    path: str | None,
    *,
    code: str | None = None,
    issues: list[Issue] | None = None,
) -> dict[str, Any]:
    """The JSON body Dokploy sends for every error except the auth wrapper's 401."""
    code = code or TRPC_CODES.get(status, "INTERNAL_SERVER_ERROR")
    zod_error = flatten_issues(issues) if issues is not None else None
    body: dict[str, Any] = {
        "message": message,
        "code": code,
        "data": {"code": code, "httpStatus": status, "path": path, "zodError": zod_error},
    }
    if issues is not None:
        body["issues"] = issues
    return body


def flatten_issues(issues: list[Issue]) -> dict[str, Any]:
    """zod's ``error.flatten()``: top-level messages and messages per first path element."""
    form_errors: list[str] = []
    field_errors: dict[str, list[str]] = {}
    for issue in issues:
        if issue["path"]:
            field_errors.setdefault(str(issue["path"][0]), []).append(issue["message"])
        else:
            form_errors.append(issue["message"])
    return {"formErrors": form_errors, "fieldErrors": field_errors}


class ApiError(Exception):
    """A tRPC error raised by a procedure; rendered as a tRPC error body."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        issues: list[Issue] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.issues = issues

    def body(self, path: str | None) -> dict[str, Any]:
        return trpc_error_body(self.status, self.message, path, code=self.code, issues=self.issues)


def not_found(message: str) -> ApiError:
    return ApiError(404, message)


# --- Input validation (a small subset of zod) ---------------------------------------------------


@dataclass(frozen=True)
class Field:
    """One input key: its type and the zod checks Dokploy's schema applies to it."""

    kind: str  # string | number | integer | boolean | enum | array | any
    required: bool = False
    nullable: bool = False
    min_length: int | None = None
    max_length: int | None = None
    pattern: str | None = None
    pattern_message: str | None = None
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None


Schema = Mapping[str, Field]


class _Undefined:
    pass


_UNDEFINED: Final = _Undefined()


def _received(value: object) -> str:
    if value is _UNDEFINED:
        return "undefined"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _type_issue(path: list[str | int], expected: str, value: object) -> Issue:
    return {
        "expected": expected,
        "code": "invalid_type",
        "path": path,
        "message": f"Invalid input: expected {expected}, received {_received(value)}",
    }


def _size_issue(path: list[str | int], origin: str, bound: float, *, too_small: bool) -> Issue:
    unit = " characters" if origin == "string" else ""
    verb = "have" if origin == "string" else "be"
    op, code, key = (">=", "too_small", "minimum") if too_small else ("<=", "too_big", "maximum")
    shown: float = int(bound) if float(bound).is_integer() else bound
    return {
        "origin": origin,
        "code": code,
        key: shown,
        "inclusive": True,
        "path": path,
        "message": f"{'Too small' if too_small else 'Too big'}: expected {origin} to "
        f"{verb} {op}{shown}{unit}",
    }


def _check_string(spec: Field, value: str, path: list[str | int]) -> Issue | None:
    if spec.min_length is not None and len(value) < spec.min_length:
        return _size_issue(path, "string", spec.min_length, too_small=True)
    if spec.max_length is not None and len(value) > spec.max_length:
        return _size_issue(path, "string", spec.max_length, too_small=False)
    if spec.pattern is not None and not re.fullmatch(spec.pattern, value):
        pattern = f"/^{spec.pattern}$/"
        return {
            "origin": "string",
            "code": "invalid_format",
            "format": "regex",
            "pattern": pattern,
            "path": path,
            "message": spec.pattern_message or f"Invalid string: must match pattern {pattern}",
        }
    return None


def _check_number(spec: Field, value: float, path: list[str | int]) -> Issue | None:
    if spec.kind == "integer" and not float(value).is_integer():
        return _type_issue(path, "int", value)
    if spec.minimum is not None and value < spec.minimum:
        return _size_issue(path, "number", spec.minimum, too_small=True)
    if spec.maximum is not None and value > spec.maximum:
        return _size_issue(path, "number", spec.maximum, too_small=False)
    return None


def _check_field(spec: Field, value: object, path: list[str | int]) -> Issue | None:
    if value is None and spec.nullable:
        return None
    if spec.kind == "any":
        return None
    if spec.kind == "enum":
        if value in spec.choices:
            return None
        options = "|".join(f'"{choice}"' for choice in spec.choices)
        return {
            "code": "invalid_value",
            "values": list(spec.choices),
            "path": path,
            "message": f"Invalid option: expected one of {options}",
        }
    if spec.kind == "string":
        if not isinstance(value, str):
            return _type_issue(path, "string", value)
        return _check_string(spec, value, path)
    if spec.kind in ("number", "integer"):
        if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
            return _type_issue(path, "number", value)
        return _check_number(spec, value, path)
    if spec.kind == "boolean":
        return None if isinstance(value, bool) else _type_issue(path, "boolean", value)
    if spec.kind == "array":
        if not isinstance(value, list):
            return _type_issue(path, "array", value)
        for index, item in enumerate(value):
            if not isinstance(item, str):
                return _type_issue([*path, index], "string", item)
        return None
    raise ValueError(f"unknown field kind {spec.kind!r}")


def _coerce_query_value(spec: Field, value: str) -> object:
    """Query strings are text; the REST adapter coerces them for number and boolean inputs."""
    if spec.kind in ("number", "integer"):
        try:
            number = float(value)
        except ValueError:
            return math.nan
        return int(number) if number.is_integer() else number
    if spec.kind == "boolean" and value in ("true", "false"):
        return value == "true"
    return value


def validate(schema: Schema, raw: object, *, from_query: bool = False) -> Input:
    """Check ``raw`` against ``schema``; return only the known keys (zod drops the others)."""
    if not isinstance(raw, dict):
        raise validation_error([_type_issue([], "object", raw)])
    issues: list[Issue] = []
    clean: Input = {}
    for name, spec in schema.items():
        if name not in raw:
            if spec.required:
                issues.append(_type_issue([name], _expected_name(spec), _UNDEFINED))
            continue
        value = raw[name]
        if from_query and isinstance(value, str):
            value = _coerce_query_value(spec, value)
        issue = _check_field(spec, value, [name])
        if issue is None:
            clean[name] = value
        else:
            issues.append(issue)
    if issues:
        raise validation_error(issues)
    return clean


def _expected_name(spec: Field) -> str:
    return {"enum": "string", "integer": "number", "any": "unknown"}.get(spec.kind, spec.kind)


def validation_error(issues: list[Issue]) -> ApiError:
    return ApiError(400, "Input validation failed", issues=issues)


def _str(*, required: bool = False, nullable: bool = False, min_length: int | None = None) -> Field:
    return Field("string", required=required, nullable=nullable, min_length=min_length)


def _enum(*choices: str, nullable: bool = False) -> Field:
    return Field("enum", choices=choices, nullable=nullable)


APP_NAME_PATTERN: Final = r"[a-zA-Z0-9._-]+"
HOST_PATTERN: Final = r"[a-zA-Z0-9.-]+"
SOURCE_TYPES: Final = ("github", "docker", "git", "gitlab", "bitbucket", "gitea", "drop")
CERTIFICATE_TYPES: Final = ("letsencrypt", "none", "custom")
DOMAIN_TYPES: Final = ("compose", "application", "preview")
APPLICATION_STATUSES: Final = ("idle", "running", "done", "error")
BUILD_TYPES: Final = (
    "dockerfile",
    "heroku_buildpacks",
    "paketo_buildpacks",
    "nixpacks",
    "static",
    "railpack",
)

_ID = _str(required=True, min_length=1)
_APP_NAME = Field("string", min_length=1, max_length=63, pattern=APP_NAME_PATTERN)
_HOST = Field(
    "string",
    required=True,
    min_length=1,
    pattern=HOST_PATTERN,
    pattern_message="Invalid hostname: use letters, digits, hyphens and dots only",
)
_PORT = Field("number", nullable=True, minimum=1, maximum=65535)

S_NONE: Final[Schema] = {}
S_PROJECT_CREATE: Final[Schema] = {
    "name": _str(required=True, min_length=1),
    "description": _str(nullable=True),
    "env": _str(),
}
S_PROJECT_ID: Final[Schema] = {"projectId": _ID}
S_PROJECT_SEARCH: Final[Schema] = {
    "q": _str(),
    "name": _str(),
    "description": _str(),
    "limit": Field("number", minimum=1, maximum=100),
    "offset": Field("number", minimum=0),
}
S_BY_PROJECT_ID: Final[Schema] = {"projectId": _str(required=True)}
S_ENVIRONMENT_ID: Final[Schema] = {"environmentId": _ID}
S_APPLICATION_CREATE: Final[Schema] = {
    "name": _str(required=True, min_length=1),
    "appName": _APP_NAME,
    "description": _str(nullable=True),
    "environmentId": _str(required=True),
    "serverId": _str(nullable=True),
    "sourceType": _enum(*SOURCE_TYPES),
}
S_APPLICATION_ID: Final[Schema] = {"applicationId": _ID}
S_SAVE_DOCKER_PROVIDER: Final[Schema] = {
    "applicationId": _str(required=True),
    "dockerImage": _str(required=True, nullable=True),
    "username": _str(required=True, nullable=True),
    "password": _str(required=True, nullable=True),
    "registryUrl": _str(required=True, nullable=True),
}
S_DEPLOY: Final[Schema] = {"applicationId": _ID, "title": _str(), "description": _str()}
S_RELOAD: Final[Schema] = {
    "applicationId": _str(required=True),
    "appName": Field(
        "string", required=True, min_length=1, max_length=63, pattern=APP_NAME_PATTERN
    ),
}
_DOMAIN_FIELDS: Final[Schema] = {
    "host": _HOST,
    "path": Field("string", nullable=True, min_length=1),
    "port": _PORT,
    "customEntrypoint": _str(nullable=True),
    "https": Field("boolean"),
    "certificateType": _enum(*CERTIFICATE_TYPES),
    "customCertResolver": _str(nullable=True),
    "serviceName": _str(nullable=True),
    "domainType": _enum(*DOMAIN_TYPES, nullable=True),
    "internalPath": _str(nullable=True),
    "stripPath": Field("boolean"),
    "middlewares": Field("array", nullable=True),
    "forwardAuthEnabled": Field("boolean"),
}
S_DOMAIN_CREATE: Final[Schema] = {
    **_DOMAIN_FIELDS,
    "applicationId": _str(nullable=True),
    "composeId": _str(nullable=True),
    "previewDeploymentId": _str(nullable=True),
}
S_DOMAIN_UPDATE: Final[Schema] = {
    **_DOMAIN_FIELDS,
    "enabled": Field("boolean"),
    "domainId": _str(required=True),
}
S_DOMAIN_ID: Final[Schema] = {"domainId": _ID}
S_DEPLOYMENT_LOGS: Final[Schema] = {
    "deploymentId": _ID,
    "tail": Field("integer", minimum=1, maximum=10000),
}
MOUNT_TYPES: Final = ("bind", "volume", "file")
SERVICE_TYPES: Final = (
    "application",
    "postgres",
    "mysql",
    "mariadb",
    "mongo",
    "redis",
    "compose",
    "libsql",
)
S_MOUNT_CREATE: Final[Schema] = {
    "type": Field("enum", required=True, choices=MOUNT_TYPES),
    "hostPath": _str(nullable=True),
    "volumeName": _str(nullable=True),
    "content": _str(nullable=True),
    "mountPath": _str(required=True, min_length=1),
    "filePath": _str(nullable=True),
    "serviceType": _enum(*SERVICE_TYPES),
    "serviceId": _ID,
}
S_MOUNT_REMOVE: Final[Schema] = {"mountId": _str(required=True)}
S_MOUNT_ID: Final[Schema] = {"mountId": _ID}
S_MOUNT_LIST: Final[Schema] = {"serviceType": _ID, "serviceId": _ID}
S_REMOVE_VOLUME: Final[Schema] = {
    "volumeName": Field(
        "string",
        required=True,
        min_length=1,
        pattern=r"[a-zA-Z0-9.\-_]+",
        pattern_message="Invalid volume name.",
    ),
    "serverId": _str(),
}
S_SERVER: Final[Schema] = {"serverId": _str()}


# --- Rows -----------------------------------------------------------------------------------


def application_row(
    *, name: str, app_name: str, environment_id: str, description: str | None, source_type: str
) -> Row:
    """A freshly inserted application row with Dokploy's column defaults."""
    return {
        "applicationId": nanoid(),
        "name": name,
        "appName": app_name,
        "description": description,
        "env": None,
        "previewEnv": None,
        "watchPaths": None,
        "previewBuildArgs": None,
        "previewBuildSecrets": None,
        "previewLabels": None,
        "previewWildcard": None,
        "previewPort": 3000,
        "previewHttps": False,
        "previewPath": "/",
        "previewCertificateType": "none",
        "previewCustomCertResolver": None,
        "previewLimit": 3,
        "isPreviewDeploymentsActive": False,
        "previewRequireCollaboratorPermissions": True,
        "rollbackActive": False,
        "buildArgs": None,
        "buildSecrets": None,
        "memoryReservation": None,
        "memoryLimit": None,
        "cpuReservation": None,
        "cpuLimit": None,
        "title": None,
        "enabled": None,
        "subtitle": None,
        "command": None,
        "args": None,
        "icon": None,
        "refreshToken": nanoid(),
        "sourceType": source_type,
        "cleanCache": False,
        "repository": None,
        "owner": None,
        "branch": None,
        "buildPath": "/",
        "triggerType": "push",
        "autoDeploy": True,
        "gitlabProjectId": None,
        "gitlabRepository": None,
        "gitlabOwner": None,
        "gitlabBranch": None,
        "gitlabBuildPath": "/",
        "gitlabPathNamespace": None,
        "giteaRepository": None,
        "giteaOwner": None,
        "giteaBranch": None,
        "giteaBuildPath": "/",
        "bitbucketRepository": None,
        "bitbucketRepositorySlug": None,
        "bitbucketOwner": None,
        "bitbucketBranch": None,
        "bitbucketBuildPath": "/",
        "username": None,
        "password": None,
        "dockerImage": None,
        "registryUrl": None,
        "customGitUrl": None,
        "customGitBranch": None,
        "customGitBuildPath": None,
        "customGitSSHKeyId": None,
        "enableSubmodules": False,
        "dockerfile": None,
        "dockerContextPath": None,
        "dockerBuildStage": None,
        "dropBuildPath": None,
        "healthCheckSwarm": None,
        "restartPolicySwarm": None,
        "placementSwarm": None,
        "updateConfigSwarm": None,
        "rollbackConfigSwarm": None,
        "modeSwarm": None,
        "labelsSwarm": None,
        "networkSwarm": None,
        "stopGracePeriodSwarm": None,
        "endpointSpecSwarm": None,
        "ulimitsSwarm": None,
        "replicas": 1,
        "applicationStatus": "idle",
        "buildType": "nixpacks",
        "railpackVersion": "0.2.2",
        "herokuVersion": "24",
        "publishDirectory": None,
        "isStaticSpa": None,
        "createEnvFile": True,
        "createdAt": now_iso(),
        "registryId": None,
        "rollbackRegistryId": None,
        "environmentId": environment_id,
        "githubId": None,
        "gitlabId": None,
        "giteaId": None,
        "bitbucketId": None,
        "serverId": None,
        "buildServerId": None,
        "buildRegistryId": None,
        "networkIds": None,
        "detachDokployNetwork": False,
    }


_APP_UPDATE_OVERRIDES: Final[Schema] = {
    "applicationId": _ID,
    "name": _str(min_length=1),
    "appName": _APP_NAME,
    "sourceType": _enum(*SOURCE_TYPES),
    "applicationStatus": _enum(*APPLICATION_STATUSES),
    "buildType": _enum(*BUILD_TYPES),
    "previewCertificateType": _enum(*CERTIFICATE_TYPES),
    "triggerType": _enum("push", "tag", nullable=True),
    "replicas": Field("number"),
    "previewHttps": Field("boolean"),
    "enableSubmodules": Field("boolean"),
    "createEnvFile": Field("boolean"),
    "detachDokployNetwork": Field("boolean"),
    "createdAt": _str(),
    "environmentId": _str(),
    "gitlabProjectId": Field("number", nullable=True),
    "watchPaths": Field("array", nullable=True),
    "previewLabels": Field("array", nullable=True),
    "args": Field("array", nullable=True),
    "networkIds": Field("array", nullable=True),
}


def _infer_update_field(column: str, default: object) -> Field:
    if column.endswith("Swarm"):
        return Field("any", nullable=True)
    if isinstance(default, bool):
        return Field("boolean", nullable=True)
    if isinstance(default, int):
        return Field("number", nullable=True)
    return _str(nullable=True)


def _application_update_schema() -> Schema:
    template = application_row(
        name="x", app_name="x", environment_id="x", description=None, source_type="github"
    )
    schema = {
        column: _APP_UPDATE_OVERRIDES.get(column) or _infer_update_field(column, default)
        for column, default in template.items()
        if column != "serverId"
    }
    schema["applicationId"] = _ID
    return schema


S_APPLICATION_UPDATE: Final[Schema] = _application_update_schema()

_VERBS: Final = ("parse", "index", "compress", "bypass", "copy", "navigate", "synthesize", "hack")
_ADJECTIVES: Final = ("virtual", "digital", "primary", "neural", "mobile", "wireless", "online")
_NOUNS: Final = ("bus", "pixel", "array", "driver", "matrix", "protocol", "monitor", "circuit")

_TTYD_PAGE: Final = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="UTF-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>ttyd - opencode</title>
<style>
html, body {{ margin: 0; height: 100%; background: #2b2b2b; }}
#terminal-container {{ height: 100%; color: #f0f0f0; font-family: monospace; }}
</style>
</head>
<body>
<div id="terminal-container"><pre>opencode @ {app_name}
$ </pre></div>
<script>window.tty = {{ host: {host_json} }};</script>
</body>
</html>
"""


# --- Faults ---------------------------------------------------------------------------------


@dataclass
class Fault:
    """The next ``times`` calls of ``endpoint`` misbehave this way."""

    endpoint: str
    times: int = 1
    status: int = 503
    body: Any = None
    retry_after: float | str | None = None
    delay: float = 0.0
    drop: bool = False
    after_effect: bool = False

    @property
    def fails(self) -> bool:
        return self.drop or self.status >= 400


@dataclass
class _DeployFault:
    message: str
    times: int = 1


@dataclass
class _Job:
    application_id: str
    kind: str  # deploy | redeploy
    title: str
    description: str | None
    generation: int


@dataclass
class Route:
    method: str
    schema: Schema
    handler: Callable[[Input], Any]
    # The whole input may be left out (zod's `.optional()` on the object).
    optional_input: bool = False


@dataclass
class _VolumeHold:
    """A deleted service's container that still holds a volume while Swarm removes it."""

    container_id: str
    calls: int
    until: float


_ControlHandler = Callable[[dict[str, Any]], Any]


# --- HTTP plumbing --------------------------------------------------------------------------


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: Mapping[str, str]
    body: bytes


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False


def json_response(status: int, payload: object, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(payload).encode()
    return Response(status, body, "application/json", headers or {})


def text_response(status: int, text: str, content_type: str = "text/plain") -> Response:
    return Response(status, text.encode(), f"{content_type}; charset=utf-8")


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "DokploySimulator/1.0"
    timeout = 60
    # Send each answer in one segment: separate header and body writes meet delayed ACKs.
    wbufsize = -1
    disable_nagle_algorithm = True
    server: _HttpServer

    def do_GET(self) -> None:
        self._serve()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_GET

    def _serve(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        request = Request(
            method=self.command,
            path=unquote(parts.path),
            query=dict(parse_qsl(parts.query, keep_blank_values=True)),
            headers={key.lower(): value for key, value in self.headers.items()},
            body=self.rfile.read(length) if length > 0 else b"",
        )
        self._write(self.server.simulator.handle(request))

    def _write(self, response: Response) -> None:
        if response.drop:
            self.close_connection = True
            return
        try:
            self.send_response(response.status)
            self.send_header("Content-Type", response.content_type)
            self.send_header("Content-Length", str(len(response.body)))
            for name, value in response.headers.items():
                self.send_header(name, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(response.body)
            self.wfile.flush()
        except OSError:  # the client gave up (timeout) before the answer came
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the simulator records calls itself (see ``calls()``)."""


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], simulator: DokploySimulator) -> None:
        self.simulator = simulator
        self._connections: dict[threading.Thread, socket.socket] = {}
        self._connections_lock = threading.Lock()
        super().__init__(address, _RequestHandler)

    def process_request(self, request: Any, client_address: Any) -> None:
        """One daemon thread per connection, tracked so ``close_connections`` can end it."""
        thread = threading.Thread(
            target=self._serve_connection,
            args=(request, client_address),
            name=f"dokploy-simulator-{self.server_port}-connection",
            daemon=True,
        )
        with self._connections_lock:
            self._connections[thread] = request
        thread.start()

    def _serve_connection(self, request: Any, client_address: Any) -> None:
        try:
            self.process_request_thread(request, client_address)
        finally:
            with self._connections_lock:
                self._connections.pop(threading.current_thread(), None)

    def close_connections(self, timeout: float = 5.0) -> None:
        """Close open (keep-alive) connections and wait for their threads to end."""
        with self._connections_lock:
            connections = list(self._connections.items())
        for _, connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        for thread, _ in connections:
            thread.join(timeout)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Connection errors from clients that hung up are expected; keep stderr clean."""


# --- The simulator --------------------------------------------------------------------------


class DokploySimulator:
    """A Dokploy look-alike HTTP server: ``start()`` it, point a client at ``url``, ``stop()``."""

    def __init__(
        self,
        api_key: str = DEFAULT_API_KEY,
        host: str = "127.0.0.1",
        port: int = 0,
        deploy_seconds: float = 1.0,
        queue_delay: float = 0.05,
        latency: float = 0.0,
        volume_release_calls: int = 1,
        volume_release_seconds: float = 0.0,
        host_cpus: int = docker_host.HOST_CPUS,
        host_memory_bytes: int = docker_host.HOST_MEMORY_BYTES,
    ) -> None:
        self.api_key = api_key
        self.host = host
        self.port = port
        self.deploy_seconds = deploy_seconds
        self.queue_delay = queue_delay
        # After application.delete, dockerVolume.removeVolume still finds the service's volumes
        # in use for this many calls and this many seconds, whichever lasts longer.
        self.volume_release_calls = volume_release_calls
        self.volume_release_seconds = volume_release_seconds
        self.host_cpus = host_cpus
        self.host_memory_bytes = host_memory_bytes
        self.organization_id = nanoid()
        self._initial_latency = latency
        self._lock = threading.RLock()
        self._idle = threading.Condition(self._lock)
        self._stopping = threading.Event()
        self._server: _HttpServer | None = None
        self._server_thread: threading.Thread | None = None
        self._queues: dict[str, queue.Queue[_Job | None]] = {}
        self._workers: dict[str, threading.Thread] = {}
        self._pending_jobs = 0
        self._generation = 0
        self._routes = self._build_routes()
        self._clear()

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> DokploySimulator:
        if self._server is not None:
            return self
        self._stopping.clear()
        self._server = _HttpServer((self.host, self.port), self)
        self.port = self._server.server_port
        self._server_thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.02},
            name=f"dokploy-simulator-{self.port}",
            daemon=True,
        )
        self._server_thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        for work_queue in self._queues.values():
            work_queue.put(None)
        if self._server is not None:
            self._server.shutdown()
            self._server.close_connections()
            self._server.server_close()
        if self._server_thread is not None:
            self._server_thread.join(timeout=5)
        for worker in self._workers.values():
            worker.join(timeout=5)
        self._server = None
        self._server_thread = None
        self._queues.clear()
        self._workers.clear()

    def __enter__(self) -> DokploySimulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def stack_url_template(self) -> str:
        return f"{self.url}/_stack/{{host}}"

    # -- fault injection ------------------------------------------------------------------------

    def fail(
        self,
        endpoint: str,
        times: int = 1,
        status: int = 503,
        body: Any = None,
        retry_after: float | str | None = None,
        delay: float = 0.0,
        drop: bool = False,
        after_effect: bool = False,
    ) -> None:
        """Make the next ``times`` calls of ``endpoint`` (e.g. "project.create") misbehave.

        They answer ``status`` with a tRPC error body (or ``body``) and a ``Retry-After`` header
        if given, after waiting ``delay`` seconds. ``drop`` closes the connection without an
        answer instead. With ``after_effect`` the call really happens first and the failure is
        sent afterwards. A status below 400 (with ``delay``) makes the calls slow but successful.
        """
        if endpoint not in self._routes:
            raise ValueError(f"unknown endpoint {endpoint!r}")
        if times < 1:
            raise ValueError("times must be at least 1")
        fault = Fault(endpoint, times, status, body, retry_after, delay, drop, after_effect)
        with self._lock:
            self._faults.append(fault)

    def latency(self, seconds: float) -> None:
        """Wait ``seconds`` before answering every /api call."""
        with self._lock:
            self._latency = max(0.0, seconds)

    def fail_deploy(
        self, app: str, message: str = "Simulated deployment failure", times: int = 1
    ) -> None:
        """The next ``times`` deployments of the app (its appName or name) end in ``error``."""
        with self._lock:
            self._deploy_faults[app] = _DeployFault(message, times)

    def unhealthy(self, host: str, forever: bool = True) -> None:
        """The stack at ``host`` answers 503 (forever, or only for the next request)."""
        with self._lock:
            self._unhealthy[host.lower()] = None if forever else 1

    def healthy(self, host: str) -> None:
        with self._lock:
            self._unhealthy.pop(host.lower(), None)

    def volume_release(self, calls: int, seconds: float = 0.0) -> None:
        """How long a deleted service's volumes stay in use: the next ``calls`` calls of
        dockerVolume.removeVolume for each of them, and at least ``seconds``."""
        if calls < 0 or seconds < 0:
            raise ValueError("calls and seconds must not be negative")
        with self._lock:
            self.volume_release_calls = calls
            self.volume_release_seconds = seconds

    # -- volumes and files ----------------------------------------------------------------------

    def write_file(self, app_name: str, path: str, content: str) -> str | None:
        """Write ``content`` at ``path`` inside the running container of service ``app_name``.

        The file lands in the volume mounted at ``path`` or a parent of it, else in the
        container's own writable layer, which the next container does not inherit. Returns the
        volume's name, or None for the container's layer. ValueError if the service has no
        running container or ``path`` is not absolute.
        """
        with self._lock:
            files, key, volume = self._locate(app_name, path)
            files[key] = content
            return volume

    def read_file(self, app_name: str, path: str) -> str | None:
        """The text at ``path`` as the running container of ``app_name`` sees it, or None."""
        with self._lock:
            files, key, _ = self._locate(app_name, path)
            return files.get(key)

    def add_volume(self, name: str, files: Mapping[str, str] | None = None) -> None:
        """Create the named volume, as ``docker volume create`` would, holding ``files`` (path
        relative to the volume's root -> text): a person's earlier files, say. An existing
        volume keeps its files and gains these."""
        if not is_volume_name(name):
            raise ValueError(f"{name!r} is not a valid Docker volume name")
        with self._lock:
            volume = self._volumes.setdefault(name, Volume(name, now_iso()))
            volume.files.update(files or {})

    def volume(self, name: str) -> dict[str, Any] | None:
        """The volume with its files (``name``, ``createdAt``, ``anonymous``, ``files``), or
        None if there is no such volume."""
        with self._lock:
            volume = self._volumes.get(name)
            return volume.as_json() if volume is not None else None

    def _locate(self, app_name: str, path: str) -> tuple[dict[str, str], str, str | None]:
        service = self._services.get(app_name)
        container = service["container"] if service is not None else None
        if container is None or not container["running"]:
            raise ValueError(f"service {app_name} has no running container")
        volume, key = docker_host.locate(container["volumes"], path)
        if volume is None:
            return container["files"], key, None
        return self._volumes[volume].files, key, volume

    def reset(self) -> None:
        """Forget all state, faults and recorded calls; queued deployments are dropped.

        Latency goes back to the value the simulator was created with.
        """
        with self._lock:
            self._generation += 1
            self._clear()

    # -- inspection -----------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """A deep copy of everything: rows, services, routes, faults and call counts."""
        with self._lock:
            return copy.deepcopy(
                {
                    "organizationId": self.organization_id,
                    "projects": self._projects,
                    "environments": self._environments,
                    "applications": self._applications,
                    "domains": self._domains,
                    "deployments": self._deployments,
                    "mounts": self._mounts,
                    "services": self._services,
                    "volumes": {name: v.as_json() for name, v in self._volumes.items()},
                    "routes": self._routes_by_domain,
                    "pendingJobs": self._pending_jobs,
                    "faults": [asdict(fault) for fault in self._faults],
                    "deployFaults": {k: asdict(v) for k, v in self._deploy_faults.items()},
                    "unhealthy": sorted(self._unhealthy),
                    "latency": self._latency,
                    "callCounts": self._call_counts,
                }
            )

    def calls(self) -> list[dict[str, Any]]:
        """Every /api request so far, in arrival order: method, path, endpoint, input, status."""
        with self._lock:
            return copy.deepcopy(self._calls)

    def call_count(self, endpoint: str) -> int:
        with self._lock:
            return self._call_counts.get(endpoint, 0)

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until no deployment is queued or running; False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending_jobs == 0, timeout=timeout)

    # -- state ------------------------------------------------------------------------------------

    def _clear(self) -> None:
        self._projects: dict[str, Row] = {}
        self._environments: dict[str, Row] = {}
        self._applications: dict[str, Row] = {}
        self._domains: dict[str, Row] = {}
        self._deployments: dict[str, Row] = {}
        self._logs: dict[str, list[str]] = {}
        self._mounts: dict[str, Row] = {}
        self._services: dict[str, Row] = {}
        self._volumes: dict[str, Volume] = {}
        self._volume_holds: dict[str, _VolumeHold] = {}
        self._routes_by_domain: dict[str, Row] = {}
        self._config_key = 0
        self._faults: list[Fault] = []
        self._deploy_faults: dict[str, _DeployFault] = {}
        self._unhealthy: dict[str, int | None] = {}
        self._latency = self._initial_latency
        self._calls: list[dict[str, Any]] = []
        self._call_counts: dict[str, int] = {}

    # -- HTTP entry point -----------------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        """Answer one HTTP request (called from the server's handler threads)."""
        if request.path.startswith("/api/") or request.path == "/api":
            return self._handle_api(request)
        if request.path.startswith("/_sim/"):
            return self._handle_control(request)
        if request.path.startswith("/_stack/"):
            return self._handle_stack(request)
        return json_response(404, {"message": "Not found"})

    def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            self._stopping.wait(seconds)

    def _handle_api(self, request: Request) -> Response:
        endpoint = request.path.removeprefix("/api").strip("/")
        call = self._record_call(request, endpoint)
        with self._lock:
            latency = self._latency
        self._sleep(latency)
        response = self._api_response(request, endpoint)
        with self._lock:
            call["status"] = None if response.drop else response.status
            call["dropped"] = response.drop
        return response

    def _record_call(self, request: Request, endpoint: str) -> dict[str, Any]:
        call_input: object = dict(request.query)
        if request.method != "GET":
            try:
                call_input = json.loads(request.body) if request.body else None
            except ValueError:
                call_input = request.body.decode(errors="replace")
        call: dict[str, Any] = {
            "method": request.method,
            "path": request.path,
            "endpoint": endpoint,
            "input": call_input,
            "status": None,
            "dropped": False,
        }
        with self._lock:
            self._calls.append(call)
            self._call_counts[endpoint] = self._call_counts.get(endpoint, 0) + 1
        return call

    def _api_response(self, request: Request, endpoint: str) -> Response:
        if request.headers.get("x-api-key") != self.api_key:
            return json_response(401, {"message": "Unauthorized"})
        route = self._routes.get(endpoint)
        if route is None or route.method != request.method:
            return json_response(404, trpc_error_body(404, "Not found", None))
        fault = self._take_fault(endpoint)
        if fault is None:
            return self._invoke(route, request, endpoint)
        if not fault.after_effect:
            self._sleep(fault.delay)
            if not fault.fails:
                return self._invoke(route, request, endpoint)
            return self._fault_response(fault)
        response = self._invoke(route, request, endpoint)
        self._sleep(fault.delay)
        return self._fault_response(fault) if fault.fails else response

    def _take_fault(self, endpoint: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.endpoint == endpoint:
                    fault.times -= 1
                    if fault.times <= 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def _fault_response(self, fault: Fault) -> Response:
        if fault.drop:
            return Response(0, drop=True)
        headers = {}
        if fault.retry_after is not None:
            retry_after = fault.retry_after
            if isinstance(retry_after, float) and retry_after.is_integer():
                retry_after = int(retry_after)
            headers["Retry-After"] = str(retry_after)
        if fault.body is None:
            try:
                message = HTTPStatus(fault.status).phrase
            except ValueError:
                message = "Simulated failure"
            payload = trpc_error_body(fault.status, message, fault.endpoint)
            return json_response(fault.status, payload, headers)
        if isinstance(fault.body, str):
            kind = "text/html" if fault.body.lstrip().startswith("<") else "text/plain"
            response = text_response(fault.status, fault.body, kind)
            response.headers.update(headers)
            return response
        return json_response(fault.status, fault.body, headers)

    def _invoke(self, route: Route, request: Request, endpoint: str) -> Response:
        try:
            raw = self._read_input(route, request)
            if raw is None and route.optional_input:
                raw = {}
            data = validate(route.schema, raw, from_query=route.method == "GET")
            with self._lock:  # serialized under the lock: results share state with the tables
                result = route.handler(data)
                body = b"" if result is NO_CONTENT else json.dumps(result).encode()
        except ApiError as error:
            return json_response(error.status, error.body(endpoint))
        except Exception as error:  # a bug in a handler: answer like tRPC does
            return json_response(500, trpc_error_body(500, str(error), endpoint))
        return Response(200, body, "application/json")

    @staticmethod
    def _read_input(route: Route, request: Request) -> object:
        if route.method == "GET":
            return dict(request.query)
        content_type = request.headers.get("content-type", "")
        if not content_type.split(";")[0].strip().lower() == "application/json":
            raise ApiError(415, f'Unsupported content-type "{content_type}"')
        if not request.body.strip():
            return None
        try:
            return json.loads(request.body)
        except ValueError:
            raise ApiError(400, "Failed to parse request body", code="PARSE_ERROR") from None

    # -- control API (/_sim/) -------------------------------------------------------------------

    def _handle_control(self, request: Request) -> Response:
        action = request.path.removeprefix("/_sim/").strip("/")
        readers: dict[str, _ControlHandler] = {
            "state": lambda query: self.state(),
            "calls": lambda query: self.calls(),
            "volumes": lambda query: self.state()["volumes"],
            "files": self._control_read_file,
        }
        writers: dict[str, _ControlHandler] = {
            "faults": self._control_fault,
            "latency": lambda body: self.latency(float(body["seconds"])),
            "deploy-fault": self._control_deploy_fault,
            "unhealthy": lambda body: self.unhealthy(
                str(body["host"]), bool(body.get("forever", True))
            ),
            "healthy": lambda body: self.healthy(str(body["host"])),
            "reset": lambda body: self.reset(),
            "files": self._control_write_file,
            "volumes": lambda body: self.add_volume(
                str(body["name"]), _text_map(body.get("files", {}))
            ),
            "volume-release": lambda body: self.volume_release(
                int(body["calls"]), float(body.get("seconds", 0.0))
            ),
        }
        handler = {"GET": readers, "POST": writers}.get(request.method, {}).get(action)
        if handler is None:
            return json_response(404, {"error": f"no control action {request.method} {action}"})
        try:
            if request.method == "GET":
                return json_response(200, handler(dict(request.query)))
            body = json.loads(request.body) if request.body.strip() else {}
            if not isinstance(body, dict):
                raise TypeError("the body must be a JSON object")
            result = handler(body)
        except (KeyError, TypeError, ValueError) as error:
            return json_response(400, {"error": f"{type(error).__name__}: {error}"})
        return json_response(200, {"ok": True, **(result or {})})

    def _control_fault(self, body: dict[str, Any]) -> None:
        self.fail(
            str(body["endpoint"]),
            times=int(body.get("times", 1)),
            status=int(body.get("status", 503)),
            body=body.get("body"),
            retry_after=body.get("retry_after"),
            delay=float(body.get("delay", 0.0)),
            drop=bool(body.get("drop", False)),
            after_effect=bool(body.get("after_effect", False)),
        )

    def _control_deploy_fault(self, body: dict[str, Any]) -> None:
        message = str(body.get("message") or "Simulated deployment failure")
        self.fail_deploy(str(body["app"]), message, times=int(body.get("times", 1)))

    def _control_write_file(self, body: dict[str, Any]) -> dict[str, Any]:
        volume = self.write_file(str(body["app"]), str(body["path"]), str(body["content"]))
        return {"volume": volume}

    def _control_read_file(self, query: dict[str, Any]) -> dict[str, Any]:
        app_name, path = str(query["app"]), str(query["path"])
        with self._lock:
            files, key, volume = self._locate(app_name, path)
            return {"content": files.get(key), "volume": volume}

    # -- public side of the stacks (/_stack/<host>/...) --------------------------------------

    def _handle_stack(self, request: Request) -> Response:
        host, _, rest = request.path.removeprefix("/_stack/").partition("/")
        with self._lock:
            app_names = [
                route["appName"]
                for route in self._routes_by_domain.values()
                if route["host"].lower() == host.lower()
            ]
            if not app_names:
                return text_response(404, "404 page not found")
            serving = next((name for name in app_names if self._is_serving(name)), None)
            if serving is None:
                return text_response(502, "Bad Gateway")
            if self._consume_unhealthy(host.lower()):
                return text_response(503, "Service Unavailable")
        if rest.strip("/") == "health":
            return json_response(200, {"status": "ok"})
        if rest.strip("/") == "":
            page = _TTYD_PAGE.format(
                app_name=html.escape(serving), host_json=html.escape(json.dumps(host))
            )
            return text_response(200, page, "text/html")
        return text_response(404, "404 page not found")

    def _is_serving(self, app_name: str) -> bool:
        service = self._services.get(app_name)
        return service is not None and service["replicas"] >= 1

    def _consume_unhealthy(self, host: str) -> bool:
        if host not in self._unhealthy:
            return False
        remaining = self._unhealthy[host]
        if remaining is not None:
            if remaining <= 1:
                del self._unhealthy[host]
            else:
                self._unhealthy[host] = remaining - 1
        return True

    # -- procedures -----------------------------------------------------------------------------

    def _build_routes(self) -> dict[str, Route]:
        return {
            "project.create": Route("POST", S_PROJECT_CREATE, self._project_create),
            "project.all": Route("GET", S_NONE, self._project_all),
            "project.search": Route("GET", S_PROJECT_SEARCH, self._project_search),
            "project.one": Route("GET", S_PROJECT_ID, self._project_one),
            "project.remove": Route("POST", S_PROJECT_ID, self._project_remove),
            "environment.byProjectId": Route("GET", S_BY_PROJECT_ID, self._env_by_project),
            "environment.one": Route("GET", S_ENVIRONMENT_ID, self._environment_one),
            "application.create": Route("POST", S_APPLICATION_CREATE, self._app_create),
            "application.one": Route("GET", S_APPLICATION_ID, self._app_one),
            "application.saveDockerProvider": Route(
                "POST", S_SAVE_DOCKER_PROVIDER, self._app_save_docker_provider
            ),
            "application.update": Route("POST", S_APPLICATION_UPDATE, self._app_update),
            "application.deploy": Route("POST", S_DEPLOY, self._app_deploy),
            "application.redeploy": Route("POST", S_DEPLOY, self._app_redeploy),
            "application.reload": Route("POST", S_RELOAD, self._app_reload),
            "application.stop": Route("POST", S_APPLICATION_ID, self._app_stop),
            "application.start": Route("POST", S_APPLICATION_ID, self._app_start),
            "application.delete": Route("POST", S_APPLICATION_ID, self._app_delete),
            "domain.create": Route("POST", S_DOMAIN_CREATE, self._domain_create),
            "domain.byApplicationId": Route("GET", S_APPLICATION_ID, self._domains_by_app),
            "domain.one": Route("GET", S_DOMAIN_ID, self._domain_one),
            "domain.update": Route("POST", S_DOMAIN_UPDATE, self._domain_update),
            "domain.delete": Route("POST", S_DOMAIN_ID, self._domain_delete),
            "deployment.all": Route("GET", S_APPLICATION_ID, self._deployment_all),
            "deployment.readLogs": Route("GET", S_DEPLOYMENT_LOGS, self._deployment_logs),
            "mounts.create": Route("POST", S_MOUNT_CREATE, self._mount_create),
            "mounts.remove": Route("POST", S_MOUNT_REMOVE, self._mount_remove),
            "mounts.one": Route("GET", S_MOUNT_ID, self._mount_one),
            "mounts.listByServiceId": Route("GET", S_MOUNT_LIST, self._mounts_by_service),
            "dockerVolume.removeVolume": Route("POST", S_REMOVE_VOLUME, self._volume_remove),
            "dockerVolume.getVolumes": Route(
                "GET", S_SERVER, self._volumes_list, optional_input=True
            ),
            "settings.cleanUnusedVolumes": Route(
                "POST", S_SERVER, self._clean_unused_volumes, optional_input=True
            ),
        }

    @property
    def endpoints(self) -> list[str]:
        return list(self._routes)

    # project ------------------------------------------------------------------------------------

    def _project_create(self, data: Input) -> Any:
        created_at = now_iso()
        project: Row = {
            "projectId": nanoid(),
            "name": data["name"],
            "description": data.get("description"),
            "createdAt": created_at,
            "organizationId": self.organization_id,
            "env": data.get("env", ""),
        }
        environment: Row = {
            "environmentId": nanoid(),
            "name": "production",
            "description": "Production environment",
            "createdAt": created_at,
            "env": "",
            "projectId": project["projectId"],
            "isDefault": True,
        }
        self._projects[project["projectId"]] = project
        self._environments[environment["environmentId"]] = environment
        return {"project": dict(project), "environment": dict(environment)}

    def _project_all(self, data: Input) -> Any:
        return [
            {
                **project,
                "environments": [
                    self._environment_summary(env) for env in self._project_envs(project)
                ],
                "projectTags": [],
            }
            for project in reversed(self._projects.values())
        ]

    def _environment_summary(self, env: Row) -> Row:
        apps = [
            {key: app[key] for key in ("applicationId", "name", "applicationStatus")}
            for app in self._env_apps(env)
        ]
        return {
            "environmentId": env["environmentId"],
            "name": env["name"],
            "isDefault": env["isDefault"],
            **_service_lists(apps),
        }

    def _project_search(self, data: Input) -> Any:
        def matches(project: Row) -> bool:
            name = project["name"].lower()
            description = (project["description"] or "").lower()
            q = data.get("q", "").lower()
            return (
                (q in name or q in description)
                and data.get("name", "").lower() in name
                and data.get("description", "").lower() in description
            )

        found = [dict(p) for p in reversed(self._projects.values()) if matches(p)]
        offset = int(data.get("offset", 0))
        limit = int(data.get("limit", 20))
        return {"items": found[offset : offset + limit], "total": len(found)}

    def _project_one(self, data: Input) -> Any:
        project = self._get(self._projects, data["projectId"], "Project not found")
        environments = [
            {**env, **_service_lists(self._app_summaries(env, with_app_name=True))}
            for env in self._project_envs(project)
        ]
        return {**project, "environments": environments, "projectTags": []}

    def _project_remove(self, data: Input) -> Any:
        project = self._get(self._projects, data["projectId"], "Project not found")
        for env in self._project_envs(project):
            for app in self._env_apps(env):
                self._delete_app_rows(app)
            del self._environments[env["environmentId"]]
        del self._projects[project["projectId"]]
        return project

    # environment --------------------------------------------------------------------------------

    def _env_by_project(self, data: Input) -> Any:
        project = self._projects.get(data["projectId"])
        if project is None:
            return []
        return [
            {
                **env,
                **_service_lists(self._app_summaries(env, with_app_name=True)),
                "project": dict(project),
            }
            for env in self._project_envs(project)
        ]

    def _environment_one(self, data: Input) -> Any:
        env = self._get(self._environments, data["environmentId"], "Environment not found")
        return {
            **env,
            **_service_lists(self._app_summaries(env, with_app_name=False)),
            "project": dict(self._projects[env["projectId"]]),
        }

    def _project_envs(self, project: Row) -> list[Row]:
        return [
            env for env in self._environments.values() if env["projectId"] == project["projectId"]
        ]

    def _env_apps(self, env: Row) -> list[Row]:
        return [
            app
            for app in self._applications.values()
            if app["environmentId"] == env["environmentId"]
        ]

    def _app_summaries(self, env: Row, *, with_app_name: bool) -> list[Row]:
        keys = _SUMMARY_KEYS if with_app_name else [k for k in _SUMMARY_KEYS if k != "appName"]
        return [{**{key: app[key] for key in keys}, "server": None} for app in self._env_apps(env)]

    # application --------------------------------------------------------------------------------

    def _app_create(self, data: Input) -> Any:
        env = self._get(self._environments, data["environmentId"], "Environment not found")
        if data.get("serverId") is not None:
            raise ApiError(400, "Error creating the application: server not found")
        app_name = self._generate_app_name(data.get("appName"))
        if any(app["appName"] == app_name for app in self._applications.values()):
            raise ApiError(409, "Application with this 'AppName' already exists")
        app = application_row(
            name=data["name"],
            app_name=app_name,
            environment_id=env["environmentId"],
            description=data.get("description"),
            source_type=data.get("sourceType", "github"),
        )
        self._applications[app["applicationId"]] = app
        return dict(app)

    def _generate_app_name(self, requested: str | None) -> str:
        if requested:
            base = requested.lower().replace(" ", "-")
        else:
            words = (secrets.choice(_VERBS), secrets.choice(_ADJECTIVES), secrets.choice(_NOUNS))
            base = "app-" + "-".join(words)
        return f"{base}-{self._random_suffix()}"

    def _random_suffix(self) -> str:
        return "".join(secrets.choice(_SUFFIX_ALPHABET) for _ in range(6))

    def _app_one(self, data: Input) -> Any:
        return self._app_nested(self._get_app(data["applicationId"]))

    def _app_nested(self, app: Row) -> Row:
        env = self._environments[app["environmentId"]]
        app_id = app["applicationId"]
        return copy.deepcopy(
            {
                **app,
                "environment": {**env, "project": self._projects[env["projectId"]]},
                "domains": [d for d in self._domains.values() if d["applicationId"] == app_id],
                "deployments": self._app_deployments(app_id),
                "mounts": [m for m in self._mounts.values() if m["applicationId"] == app_id],
                "redirects": [],
                "security": [],
                "ports": [],
                "previewDeployments": [],
                "registry": None,
                "buildRegistry": None,
                "rollbackRegistry": None,
                "server": None,
                "github": None,
                "gitlab": None,
                "gitea": None,
                "bitbucket": None,
                "hasGitProviderAccess": True,
                "unauthorizedProvider": None,
            }
        )

    def _app_save_docker_provider(self, data: Input) -> Any:
        app = self._get_app(data["applicationId"])
        app.update(
            dockerImage=data["dockerImage"],
            username=data["username"],
            password=data["password"],
            registryUrl=data["registryUrl"],
            sourceType="docker",
            applicationStatus="idle",
        )
        return True

    def _app_update(self, data: Input) -> Any:
        app = self._applications.get(data["applicationId"])
        if app is None:
            raise ApiError(400, "Error updating application")
        if data.get("environmentId", app["environmentId"]) not in self._environments:
            raise ApiError(400, "Error updating application")
        changes = {k: v for k, v in data.items() if k not in ("applicationId", "appName")}
        app.update(changes)
        return True

    def _app_deploy(self, data: Input) -> Any:
        return self._enqueue(data, "deploy", "Manual deployment")

    def _app_redeploy(self, data: Input) -> Any:
        return self._enqueue(data, "redeploy", "Rebuild deployment")

    def _app_reload(self, data: Input) -> Any:
        app = self._get_app(data["applicationId"])
        unusable = app["sourceType"] != "docker" or not app["dockerImage"]
        if unusable or self._spec_error(app) is not None:
            app["applicationStatus"] = "error"
            raise ApiError(500, "Error reloading application")
        self._apply_service(app)
        app["applicationStatus"] = "done"
        return True

    def _app_stop(self, data: Input) -> Any:
        app = self._get_app(data["applicationId"])
        before = self._app_nested(app)
        service = self._services.get(app["appName"])
        if service is not None:
            service.update(replicas=0, updatedAt=now_iso())
            if service["container"] is not None:
                service["container"]["running"] = False
        app["applicationStatus"] = "idle"
        return before

    def _app_start(self, data: Input) -> Any:
        app = self._get_app(data["applicationId"])
        before = self._app_nested(app)
        service = self._services.get(app["appName"])
        if service is None:
            raise ApiError(500, f"Error response from daemon: service {app['appName']} not found")
        service.update(replicas=1, updatedAt=now_iso())
        self._replace_container(service)  # a new task: the last spec, a fresh container
        app["applicationStatus"] = "done"
        return before

    def _app_delete(self, data: Input) -> Any:
        app = self._get_app(data["applicationId"])
        before = self._app_nested(app)
        self._delete_app_rows(app)
        service = self._services.pop(app["appName"], None)
        if service is not None:
            self._remove_service_container(service)
        for domain_id, route in list(self._routes_by_domain.items()):
            if route["appName"] == app["appName"]:
                del self._routes_by_domain[domain_id]
        return before

    def _delete_app_rows(self, app: Row) -> None:
        """The database cascade: the row, its domains, deployments and mounts. Docker is
        untouched."""
        app_id = app["applicationId"]
        for table in (self._domains, self._deployments, self._mounts):
            for key, row in list(table.items()):
                if row["applicationId"] == app_id:
                    del table[key]
                    self._logs.pop(key, None)
        del self._applications[app_id]

    def _get_app(self, application_id: str) -> Row:
        return self._get(self._applications, application_id, "Application not found")

    @staticmethod
    def _get(table: dict[str, Row], key: str, message: str) -> Row:
        row = table.get(key)
        if row is None:
            raise not_found(message)
        return row

    # domain -------------------------------------------------------------------------------------

    def _domain_create(self, data: Input) -> Any:
        app_id = data.get("applicationId")
        if app_id is not None and app_id not in self._applications:
            raise ApiError(
                400,
                'insert or update on table "domain" violates foreign key constraint '
                '"domain_applicationId_application_applicationId_fk"',
            )
        self._config_key += 1
        domain: Row = {
            "domainId": nanoid(),
            "host": data["host"],
            "https": data.get("https", False),
            "port": data.get("port", 3000),
            "path": data.get("path", "/"),
            "internalPath": data.get("internalPath", "/"),
            "stripPath": data.get("stripPath", False),
            "certificateType": data.get("certificateType", "none"),
            "customCertResolver": data.get("customCertResolver"),
            "customEntrypoint": data.get("customEntrypoint"),
            "domainType": data.get("domainType", "application"),
            "serviceName": data.get("serviceName"),
            "uniqueConfigKey": self._config_key,
            "applicationId": app_id,
            "composeId": data.get("composeId"),
            "previewDeploymentId": data.get("previewDeploymentId"),
            "middlewares": data.get("middlewares", []),
            "forwardAuthEnabled": data.get("forwardAuthEnabled", False),
            "enabled": True,
            "createdAt": now_iso(),
        }
        self._domains[domain["domainId"]] = domain
        self._sync_route(domain)
        return dict(domain)

    def _sync_route(self, domain: Row) -> None:
        """Write (or remove) the Traefik router for an application domain."""
        app = self._applications.get(domain["applicationId"] or "")
        if app is None or not domain["enabled"]:
            self._routes_by_domain.pop(domain["domainId"], None)
            return
        self._routes_by_domain[domain["domainId"]] = {
            "host": domain["host"],
            "appName": app["appName"],
            "port": domain["port"] or 3000,
            "https": domain["https"],
        }

    def _domains_by_app(self, data: Input) -> Any:
        app = self._applications.get(data["applicationId"])
        if app is None:
            return []
        summary = {key: app[key] for key in ("applicationId", "appName", "name")}
        return [
            {**domain, "application": dict(summary)}
            for domain in self._domains.values()
            if domain["applicationId"] == app["applicationId"]
        ]

    def _domain_one(self, data: Input) -> Any:
        return dict(self._get(self._domains, data["domainId"], "Domain not found"))

    def _domain_update(self, data: Input) -> Any:
        domain = self._get(self._domains, data["domainId"], "Domain not found")
        domain.update({k: v for k, v in data.items() if k != "domainId"})
        self._sync_route(domain)
        return dict(domain)

    def _domain_delete(self, data: Input) -> Any:
        domain = self._get(self._domains, data["domainId"], "Domain not found")
        del self._domains[domain["domainId"]]
        self._routes_by_domain.pop(domain["domainId"], None)
        return domain

    # mounts -------------------------------------------------------------------------------------

    def _mount_create(self, data: Input) -> Any:
        service_type = data.get("serviceType")
        service_id = data["serviceId"]
        known = service_type == "application" and service_id in self._applications
        if service_type is not None and not known:
            column = f"{service_type}Id"
            raise ApiError(
                400,
                f'Error insert or update on table "mount" violates foreign key constraint '
                f'"mount_{column}_{service_type}_{column}_fk"',
            )
        mount: Row = {
            "mountId": nanoid(),
            "type": data["type"],
            "hostPath": data.get("hostPath"),
            "volumeName": data.get("volumeName"),
            "filePath": data.get("filePath"),
            "content": data.get("content"),
            # The column's default: without serviceType the row names no service at all.
            "serviceType": service_type or "application",
            "mountPath": data["mountPath"],
            **{f"{kind}Id": None for kind in _MOUNT_OWNER_COLUMNS},
        }
        if service_type is not None:
            mount[f"{service_type}Id"] = service_id
        self._mounts[mount["mountId"]] = mount
        return dict(mount)

    def _mount_remove(self, data: Input) -> Any:
        mount = self._get(self._mounts, data["mountId"], "Mount not found")
        del self._mounts[mount["mountId"]]
        return mount

    def _mount_one(self, data: Input) -> Any:
        mount = self._get(self._mounts, data["mountId"], "Mount not found")
        app = self._applications.get(mount["applicationId"] or "")
        owner = None
        if app is not None:
            env = self._environments[app["environmentId"]]
            organization = self._projects[env["projectId"]]["organizationId"]
            owner = {
                "serverId": app["serverId"],
                "appName": app["appName"],
                "environment": {"project": {"organizationId": organization}},
            }
        relations: Row = dict.fromkeys(_MOUNT_OWNER_COLUMNS)
        return {**mount, **relations, "application": owner}

    def _mounts_by_service(self, data: Input) -> Any:
        service_type, service_id = data["serviceType"], data["serviceId"]
        if service_type not in SERVICE_TYPES:
            raise ApiError(
                401, "You are not authorized to access this service or it does not exist"
            )
        if service_type != "application":
            raise not_found(_NOT_FOUND_BY_KIND[service_type])
        self._get_app(service_id)
        return [dict(m) for m in self._mounts.values() if m["applicationId"] == service_id]

    # docker volumes and settings ----------------------------------------------------------------

    def _volume_remove(self, data: Input) -> Any:
        if data.get("serverId"):
            raise not_found("Server not found")
        name = data["volumeName"]
        users = self._volume_users(name)
        if users:
            raise _docker_failed(name, f"remove {name}: volume is in use - [{', '.join(users)}]")
        if name not in self._volumes:
            raise _docker_failed(name, f"get {name}: no such volume")
        del self._volumes[name]
        self._volume_holds.pop(name, None)
        return NO_CONTENT

    def _volumes_list(self, data: Input) -> Any:
        """`docker volume ls --format '{{json .}}'`, one object per volume, as Dokploy parses
        it. Dokploy answers [] when the command fails (it logs and swallows the error); here a
        serverId is such a failure, since there are no remote servers."""
        if data.get("serverId"):
            return []
        return [
            {
                "Name": name,
                "Driver": "local",
                "Scope": "local",
                "Mountpoint": f"/var/lib/docker/volumes/{name}/_data",
                "Labels": "",
            }
            for name in sorted(self._volumes)
        ]

    def _clean_unused_volumes(self, data: Input) -> Any:
        """`docker volume prune --all`, as API-NOTES item 14 describes it: every volume that no
        running container uses goes, stopped people's workspaces included."""
        if data.get("serverId"):
            raise not_found("Server not found")
        running = {
            name
            for service in self._services.values()
            if service["container"] is not None and service["container"]["running"]
            for name in service["container"]["volumes"].values()
        }
        for name in list(self._volumes):
            if name not in running:
                del self._volumes[name]
                self._volume_holds.pop(name, None)
        return True

    # deployment ---------------------------------------------------------------------------------

    def _deployment_all(self, data: Input) -> Any:
        return self._app_deployments(data["applicationId"])

    def _app_deployments(self, application_id: str) -> list[Row]:
        rows = [d for d in self._deployments.values() if d["applicationId"] == application_id]
        return [dict(row) for row in reversed(rows)]

    def _deployment_logs(self, data: Input) -> Any:
        lines = self._logs.get(data["deploymentId"])
        if lines is None:
            raise not_found("Deployment not found")
        tail = int(data.get("tail", 100))
        return "\n".join(lines[-tail:])

    # -- the deployment queue -------------------------------------------------------------------

    def _enqueue(self, data: Input, kind: str, default_title: str) -> _NoContent:
        app = self._get_app(data["applicationId"])
        job = _Job(
            application_id=app["applicationId"],
            kind=kind,
            title=data.get("title") or default_title,
            description=data.get("description"),
            generation=self._generation,
        )
        self._pending_jobs += 1
        self._queue_for(app["serverId"] or _LOCAL_SERVER).put(job)
        return NO_CONTENT

    def _queue_for(self, server: str) -> queue.Queue[_Job | None]:
        if server not in self._queues:
            work_queue: queue.Queue[_Job | None] = queue.Queue()
            worker = threading.Thread(
                target=self._work,
                args=(work_queue,),
                name=f"dokploy-simulator-{self.port}-deploy-{server}",
                daemon=True,
            )
            self._queues[server] = work_queue
            self._workers[server] = worker
            worker.start()
        return self._queues[server]

    def _work(self, work_queue: queue.Queue[_Job | None]) -> None:
        while not self._stopping.is_set():
            job = work_queue.get()
            if job is None:
                return
            try:
                self._run_job(job)
            finally:
                with self._idle:
                    self._pending_jobs -= 1
                    self._idle.notify_all()

    def _run_job(self, job: _Job) -> None:
        if job.generation != self._generation or self._stopping.wait(self.queue_delay):
            return
        with self._lock:
            if job.generation != self._generation:
                return
            deployment_id = self._begin_deployment(job)
        if deployment_id is None or self._stopping.wait(self.deploy_seconds):
            return
        with self._lock:
            if job.generation == self._generation and deployment_id in self._deployments:
                self._finish_deployment(job, deployment_id)

    def _begin_deployment(self, job: _Job) -> str | None:
        app = self._applications.get(job.application_id)
        if app is None:  # deleted while queued
            return None
        started = now_iso()
        deployment: Row = {
            "deploymentId": nanoid(),
            "title": job.title,
            "description": job.description,
            "status": "running",
            "logPath": f"/etc/dokploy/logs/{app['appName']}/{app['appName']}-"
            f"{started.replace(':', '-')}.log",
            "pid": None,
            "applicationId": app["applicationId"],
            "composeId": None,
            "serverId": app["serverId"],
            "isPreviewDeployment": False,
            "previewDeploymentId": None,
            "createdAt": started,
            "startedAt": started,
            "finishedAt": None,
            "errorMessage": None,
        }
        self._deployments[deployment["deploymentId"]] = deployment
        self._logs[deployment["deploymentId"]] = _log_start(app, job)
        self._trim_deployments(app["applicationId"])
        app["applicationStatus"] = "running"
        return str(deployment["deploymentId"])

    def _trim_deployments(self, application_id: str) -> None:
        ids = [k for k, d in self._deployments.items() if d["applicationId"] == application_id]
        for deployment_id in ids[:-MAX_DEPLOYMENTS_PER_APP]:
            del self._deployments[deployment_id]
            self._logs.pop(deployment_id, None)

    def _finish_deployment(self, job: _Job, deployment_id: str) -> None:
        app = self._applications[job.application_id]
        deployment = self._deployments[deployment_id]
        log = self._logs[deployment_id]
        error = self._deployment_error(app)
        if error is None:
            existed = app["appName"] in self._services
            self._apply_service(app)
            log.extend(_log_success(app, job, updated=existed))
            status = "done"
        else:
            log.extend(_log_failure(app, job, error))
            status = "error"
        deployment.update(status=status, finishedAt=now_iso(), errorMessage=error)
        app["applicationStatus"] = status

    def _deployment_error(self, app: Row) -> str | None:
        for key in (app["appName"], app["name"]):
            fault = self._deploy_faults.get(key)
            if fault is not None:
                fault.times -= 1
                if fault.times <= 0:
                    del self._deploy_faults[key]
                return fault.message
        if app["sourceType"] != "docker":
            return f"Source type {app['sourceType']} is not configured"
        if not app["dockerImage"]:
            return "Docker image is required for docker source type"
        return self._spec_error(app)

    def _apply_service(self, app: Row) -> None:
        """Create the Swarm service, or update it (a forced update) if it exists: the spec is
        rebuilt from the rows and a new container replaces the old one."""
        now = now_iso()
        service = self._services.get(app["appName"])
        if service is None:
            service = {"appName": app["appName"], "createdAt": now, "version": 0, "container": None}
            self._services[app["appName"]] = service
        service.update(
            applicationId=app["applicationId"],
            image=app["dockerImage"],
            replicas=app["replicas"],
            env=app["env"],
            mounts=self._spec_mounts(app),
            resources=docker_host.service_resources(app),
            updatedAt=now,
            version=service["version"] + 1,
        )
        self._replace_container(service)

    def _spec_mounts(self, app: Row) -> list[Row]:
        rows = [m for m in self._mounts.values() if m["applicationId"] == app["applicationId"]]
        return docker_host.service_mounts(app["appName"], rows)

    def _spec_error(self, app: Row) -> str | None:
        return docker_host.spec_error(
            docker_host.service_resources(app),
            self._spec_mounts(app),
            host_cpus=self.host_cpus,
            host_memory_bytes=self.host_memory_bytes,
        )

    # -- containers and volumes -----------------------------------------------------------------

    def _replace_container(self, service: Row) -> None:
        """End the service's container (its anonymous volumes go with it) and, if it has
        replicas, start a new one: named volumes are created on first use, every anonymous
        mount gets a new empty volume, and the writable layer starts empty."""
        self._drop_anonymous_volumes(service["container"])
        service["container"] = None
        if service["replicas"] < 1:
            return
        mounted: dict[str, str] = {}
        for mount in service["mounts"]:
            if mount["Type"] != "volume":
                continue
            name = mount["Source"] or docker_host.anonymous_volume_name()
            if name not in self._volumes:
                self._volumes[name] = Volume(name, now_iso(), anonymous=not mount["Source"])
            mounted[mount["Target"]] = name
        service["container"] = {
            "id": docker_host.container_id(),
            "running": True,
            "volumes": mounted,
            "files": {},
        }

    def _drop_anonymous_volumes(self, container: Row | None) -> None:
        if container is None:
            return
        for name in container["volumes"].values():
            volume = self._volumes.get(name)
            if volume is not None and volume.anonymous:
                del self._volumes[name]

    def _remove_service_container(self, service: Row) -> None:
        """The service is gone, but Swarm takes a while to remove its container: until then
        its named volumes stay in use."""
        container = service["container"]
        if container is None:
            return
        self._drop_anonymous_volumes(container)
        until = time.monotonic() + self.volume_release_seconds
        for name in container["volumes"].values():
            if name in self._volumes:
                self._volume_holds[name] = _VolumeHold(
                    container["id"], self.volume_release_calls, until
                )

    def _volume_users(self, name: str) -> list[str]:
        """The containers (running or stopped) that keep the volume in use."""
        users = [
            service["container"]["id"]
            for service in self._services.values()
            if service["container"] is not None and name in service["container"]["volumes"].values()
        ]
        hold = self._volume_holds.get(name)
        if hold is not None:
            if hold.calls > 0 or time.monotonic() < hold.until:
                hold.calls = max(0, hold.calls - 1)
                users.append(hold.container_id)
            else:
                del self._volume_holds[name]
        return users


_SUMMARY_KEYS: Final = [
    "applicationId",
    "name",
    "description",
    "appName",
    "createdAt",
    "serverId",
    "applicationStatus",
    "icon",
]


# The mount row's owner columns, in the table's order.
_MOUNT_OWNER_COLUMNS: Final = (
    "application",
    "compose",
    "libsql",
    "mariadb",
    "mongo",
    "mysql",
    "postgres",
    "redis",
)
_NOT_FOUND_BY_KIND: Final = {
    "postgres": "Postgres not found",
    "mysql": "MySql not found",
    "mariadb": "Mariadb not found",
    "mongo": "Mongo not found",
    "redis": "Redis not found",
    "compose": "Compose not found",
    "libsql": "Libsql not found",
}


def _docker_failed(volume_name: str, reason: str) -> ApiError:
    """How dockerVolume.removeVolume reports a failed `docker volume rm`: a plain 500 that
    carries the command's error."""
    return ApiError(
        500,
        f"Command execution failed: Command failed: docker volume rm {volume_name}\n"
        f"Error response from daemon: {reason}\n",
    )


def _text_map(value: object) -> dict[str, str]:
    if not isinstance(value, dict):
        raise TypeError("files must be an object of path -> text")
    return {str(key): str(text) for key, text in value.items()}


def _service_lists(applications: list[Row]) -> Row:
    """The per-environment service lists; only applications are modelled."""
    lists: Row = {"applications": applications}
    for kind in ("compose", "mariadb", "mongo", "mysql", "postgres", "redis", "libsql"):
        lists[kind] = []
    return lists


def _log_start(app: Row, job: _Job) -> list[str]:
    return [
        f"Initializing deployment: {job.title}",
        f"Application: {app['appName']} (source: {app['sourceType']})",
    ]


def _pull_lines(image: str) -> Iterator[str]:
    repository, _, tag = image.rpartition(":")
    if not repository or "/" in tag:
        repository, tag = image, "latest"
    yield f"Pulling {image}"
    yield f"{tag}: Pulling from {repository}"
    yield f"Digest: sha256:{secrets.token_hex(32)}"
    yield f"Status: Image is up to date for {image}"


def _log_success(app: Row, job: _Job, *, updated: bool) -> list[str]:
    lines = list(_pull_lines(app["dockerImage"])) if job.kind == "deploy" else []
    verb = "Updating" if updated else "Creating"
    lines += [
        f"{verb} service {app['appName']} (replicas: {app['replicas']})",
        "Docker Deployed: ✅",
    ]
    return lines


def _log_failure(app: Row, job: _Job, message: str) -> list[str]:
    lines = [f"Pulling {app['dockerImage']}"] if job.kind == "deploy" and app["dockerImage"] else []
    return [*lines, "❌ Deployment failed", f"Error: {message}"]


# --- Command line ---------------------------------------------------------------------------


def run_until_signalled(
    simulator: DokploySimulator, announce: Callable[[str], None] | None = None
) -> None:
    """Serve in the foreground until SIGINT or SIGTERM, then stop cleanly."""
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        simulator.start()
        if announce is not None:
            announce(
                f"Dokploy simulator listening on {simulator.url} "
                f"(stacks at {simulator.stack_url_template})"
            )
        while not stop.wait(0.5):
            pass
    finally:
        simulator.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def build_arg_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Run the Dokploy API simulator.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3000, help="0 picks a free port")
    parser.add_argument("--api-key", default=DEFAULT_API_KEY, help="the accepted x-api-key")
    parser.add_argument(
        "--deploy-seconds", type=float, default=1.0, help="how long a deployment runs"
    )
    parser.add_argument(
        "--queue-delay", type=float, default=0.05, help="wait before a queued deployment starts"
    )
    parser.add_argument(
        "--latency", type=float, default=0.0, help="seconds added to every /api call"
    )
    parser.add_argument(
        "--volume-release-seconds",
        type=float,
        default=0.0,
        help="how long a deleted service's volumes stay in use",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_arg_parser().parse_args(argv)
    simulator = DokploySimulator(
        api_key=args.api_key,
        host=args.host,
        port=args.port,
        deploy_seconds=args.deploy_seconds,
        queue_delay=args.queue_delay,
        latency=args.latency,
        volume_release_seconds=args.volume_release_seconds,
    )

    def announce(line: str) -> None:
        print(line, flush=True)

    run_until_signalled(simulator, announce)
    return 0


if __name__ == "__main__":
    sys.exit(main())
