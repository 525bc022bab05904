"""Rows shaped like Dokploy's answers, and a client wired for tests (no sleeping, no jitter).

The rows follow API-NOTES.md: project.create answers {project, environment}, project.all nests
environments with application summaries, application.one carries domains and deployments and
returns the docker password and env in clear text.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx

from stacks.dokploy.client import CallRecord, DokployClient
from stacks.resilience import CircuitBreaker

BASE_URL = "https://dokploy.test"
API = f"{BASE_URL}/api"
CANARY_KEY = "canary-KEY-1234567890"
CREATED_AT = "2026-03-01T12:00:00.000Z"

PROJECT_ID = "prj_aaaaaaaaaaaaaaaaaa1"
ENVIRONMENT_ID = "env_aaaaaaaaaaaaaaaaaa1"
APPLICATION_ID = "app_aaaaaaaaaaaaaaaaaa1"
DOMAIN_ID = "dom_aaaaaaaaaaaaaaaaaa1"
DEPLOYMENT_ID = "dep_aaaaaaaaaaaaaaaaaa1"
MOUNT_ID = "mnt_aaaaaaaaaaaaaaaaaa1"
VOLUME_NAME = "ws-alice-7f3k"


def project_row(**fields: Any) -> dict[str, Any]:
    row = {
        "projectId": PROJECT_ID,
        "name": "ai-stack-alice",
        "description": "AI Stack for alice",
        "createdAt": CREATED_AT,
        "organizationId": "org_1",
        "env": "",
    }
    return {**row, **fields}


def environment_row(**fields: Any) -> dict[str, Any]:
    row = {
        "environmentId": ENVIRONMENT_ID,
        "name": "production",
        "description": "Production environment",
        "createdAt": CREATED_AT,
        "env": "",
        "projectId": PROJECT_ID,
        "isDefault": True,
    }
    return {**row, **fields}


def application_summary(**fields: Any) -> dict[str, Any]:
    row = {
        "applicationId": APPLICATION_ID,
        "name": "opencode-alice",
        "description": None,
        "appName": "opencode-alice-x1y2z3",
        "createdAt": CREATED_AT,
        "serverId": None,
        "applicationStatus": "idle",
        "icon": None,
        "server": None,
    }
    return {**row, **fields}


def listed_environment(
    applications: list[dict[str, Any]] | None = None, **fields: Any
) -> dict[str, Any]:
    """An environment as project.all and environment.byProjectId list it."""
    row = {
        **environment_row(),
        "applications": applications or [],
        "compose": [],
        "mariadb": [],
        "mongo": [],
        "mysql": [],
        "postgres": [],
        "redis": [],
        "libsql": [],
    }
    return {**row, **fields}


def listed_project(
    environments: list[dict[str, Any]] | None = None, **fields: Any
) -> dict[str, Any]:
    """A project as project.all lists it."""
    envs = environments if environments is not None else [listed_environment()]
    return {**project_row(**fields), "environments": envs, "projectTags": []}


def application_row(**fields: Any) -> dict[str, Any]:
    row = {
        "applicationId": APPLICATION_ID,
        "name": "opencode-alice",
        "appName": "opencode-alice-x1y2z3",
        "description": None,
        "env": None,
        "environmentId": ENVIRONMENT_ID,
        "sourceType": "docker",
        "applicationStatus": "idle",
        "buildType": "nixpacks",
        "dockerImage": None,
        "username": None,
        "password": None,
        "registryUrl": None,
        "refreshToken": "refresh-token-value",
        "replicas": 1,
        "serverId": None,
        "createdAt": CREATED_AT,
    }
    return {**row, **fields}


def domain_row(**fields: Any) -> dict[str, Any]:
    row = {
        "domainId": DOMAIN_ID,
        "host": "alice.ai.example.com",
        "https": True,
        "port": 8080,
        "path": "/",
        "internalPath": "/",
        "stripPath": False,
        "certificateType": "letsencrypt",
        "customCertResolver": None,
        "domainType": "application",
        "serviceName": None,
        "uniqueConfigKey": 1,
        "applicationId": APPLICATION_ID,
        "composeId": None,
        "previewDeploymentId": None,
        "createdAt": CREATED_AT,
    }
    return {**row, **fields}


def deployment_row(**fields: Any) -> dict[str, Any]:
    row = {
        "deploymentId": DEPLOYMENT_ID,
        "title": "Manual deployment",
        "description": None,
        "status": "done",
        "logPath": "/etc/dokploy/logs/opencode-alice-x1y2z3/deploy.log",
        "pid": None,
        "applicationId": APPLICATION_ID,
        "createdAt": CREATED_AT,
        "startedAt": CREATED_AT,
        "finishedAt": CREATED_AT,
        "errorMessage": None,
    }
    return {**row, **fields}


def mount_row(**fields: Any) -> dict[str, Any]:
    """A mount row as mounts.create, mounts.listByServiceId and application.one answer it."""
    row = {
        "mountId": MOUNT_ID,
        "type": "volume",
        "hostPath": None,
        "volumeName": VOLUME_NAME,
        "filePath": None,
        "content": None,
        "serviceType": "application",
        "mountPath": "/workspace",
        "applicationId": APPLICATION_ID,
        "composeId": None,
        "libsqlId": None,
        "mariadbId": None,
        "mongoId": None,
        "mysqlId": None,
        "postgresId": None,
        "redisId": None,
    }
    return {**row, **fields}


def application_one_row(**fields: Any) -> dict[str, Any]:
    """application.one: every column plus relations, secrets in clear text."""
    row = {
        **application_row(
            dockerImage="ghcr.io/ai-stack/opencode-ttyd:latest",
            username="registry-user",
            password="registry-password-123",
            env="OPENAI_API_KEY=sk-live-secret\nMODE=prod",
        ),
        "environment": {**environment_row(), "project": project_row()},
        "domains": [domain_row()],
        "deployments": [deployment_row()],
        "mounts": [],
        "redirects": [],
        "security": [],
        "ports": [],
    }
    return {**row, **fields}


def trpc_error(status: int, code: str, message: str, path: str, **extra: Any) -> dict[str, Any]:
    """A tRPC error body as Dokploy sends it."""
    return {
        "message": message,
        "code": code,
        "data": {"code": code, "httpStatus": status, "path": path, "zodError": None},
        **extra,
    }


def json_body(request: httpx.Request) -> Any:
    return json.loads(request.content) if request.content else None


def make_client(
    *,
    waits: list[float] | None = None,
    calls: list[CallRecord] | None = None,
    breaker: CircuitBreaker | None = None,
    on_call: Callable[[CallRecord], None] | None = None,
    **options: Any,
) -> DokployClient:
    """A client for BASE_URL with the canary key, recording waits instead of sleeping."""
    options.setdefault("api_key", CANARY_KEY)
    options.setdefault("retry_base", 1.0)
    options.setdefault("retry_after_max", 30.0)
    options.setdefault("jitter", False)
    options.setdefault("sleep", waits.append if waits is not None else _no_sleep)
    return DokployClient(
        base_url=BASE_URL,
        breaker=breaker,
        on_call=on_call or (calls.append if calls is not None else None),
        **options,
    )


def _no_sleep(seconds: float) -> None:
    raise AssertionError(f"unexpected wait of {seconds}s")
