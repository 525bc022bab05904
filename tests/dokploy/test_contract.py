"""Every request the client makes, checked against Dokploy's own OpenAPI document."""

from __future__ import annotations

import hashlib
import inspect
import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from stacks.dokploy.client import DokployClient
from tests.dokploy.client_fixtures import (
    APPLICATION_ID,
    BASE_URL,
    CANARY_KEY,
    DEPLOYMENT_ID,
    DOMAIN_ID,
    ENVIRONMENT_ID,
    MOUNT_ID,
    PROJECT_ID,
    VOLUME_NAME,
    application_one_row,
    application_row,
    deployment_row,
    domain_row,
    environment_row,
    listed_environment,
    listed_project,
    mount_row,
    project_row,
)
from tests.dokploy.openapi_contract import Contract, load_openapi, openapi_path

pytestmark = pytest.mark.contract

# Plausible answers, by endpoint.
ANSWERS: dict[str, Any] = {
    "project.create": {"project": project_row(), "environment": environment_row()},
    "project.all": [listed_project()],
    "project.one": listed_project(),
    "project.remove": project_row(),
    "environment.byProjectId": [listed_environment(project=project_row())],
    "application.create": application_row(),
    "application.one": application_one_row(),
    "application.saveDockerProvider": True,
    "application.update": True,
    "application.deploy": None,
    "application.stop": application_one_row(),
    "application.start": application_one_row(),
    "application.delete": application_one_row(),
    "domain.create": domain_row(),
    "domain.byApplicationId": [domain_row()],
    "domain.update": domain_row(),
    "domain.delete": domain_row(),
    "deployment.all": [deployment_row()],
    "deployment.readLogs": "built\n",
    "mounts.listByServiceId": [mount_row()],
    "mounts.create": mount_row(),
    "mounts.remove": mount_row(),
    "dockerVolume.removeVolume": None,
    "dockerVolume.getVolumes": [{"Name": "v", "Driver": "local", "Scope": "local"}],
}

# Every public client method, called the way the pipeline calls it (and with every option).
CALLS: list[tuple[str, Callable[[DokployClient], Any]]] = [
    ("project_create", lambda c: c.project_create(name="ai-stack-alice")),
    ("project_create", lambda c: c.project_create(name="ai-stack-alice", description="d")),
    ("project_all", lambda c: c.project_all()),
    ("project_one", lambda c: c.project_one(PROJECT_ID)),
    ("project_remove", lambda c: c.project_remove(PROJECT_ID)),
    ("environment_by_project_id", lambda c: c.environment_by_project_id(PROJECT_ID)),
    (
        "application_create",
        lambda c: c.application_create(name="opencode-alice", environment_id=ENVIRONMENT_ID),
    ),
    (
        "application_create",
        lambda c: c.application_create(
            name="opencode-alice",
            environment_id=ENVIRONMENT_ID,
            app_name="opencode-alice",
            description="alice's stack",
            source_type="docker",
            project_id=PROJECT_ID,
        ),
    ),
    ("application_one", lambda c: c.application_one(APPLICATION_ID)),
    (
        "application_save_docker_provider",
        lambda c: c.application_save_docker_provider(
            application_id=APPLICATION_ID, docker_image="ghcr.io/ai-stack/opencode:1"
        ),
    ),
    (
        "application_save_docker_provider",
        lambda c: c.application_save_docker_provider(
            application_id=APPLICATION_ID,
            docker_image="registry.example.com/opencode:1",
            username="bot",
            password="registry-password",
            registry_url="registry.example.com",
        ),
    ),
    (
        "application_update",
        lambda c: c.application_update(
            APPLICATION_ID,
            docker_image="ghcr.io/ai-stack/opencode:1",
            source_type="docker",
            env="A=1",
            replicas=1,
            memory_limit="1073741824",
        ),
    ),
    ("application_deploy", lambda c: c.application_deploy(APPLICATION_ID)),
    (
        "application_deploy",
        lambda c: c.application_deploy(APPLICATION_ID, title="attempt #1", description="create"),
    ),
    ("application_stop", lambda c: c.application_stop(APPLICATION_ID)),
    ("application_start", lambda c: c.application_start(APPLICATION_ID)),
    ("application_delete", lambda c: c.application_delete(APPLICATION_ID)),
    (
        "domain_create",
        lambda c: c.domain_create(
            host="alice.ai.example.com", application_id=APPLICATION_ID, port=8080
        ),
    ),
    ("domain_by_application_id", lambda c: c.domain_by_application_id(APPLICATION_ID)),
    (
        "domain_update",
        lambda c: c.domain_update(
            DOMAIN_ID,
            host="alice.ai.example.com",
            https=True,
            port=8080,
            certificate_type="letsencrypt",
            domain_type="application",
            path="/",
        ),
    ),
    ("domain_delete", lambda c: c.domain_delete(DOMAIN_ID)),
    ("deployment_all", lambda c: c.deployment_all(APPLICATION_ID)),
    ("deployment_read_logs", lambda c: c.deployment_read_logs(DEPLOYMENT_ID)),
    ("deployment_read_logs", lambda c: c.deployment_read_logs(DEPLOYMENT_ID, tail=10000)),
    (
        "application_set_limits",
        lambda c: c.application_set_limits(
            APPLICATION_ID,
            memory_bytes=2147483648,
            cpu_nanos=1500000000,
            memory_reservation_bytes=1073741824,
            cpu_reservation_nanos=500000000,
        ),
    ),
    (
        "application_set_limits",
        lambda c: c.application_set_limits(APPLICATION_ID, memory_bytes=None, cpu_nanos=None),
    ),
    ("mounts_list_by_service_id", lambda c: c.mounts_list_by_service_id(APPLICATION_ID)),
    (
        "mounts_create_volume",
        lambda c: c.mounts_create_volume(
            application_id=APPLICATION_ID, volume_name=VOLUME_NAME, mount_path="/workspace"
        ),
    ),
    ("mounts_remove", lambda c: c.mounts_remove(MOUNT_ID)),
    ("docker_volumes", lambda c: c.docker_volumes()),
    ("docker_volume_remove", lambda c: c.docker_volume_remove(VOLUME_NAME)),
    ("docker_volume_remove", lambda c: c.docker_volume_remove("a.b_c-9")),
]


@pytest.fixture(scope="module")
def contract() -> Contract:
    return Contract(load_openapi(openapi_path()))


def test_the_vendored_document_is_the_one_its_source_names():
    path = openapi_path()
    source = (path.parent / "SOURCE.md").read_text(encoding="utf-8")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()

    assert f"| SHA-256 | `{digest}` |" in source


class Recorder:
    """An httpx transport that keeps every request and answers like Dokploy would."""

    def __init__(self, failures: dict[str, list[int]] | None = None) -> None:
        self.requests: list[httpx.Request] = []
        self.failures = failures or {}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        endpoint = request.url.path.removeprefix("/api/")
        pending = self.failures.get(endpoint)
        if pending:
            return httpx.Response(pending.pop(0), json={"message": "failed", "code": "X"})
        payload = ANSWERS[endpoint]
        if payload is None:
            return httpx.Response(200, headers={"content-type": "application/json"})
        return httpx.Response(200, json=payload)


def client_for(recorder: Recorder) -> DokployClient:
    return DokployClient(
        base_url=BASE_URL,
        api_key=CANARY_KEY,
        retry_base=0.0,
        jitter=False,
        transport=httpx.MockTransport(recorder),
    )


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def client(recorder: Recorder) -> Iterator[DokployClient]:
    with client_for(recorder) as dokploy:
        yield dokploy


def describe(request: httpx.Request) -> str:
    return f"{request.method} {request.url} {request.content.decode() or ''}"


@pytest.mark.parametrize(("name", "call"), CALLS, ids=[name for name, _ in CALLS])
def test_request_matches_the_openapi_document(contract, recorder, client, name, call):
    call(client)

    assert recorder.requests, f"{name} sent nothing"
    for request in recorder.requests:
        assert contract.check(request) == [], describe(request)


def test_every_public_method_is_exercised():
    public = {
        name
        for name, member in inspect.getmembers(DokployClient, inspect.isfunction)
        if not name.startswith("_") and name != "close"
    }

    assert public == {name for name, _ in CALLS}


def test_every_endpoint_the_client_uses_is_in_the_document(contract, recorder, client):
    for _, call in CALLS:
        call(client)

    endpoints = {request.url.path.removeprefix("/api/") for request in recorder.requests}
    assert endpoints == set(ANSWERS)
    for endpoint in endpoints:
        assert f"/{endpoint}" in contract.paths


@pytest.mark.parametrize(
    ("failures", "call", "look_ups"),
    [
        (
            {"project.create": [500]},
            lambda c: c.project_create(name="ai-stack-bob"),
            ["project.all"],
        ),
        (
            {"application.create": [502]},
            lambda c: c.application_create(name="opencode-bob", environment_id=ENVIRONMENT_ID),
            ["project.all", "environment.byProjectId"],
        ),
        (
            {"domain.create": [500]},
            lambda c: c.domain_create(
                host="bob.ai.example.com", application_id=APPLICATION_ID, port=8080
            ),
            ["domain.byApplicationId"],
        ),
    ],
    ids=["project", "application", "domain"],
)
def test_recovery_look_ups_match_the_document(contract, failures, call, look_ups):
    recorder = Recorder(failures)

    with client_for(recorder) as client:
        call(client)

    endpoints = [r.url.path.removeprefix("/api/") for r in recorder.requests]
    assert endpoints[1:-1] == look_ups  # create, look-ups, create again (nothing found)
    for request in recorder.requests:
        assert contract.check(request) == [], describe(request)


# --- The checker itself is not vacuous --------------------------------------------------------


def request(method: str, endpoint: str, body: Any = None, **kwargs: Any) -> httpx.Request:
    headers = {"x-api-key": CANARY_KEY}
    if body is not None:
        headers["content-type"] = "application/json"
        kwargs["content"] = json.dumps(body).encode()
    kwargs.setdefault("headers", headers)
    return httpx.Request(method, f"{BASE_URL}/api/{endpoint}", **kwargs)


BAD_REQUESTS = [
    pytest.param(
        request("GET", "project.create", params={"name": "x"}),
        "no GET operation at /project.create",
        id="wrong-method",
    ),
    pytest.param(
        request("POST", "project.all", {}), "no POST operation at /project.all", id="query-posted"
    ),
    pytest.param(request("GET", "project.delete"), "no operation at /project.delete", id="path"),
    pytest.param(
        request("POST", "application.create", {"name": "opencode-alice"}),
        "body: missing required field environmentId",
        id="missing-required-field",
    ),
    pytest.param(
        request(
            "POST",
            "application.create",
            {"name": "a", "environmentId": "e", "sourceType": "svn"},
        ),
        "body.sourceType: 'svn' is not one of",
        id="bad-enum",
    ),
    pytest.param(
        request(
            "POST",
            "domain.create",
            {"host": "a.example.com", "domainType": "website"},
        ),
        "body.domainType: matches none of anyOf",
        id="bad-enum-in-anyOf",
    ),
    pytest.param(
        request("POST", "project.create", {"name": "x", "projectName": "x"}),
        "body: unknown field projectName",
        id="unknown-field",
    ),
    pytest.param(
        request("POST", "project.create", {"name": ""}),
        "body.name: shorter than 1",
        id="min-length",
    ),
    pytest.param(
        request(
            "POST", "application.create", {"name": "a", "environmentId": "e", "appName": "x" * 64}
        ),
        "body.appName: longer than 63",
        id="max-length",
    ),
    pytest.param(
        request(
            "POST",
            "application.create",
            {"name": "a", "environmentId": "e", "appName": "bad name!"},
        ),
        "does not match",
        id="pattern",
    ),
    pytest.param(
        request("POST", "domain.create", {"host": "a.example.com", "port": 70000}),
        "above the maximum 65535",
        id="maximum",
    ),
    pytest.param(
        request("POST", "domain.create", {"host": "a.example.com", "https": "yes"}),
        "body.https: expected boolean, got string",
        id="type",
    ),
    pytest.param(
        request(
            "POST", "application.saveDockerProvider", {"applicationId": "a", "dockerImage": "i"}
        ),
        "body: missing required field username",
        id="required-but-nullable",
    ),
    pytest.param(
        request("GET", "project.one"),
        "query: missing required parameter projectId",
        id="missing-query",
    ),
    pytest.param(
        request("GET", "project.one", params={"projectId": "p", "id": "p"}),
        "query: unknown parameter id",
        id="unknown-query",
    ),
    pytest.param(
        request("GET", "deployment.readLogs", params={"deploymentId": "d", "tail": "0"}),
        "query.tail: below the minimum 1",
        id="query-minimum",
    ),
    pytest.param(
        request("GET", "deployment.readLogs", params={"deploymentId": "d", "tail": "many"}),
        "query.tail: expected integer, got string",
        id="query-type",
    ),
    pytest.param(
        request("POST", "project.remove", headers={"x-api-key": "k"}, content=b'{"projectId":"p"}'),
        "content-type is missing",
        id="no-content-type",
    ),
    pytest.param(
        request("GET", "project.all", headers={}),
        "missing header x-api-key",
        id="no-key",
    ),
    pytest.param(
        request("POST", "dockerVolume.removeVolume", {"volumeName": "ws/alice"}),
        "body.volumeName: 'ws/alice' does not match",
        id="volume-name-pattern",
    ),
    pytest.param(
        request("POST", "mounts.create", {"serviceId": "a", "type": "volume"}),
        "body: missing required field mountPath",
        id="mount-without-path",
    ),
    pytest.param(
        request("GET", "mounts.listByServiceId", params={"serviceId": "a", "serviceType": ""}),
        "query.serviceType: shorter than 1",
        id="empty-service-type",
    ),
    pytest.param(
        request("POST", "application.update", {"applicationId": "a", "memoryLimit": 2}),
        "body.memoryLimit: matches none of anyOf",
        id="limit-as-a-number",
    ),
]


@pytest.mark.parametrize(("bad", "expected"), BAD_REQUESTS)
def test_the_checker_catches_bad_requests(contract, bad, expected):
    problems = contract.check(bad)

    assert any(expected in problem for problem in problems), problems


def test_the_checker_passes_a_good_request(contract):
    good = request(
        "POST",
        "domain.create",
        {"host": "a.example.com", "port": 8080, "https": True, "path": None, "middlewares": []},
    )

    assert contract.check(good) == []
