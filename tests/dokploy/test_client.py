"""The Dokploy client against respx: exact requests, retries and waits, recovery, redaction."""

from __future__ import annotations

import json
import logging
import os
import pickle
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
import time_machine

from stacks.dokploy.client import (
    CallRecord,
    DokployClient,
    record_call,
    record_call_to_db,
    volume_in_use,
    volume_missing,
)
from stacks.dokploy.errors import DokployError
from stacks.dokploy.types import Application, Domain, Mount, ProjectCreated
from stacks.models import DeploymentAttempt, DokployCall, Stack
from stacks.pipeline import Run
from stacks.resilience import CircuitBreaker
from tests.dokploy.client_fixtures import (
    API,
    APPLICATION_ID,
    CANARY_KEY,
    DEPLOYMENT_ID,
    DOMAIN_ID,
    ENVIRONMENT_ID,
    MOUNT_ID,
    PROJECT_ID,
    VOLUME_NAME,
    application_one_row,
    application_row,
    application_summary,
    deployment_row,
    domain_row,
    environment_row,
    json_body,
    listed_environment,
    listed_project,
    make_client,
    mount_row,
    project_row,
    trpc_error,
)

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
GIB = 1024**3
MIB = 1024**2
JUST_CREATED = "2026-03-01T12:00:00.480Z"
LONG_AGO = "2026-02-01T08:00:00.000Z"


@pytest.fixture
def api() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=False) as router:
        yield router


@pytest.fixture
def waits() -> list[float]:
    return []


@pytest.fixture
def calls() -> list[CallRecord]:
    return []


@pytest.fixture
def client(waits: list[float], calls: list[CallRecord]) -> Iterator[DokployClient]:
    with make_client(waits=waits, calls=calls) as dokploy:
        yield dokploy


@pytest.fixture
def frozen() -> Iterator[time_machine.Traveller]:
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


def answer(status: int = 200, payload: Any = None, **kwargs: Any) -> httpx.Response:
    if payload is None:
        return httpx.Response(status, **kwargs)
    return httpx.Response(status, json=payload, **kwargs)


def outage(status: int = 503) -> httpx.Response:
    return answer(status, trpc_error(status, "INTERNAL_SERVER_ERROR", "upstream down", "x"))


# --- The exact requests -----------------------------------------------------------------------

Call = Callable[[DokployClient], Any]

REQUESTS = [
    pytest.param(
        lambda c: c.project_create(name="ai-stack-alice", description="AI Stack for alice"),
        "POST",
        "project.create",
        {},
        {"name": "ai-stack-alice", "description": "AI Stack for alice"},
        {"project": project_row(), "environment": environment_row()},
        id="project.create",
    ),
    pytest.param(
        lambda c: c.project_create(name="ai-stack-alice"),
        "POST",
        "project.create",
        {},
        {"name": "ai-stack-alice"},
        {"project": project_row(), "environment": environment_row()},
        id="project.create-without-description",
    ),
    pytest.param(
        lambda c: c.project_all(), "GET", "project.all", {}, None, [listed_project()], id="all"
    ),
    pytest.param(
        lambda c: c.project_one(PROJECT_ID),
        "GET",
        "project.one",
        {"projectId": PROJECT_ID},
        None,
        listed_project(),
        id="project.one",
    ),
    pytest.param(
        lambda c: c.project_remove(PROJECT_ID),
        "POST",
        "project.remove",
        {},
        {"projectId": PROJECT_ID},
        project_row(),
        id="project.remove",
    ),
    pytest.param(
        lambda c: c.environment_by_project_id(PROJECT_ID),
        "GET",
        "environment.byProjectId",
        {"projectId": PROJECT_ID},
        None,
        [listed_environment([application_summary()], project=project_row())],
        id="environment.byProjectId",
    ),
    pytest.param(
        lambda c: c.application_create(
            name="opencode-alice",
            environment_id=ENVIRONMENT_ID,
            app_name="opencode-alice",
            description="alice's stack",
            source_type="docker",
            project_id=PROJECT_ID,
        ),
        "POST",
        "application.create",
        {},
        {
            "name": "opencode-alice",
            "environmentId": ENVIRONMENT_ID,
            "appName": "opencode-alice",
            "description": "alice's stack",
            "sourceType": "docker",
        },
        application_row(),
        id="application.create",
    ),
    pytest.param(
        lambda c: c.application_one(APPLICATION_ID),
        "GET",
        "application.one",
        {"applicationId": APPLICATION_ID},
        None,
        application_one_row(),
        id="application.one",
    ),
    pytest.param(
        lambda c: c.application_save_docker_provider(
            application_id=APPLICATION_ID, docker_image="ghcr.io/ai-stack/opencode:1"
        ),
        "POST",
        "application.saveDockerProvider",
        {},
        {
            "applicationId": APPLICATION_ID,
            "dockerImage": "ghcr.io/ai-stack/opencode:1",
            "username": None,
            "password": None,
            "registryUrl": None,
        },
        True,
        id="application.saveDockerProvider",
    ),
    pytest.param(
        lambda c: c.application_update(
            APPLICATION_ID, docker_image="ghcr.io/ai-stack/opencode:1", sourceType="docker"
        ),
        "POST",
        "application.update",
        {},
        {
            "applicationId": APPLICATION_ID,
            "dockerImage": "ghcr.io/ai-stack/opencode:1",
            "sourceType": "docker",
        },
        True,
        id="application.update",
    ),
    pytest.param(
        lambda c: c.application_deploy(APPLICATION_ID, title="attempt #7", description="create"),
        "POST",
        "application.deploy",
        {},
        {"applicationId": APPLICATION_ID, "title": "attempt #7", "description": "create"},
        None,
        id="application.deploy",
    ),
    pytest.param(
        lambda c: c.application_stop(APPLICATION_ID),
        "POST",
        "application.stop",
        {},
        {"applicationId": APPLICATION_ID},
        application_one_row(),
        id="application.stop",
    ),
    pytest.param(
        lambda c: c.application_start(APPLICATION_ID),
        "POST",
        "application.start",
        {},
        {"applicationId": APPLICATION_ID},
        application_one_row(),
        id="application.start",
    ),
    pytest.param(
        lambda c: c.application_delete(APPLICATION_ID),
        "POST",
        "application.delete",
        {},
        {"applicationId": APPLICATION_ID},
        application_one_row(),
        id="application.delete",
    ),
    pytest.param(
        lambda c: c.domain_create(
            host="alice.ai.example.com", application_id=APPLICATION_ID, port=8080
        ),
        "POST",
        "domain.create",
        {},
        {
            "host": "alice.ai.example.com",
            "applicationId": APPLICATION_ID,
            "https": True,
            "port": 8080,
            "certificateType": "letsencrypt",
            "domainType": "application",
            "path": "/",
        },
        domain_row(),
        id="domain.create",
    ),
    pytest.param(
        lambda c: c.domain_by_application_id(APPLICATION_ID),
        "GET",
        "domain.byApplicationId",
        {"applicationId": APPLICATION_ID},
        None,
        [domain_row()],
        id="domain.byApplicationId",
    ),
    pytest.param(
        lambda c: c.domain_update(
            DOMAIN_ID,
            host="alice.ai.example.com",
            https=True,
            port=8080,
            certificate_type="letsencrypt",
            domain_type="application",
            path="/",
        ),
        "POST",
        "domain.update",
        {},
        {
            "domainId": DOMAIN_ID,
            "host": "alice.ai.example.com",
            "https": True,
            "port": 8080,
            "certificateType": "letsencrypt",
            "domainType": "application",
            "path": "/",
        },
        domain_row(),
        id="domain.update",
    ),
    pytest.param(
        lambda c: c.domain_delete(DOMAIN_ID),
        "POST",
        "domain.delete",
        {},
        {"domainId": DOMAIN_ID},
        domain_row(),
        id="domain.delete",
    ),
    pytest.param(
        lambda c: c.deployment_all(APPLICATION_ID),
        "GET",
        "deployment.all",
        {"applicationId": APPLICATION_ID},
        None,
        [deployment_row()],
        id="deployment.all",
    ),
    pytest.param(
        lambda c: c.deployment_read_logs(DEPLOYMENT_ID, tail=50),
        "GET",
        "deployment.readLogs",
        {"deploymentId": DEPLOYMENT_ID, "tail": "50"},
        None,
        "step 1\nstep 2",
        id="deployment.readLogs",
    ),
    pytest.param(
        lambda c: c.application_set_limits(
            APPLICATION_ID,
            memory_bytes=2 * GIB,
            cpu_nanos=1_500_000_000,
            memory_reservation_bytes=GIB,
            cpu_reservation_nanos=500_000_000,
        ),
        "POST",
        "application.update",
        {},
        {
            "applicationId": APPLICATION_ID,
            "memoryLimit": "2147483648",
            "memoryReservation": "1073741824",
            "cpuLimit": "1500000000",
            "cpuReservation": "500000000",
        },
        True,
        id="application.update-limits",
    ),
    pytest.param(
        lambda c: c.application_set_limits(APPLICATION_ID, memory_bytes=None, cpu_nanos=None),
        "POST",
        "application.update",
        {},
        {
            "applicationId": APPLICATION_ID,
            "memoryLimit": None,
            "memoryReservation": None,
            "cpuLimit": None,
            "cpuReservation": None,
        },
        True,
        id="application.update-no-limits",
    ),
    pytest.param(
        lambda c: c.mounts_list_by_service_id(APPLICATION_ID),
        "GET",
        "mounts.listByServiceId",
        {"serviceId": APPLICATION_ID, "serviceType": "application"},
        None,
        [mount_row()],
        id="mounts.listByServiceId",
    ),
    pytest.param(
        lambda c: c.mounts_create_volume(
            application_id=APPLICATION_ID, volume_name=VOLUME_NAME, mount_path="/workspace"
        ),
        "POST",
        "mounts.create",
        {},
        {
            "serviceId": APPLICATION_ID,
            "serviceType": "application",
            "type": "volume",
            "volumeName": VOLUME_NAME,
            "mountPath": "/workspace",
        },
        mount_row(),
        id="mounts.create",
    ),
    pytest.param(
        lambda c: c.mounts_remove(MOUNT_ID),
        "POST",
        "mounts.remove",
        {},
        {"mountId": MOUNT_ID},
        mount_row(),
        id="mounts.remove",
    ),
    pytest.param(
        lambda c: c.docker_volumes(),
        "GET",
        "dockerVolume.getVolumes",
        {},
        None,
        [{"Name": VOLUME_NAME, "Driver": "local", "Scope": "local", "Mountpoint": "/v"}],
        id="dockerVolume.getVolumes",
    ),
    pytest.param(
        lambda c: c.docker_volume_remove(VOLUME_NAME),
        "POST",
        "dockerVolume.removeVolume",
        {},
        {"volumeName": VOLUME_NAME},
        None,
        id="dockerVolume.removeVolume",
    ),
]


@pytest.mark.parametrize(("call", "method", "endpoint", "query", "body", "payload"), REQUESTS)
def test_each_method_sends_exactly_its_request(
    api: respx.MockRouter,
    client: DokployClient,
    call: Call,
    method: str,
    endpoint: str,
    query: dict[str, str],
    body: dict[str, Any] | None,
    payload: Any,
) -> None:
    route = api.route(method=method, url=f"{API}/{endpoint}").mock(
        return_value=answer(200, payload) if payload is not None else answer(200)
    )

    call(client)

    assert route.call_count == 1
    request = route.calls.last.request
    assert request.method == method
    assert request.url.path == f"/api/{endpoint}"
    assert dict(request.url.params) == query
    assert len(request.url.params.multi_items()) == len(query)
    assert json_body(request) == body
    assert request.headers["x-api-key"] == CANARY_KEY
    assert request.headers["accept"] == "application/json"
    if method == "POST":
        assert request.headers["content-type"] == "application/json"
    else:
        assert request.content == b""


def test_project_create_returns_project_and_production_environment(api, client):
    api.post(f"{API}/project.create").respond(
        json={"project": project_row(), "environment": environment_row()}
    )

    created = client.project_create(name="ai-stack-alice")

    assert isinstance(created, ProjectCreated)
    assert created.project.project_id == PROJECT_ID
    assert created.project.name == "ai-stack-alice"
    assert created.environment.environment_id == ENVIRONMENT_ID
    assert created.environment.is_default
    assert created.environment.project_id == PROJECT_ID
    assert created.raw["project"]["projectId"] == PROJECT_ID


def test_application_one_is_typed_with_domains_and_deployments(api, client):
    api.get(f"{API}/application.one").respond(json=application_one_row())

    application = client.application_one(APPLICATION_ID)

    assert application.application_id == APPLICATION_ID
    assert application.app_name == "opencode-alice-x1y2z3"
    assert application.environment_id == ENVIRONMENT_ID
    assert application.source_type == "docker"
    assert application.docker_image == "ghcr.io/ai-stack/opencode-ttyd:latest"
    assert application.replicas == 1
    assert [d.host for d in application.domains] == ["alice.ai.example.com"]
    assert application.domains[0].port == 8080
    assert application.deployments[0].deployment_id == DEPLOYMENT_ID
    assert application.deployments[0].status == "done"


def test_application_one_raw_hides_password_env_and_tokens(api, client):
    api.get(f"{API}/application.one").respond(json=application_one_row())

    raw = client.application_one(APPLICATION_ID).raw

    assert raw["password"] == "[redacted]"
    assert raw["env"] == "[redacted]"
    assert raw["refreshToken"] == "[redacted]"
    assert raw["username"] == "registry-user"
    text = json.dumps(raw)
    assert "registry-password-123" not in text
    assert "sk-live-secret" not in text


def test_types_tolerate_missing_optional_keys(api, client):
    api.get(f"{API}/project.all").respond(
        json=[
            {
                "projectId": PROJECT_ID,
                "name": "ai-stack-alice",
                "environments": [
                    {
                        "environmentId": ENVIRONMENT_ID,
                        "name": "production",
                        "isDefault": True,
                        "applications": [
                            {"applicationId": APPLICATION_ID, "name": "opencode-alice"}
                        ],
                        "postgres": [{"postgresId": "pg1"}],
                    }
                ],
            }
        ]
    )

    [project] = client.project_all()

    assert project.description is None
    assert project.created_at is None
    environment = project.production_environment()
    assert environment is not None
    assert environment.project_id == PROJECT_ID
    assert environment.other_services == ["postgres"]
    [app] = environment.applications
    assert app.app_name is None
    assert app.application_status is None


def test_deploy_accepts_an_empty_body_and_true(api, client):
    route = api.post(f"{API}/application.deploy").mock(
        side_effect=[
            httpx.Response(200, headers={"content-type": "application/json"}),
            answer(200, True),
        ]
    )

    assert client.application_deploy(APPLICATION_ID) is None
    assert client.application_deploy(APPLICATION_ID) is None
    assert route.call_count == 2
    assert json_body(route.calls.last.request) == {"applicationId": APPLICATION_ID}


def test_true_bodies_are_true(api, client):
    api.post(f"{API}/application.saveDockerProvider").respond(json=True)
    api.post(f"{API}/application.update").respond(json=True)

    assert client.application_save_docker_provider(
        application_id=APPLICATION_ID, docker_image="img"
    )
    assert client.application_update(APPLICATION_ID, replicas=1)


def test_logs_are_returned_as_text(api, client):
    api.get(f"{API}/deployment.readLogs").respond(json="line 1\nline 2")

    assert client.deployment_read_logs(DEPLOYMENT_ID) == "line 1\nline 2"


def test_a_row_without_its_id_is_a_bad_response(api, client):
    api.post(f"{API}/domain.create").respond(json={"host": "alice.ai.example.com"})

    with pytest.raises(DokployError) as caught:
        client.domain_create(host="alice.ai.example.com", application_id=APPLICATION_ID, port=8080)

    assert caught.value.code == "BAD_RESPONSE"
    assert not caught.value.retryable
    assert caught.value.ambiguous  # the domain may well exist


def test_invalid_json_is_a_bad_response(api, client):
    api.get(f"{API}/project.all").respond(
        200, content=b"{not json", headers={"content-type": "application/json"}
    )

    with pytest.raises(DokployError) as caught:
        client.project_all()

    assert caught.value.code == "BAD_RESPONSE"


# --- Mounts, volumes and limits ---------------------------------------------------------------


def test_application_one_reads_mounts_and_limits(api, client):
    unattached = mount_row(mountId="mnt_2", applicationId=None, volumeName=None)
    api.get(f"{API}/application.one").respond(
        json=application_one_row(
            mounts=[mount_row(), unattached], memoryLimit="2147483648", cpuLimit="1500000000"
        )
    )

    application = client.application_one(APPLICATION_ID)

    first, second = application.mounts
    assert first == Mount(
        mount_id=MOUNT_ID,
        type="volume",
        mount_path="/workspace",
        volume_name=VOLUME_NAME,
        service_type="application",
        application_id=APPLICATION_ID,
    )
    assert first.is_named_volume
    assert second.application_id is None
    assert not second.is_named_volume
    assert application.memory_limit == "2147483648"
    assert application.cpu_limit == "1500000000"
    assert application.memory_reservation is None
    assert application.cpu_reservation is None


def test_mounts_create_answers_the_typed_row(api, client):
    api.post(f"{API}/mounts.create").respond(json=mount_row())

    mount = client.mounts_create_volume(
        application_id=APPLICATION_ID, volume_name=VOLUME_NAME, mount_path="/workspace"
    )

    assert mount.mount_id == MOUNT_ID
    assert mount.volume_name == VOLUME_NAME
    assert mount.raw["serviceType"] == "application"


@pytest.mark.parametrize(
    ("volume_name", "mount_path"),
    [
        ("", "/workspace"),
        ("w", "/workspace"),
        ("-ws-alice", "/workspace"),
        (".ws-alice", "/workspace"),
        ("ws alice", "/workspace"),
        ("ws/alice", "/workspace"),
        ("ws:alice", "/workspace"),
        (VOLUME_NAME, "workspace"),
        (VOLUME_NAME, ""),
        (VOLUME_NAME, "/"),
    ],
)
def test_mounts_create_refuses_what_docker_would_refuse_before_sending(
    api, client, volume_name, mount_path
):
    route = api.post(f"{API}/mounts.create").respond(json=mount_row())

    with pytest.raises(ValueError, match=r"is not (a Docker volume name|an absolute path)"):
        client.mounts_create_volume(
            application_id=APPLICATION_ID, volume_name=volume_name, mount_path=mount_path
        )

    assert route.call_count == 0


@pytest.mark.parametrize(
    ("limits", "error", "message"),
    [
        ({"memory_bytes": "2G"}, TypeError, "memory_bytes must be a whole number, not str"),
        ({"memory_bytes": 1.5 * GIB}, TypeError, "memory_bytes must be a whole number, not float"),
        ({"cpu_nanos": True}, TypeError, "cpu_nanos must be a whole number, not bool"),
        ({"memory_bytes": 2}, ValueError, "memory_bytes must be at least 6291456, not 2"),
        ({"memory_bytes": 6 * MIB - 1}, ValueError, "memory_bytes must be at least 6291456"),
        ({"cpu_nanos": 1}, ValueError, "cpu_nanos must be at least 1000000, not 1"),
        ({"cpu_nanos": -1_000_000_000}, ValueError, "cpu_nanos must be at least 1000000"),
        (
            {"cpu_reservation_nanos": 999_999},
            ValueError,
            "cpu_reservation_nanos must be at least 1000000",
        ),
        (
            {"memory_reservation_bytes": MIB},
            ValueError,
            "memory_reservation_bytes must be at least 6291456",
        ),
        (
            {"memory_bytes": GIB, "memory_reservation_bytes": 2 * GIB},
            ValueError,
            "memory_reservation_bytes must not exceed memory_bytes",
        ),
    ],
)
def test_set_limits_refuses_what_swarm_would_refuse_before_sending(
    api, client, limits, error, message
):
    route = api.post(f"{API}/application.update").respond(json=True)
    arguments = {"memory_bytes": None, "cpu_nanos": None, **limits}

    with pytest.raises(error, match=message):
        client.application_set_limits(APPLICATION_ID, **arguments)

    assert route.call_count == 0


def test_set_limits_takes_the_minimums(api, client):
    route = api.post(f"{API}/application.update").respond(json=True)

    assert client.application_set_limits(APPLICATION_ID, memory_bytes=6 * MIB, cpu_nanos=1_000_000)

    body = json_body(route.calls.last.request)
    assert body["memoryLimit"] == "6291456"
    assert body["cpuLimit"] == "1000000"


def test_remove_volume_accepts_the_empty_answer_and_refuses_bad_names(api, client):
    route = api.post(f"{API}/dockerVolume.removeVolume").mock(
        return_value=httpx.Response(200, headers={"content-type": "application/json"})
    )

    assert client.docker_volume_remove(VOLUME_NAME) is None
    with pytest.raises(ValueError, match="is not a Docker volume name"):
        client.docker_volume_remove("")

    assert route.call_count == 1


def docker_says(reason: str) -> httpx.Response:
    message = (
        f"Command execution failed: Command failed: docker volume rm {VOLUME_NAME}\n"
        f"Error response from daemon: {reason}\n"
    )
    return answer(
        500,
        trpc_error(500, "INTERNAL_SERVER_ERROR", message, "dockerVolume.removeVolume"),
    )


def test_a_volume_in_use_is_retried_by_the_retry_layer_then_removed(api, client, waits):
    in_use = docker_says(f"remove {VOLUME_NAME}: volume is in use - [4b1c9e]")
    route = api.post(f"{API}/dockerVolume.removeVolume").mock(
        side_effect=[in_use, in_use, answer(200)]
    )

    client.docker_volume_remove(VOLUME_NAME)

    assert route.call_count == 3
    assert waits == [1.0, 2.0]


def test_in_use_and_missing_volumes_are_told_apart(api, client, waits):
    in_use = docker_says(f"remove {VOLUME_NAME}: volume is in use - [4b1c9e]")
    missing = docker_says(f"get {VOLUME_NAME}: no such volume")
    api.post(f"{API}/dockerVolume.removeVolume").mock(side_effect=[in_use] * 6 + [missing] * 6)

    with pytest.raises(DokployError) as busy:
        client.docker_volume_remove(VOLUME_NAME)
    with pytest.raises(DokployError) as gone:
        client.docker_volume_remove(VOLUME_NAME)

    assert volume_in_use(busy.value)
    assert not volume_missing(busy.value)
    assert volume_missing(gone.value)
    assert not volume_in_use(gone.value)
    assert busy.value.status == 500
    assert "volume is in use" in str(busy.value)


def test_other_failures_are_neither_in_use_nor_missing(api, client, waits):
    api.post(f"{API}/application.stop").mock(return_value=outage(500))

    with pytest.raises(DokployError) as caught:
        client.application_stop(APPLICATION_ID)

    assert not volume_in_use(caught.value)
    assert not volume_missing(caught.value)


def test_there_is_no_method_for_the_volume_prune():
    names = [name.lower() for name in dir(DokployClient)]

    assert [name for name in names if "clean" in name or "prune" in name] == []


def test_no_code_under_stacks_names_the_volume_prune_endpoint():
    """settings.cleanUnusedVolumes deletes every stopped person's files. Only the simulator,
    which plays Dokploy, may name it."""
    root = Path(__file__).resolve().parents[2] / "stacks"
    simulator = root / "dokploy" / "simulator.py"
    naming = [
        str(path.relative_to(root))
        for path in sorted(root.rglob("*"))
        if path.is_file()
        and path != simulator
        and "__pycache__" not in path.parts
        and "cleanunusedvolumes" in re.sub(r"[^a-z]", "", path.read_text(errors="replace").lower())
    ]

    assert naming == []
    assert "cleanUnusedVolumes" in simulator.read_text()


# --- Retries ----------------------------------------------------------------------------------


def test_two_outages_then_success_take_three_requests(api, waits, calls):
    route = api.get(f"{API}/project.all").mock(side_effect=[outage(), outage(502), answer(200, [])])

    with make_client(waits=waits, calls=calls, retry_base=0.5) as client:
        assert client.project_all() == []

    assert route.call_count == 3
    assert waits == [0.5, 1.0]
    assert [(c.status_code, c.try_number) for c in calls] == [(503, 1), (502, 2), (200, 3)]
    assert [c.error_code for c in calls] == ["INTERNAL_SERVER_ERROR"] * 2 + [""]


def test_six_outages_make_six_requests_then_fail(api, client, waits, calls):
    route = api.get(f"{API}/project.all").mock(return_value=outage())

    with pytest.raises(DokployError) as caught:
        client.project_all()

    assert route.call_count == 6
    assert waits == [1.0, 2.0, 4.0, 8.0, 16.0]
    assert caught.value.status == 503
    assert caught.value.retryable
    assert [c.try_number for c in calls] == [1, 2, 3, 4, 5, 6]


@pytest.mark.django_db
def test_with_the_breaker_five_outages_open_it_and_stop_the_retries(api, waits):
    breaker = CircuitBreaker(failures=5, reset=60.0, successes=3)
    route = api.post(f"{API}/application.deploy").mock(return_value=outage())

    with make_client(waits=waits, breaker=breaker) as client, pytest.raises(DokployError) as err:
        client.application_deploy(APPLICATION_ID)

    assert route.call_count == 5
    assert waits == [1.0, 2.0, 4.0, 8.0]
    assert err.value.code == "BREAKER_OPEN"
    assert err.value.ambiguous  # the deploy may have been queued by one of the five
    assert breaker.snapshot().state == "open"


@pytest.mark.parametrize(
    "failure",
    [
        httpx.ConnectError("connection refused"),
        httpx.ConnectTimeout("connect timed out"),
        httpx.ReadTimeout("read timed out"),
        httpx.RemoteProtocolError("Server disconnected without sending a response."),
    ],
    ids=["connect-error", "connect-timeout", "read-timeout", "dropped"],
)
def test_network_errors_and_timeouts_are_retried(api, client, waits, calls, failure):
    route = api.get(f"{API}/deployment.all").mock(side_effect=[failure, answer(200, [])])

    assert client.deployment_all(APPLICATION_ID) == []

    assert route.call_count == 2
    assert waits == [1.0]
    assert calls[0].status_code is None
    assert calls[0].error_code in {"NETWORK_ERROR", "TIMEOUT"}


def test_timeout_error_says_timeout(api, client, waits):
    api.get(f"{API}/project.all").mock(side_effect=httpx.ReadTimeout("slow"))

    with pytest.raises(DokployError) as caught:
        client.project_all()

    assert caught.value.code == "TIMEOUT"
    assert caught.value.status is None
    assert not caught.value.ambiguous  # a query changes nothing
    assert str(caught.value).startswith("project.all failed: TIMEOUT")


@pytest.mark.parametrize(
    ("failure", "ambiguous"),
    [
        (httpx.ConnectError("refused"), False),
        (httpx.ConnectTimeout("connect"), False),
        (httpx.ReadTimeout("read"), True),
        (httpx.RemoteProtocolError("dropped"), True),
        (outage(500), True),
        (outage(503), True),
    ],
    ids=["connect-error", "connect-timeout", "read-timeout", "dropped", "500", "503"],
)
def test_a_mutation_is_ambiguous_only_if_the_request_may_have_arrived(
    api, client, waits, failure, ambiguous
):
    api.post(f"{API}/application.stop").mock(side_effect=[failure] * 6)

    with pytest.raises(DokployError) as caught:
        client.application_stop(APPLICATION_ID)

    assert caught.value.ambiguous is ambiguous


def test_429_waits_for_retry_after_seconds(api, client, waits):
    route = api.get(f"{API}/project.all").mock(
        side_effect=[
            answer(429, {"message": "slow down"}, headers={"Retry-After": "3"}),
            answer(200, []),
        ]
    )

    client.project_all()

    assert route.call_count == 2
    assert waits == [3.0]


def test_429_waits_for_retry_after_http_date(api, client, waits, frozen):
    later = format_datetime(NOW + timedelta(seconds=7), usegmt=True)
    route = api.get(f"{API}/project.all").mock(
        side_effect=[answer(429, headers={"Retry-After": later}), answer(200, [])]
    )

    client.project_all()

    assert route.call_count == 2
    assert waits == [7.0]


def test_retry_after_is_capped(api, waits):
    route = api.get(f"{API}/project.all").mock(
        side_effect=[answer(429, headers={"Retry-After": "3600"}), answer(200, [])]
    )

    with make_client(waits=waits, retry_after_max=20.0) as client:
        client.project_all()

    assert route.call_count == 2
    assert waits == [20.0]


def test_429_without_retry_after_uses_the_backoff_wait(api, client, waits):
    api.get(f"{API}/project.all").mock(side_effect=[answer(429), answer(429), answer(200, [])])

    client.project_all()

    assert waits == [1.0, 2.0]


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (400, "BAD_REQUEST"),
        (401, "UNAUTHORIZED"),
        (403, "FORBIDDEN"),
        (404, "NOT_FOUND"),
        (409, "CONFLICT"),
        (415, "UNSUPPORTED_MEDIA_TYPE"),
    ],
)
def test_client_errors_fail_after_one_request(api, client, waits, status, code):
    route = api.post(f"{API}/application.create").respond(
        status, json=trpc_error(status, code, "nope", "application.create")
    )

    with pytest.raises(DokployError) as caught:
        client.application_create(name="opencode-alice", environment_id=ENVIRONMENT_ID)

    assert route.call_count == 1
    assert waits == []
    assert caught.value.status == status
    assert caught.value.code == code
    assert not caught.value.retryable
    assert not caught.value.ambiguous


def test_jitter_only_adds_up_to_a_quarter(api, calls):
    waits: list[float] = []
    api.get(f"{API}/project.all").mock(return_value=outage())

    with make_client(waits=waits, jitter=True) as client, pytest.raises(DokployError):
        client.project_all()

    assert len(waits) == 5
    for wait, base in zip(waits, [1.0, 2.0, 4.0, 8.0, 16.0], strict=True):
        assert base <= wait <= base * 1.25


# --- Ambiguous creates ------------------------------------------------------------------------


def test_project_create_that_failed_after_creating_is_found_not_repeated(
    api, client, waits, frozen
):
    create = api.post(f"{API}/project.create").mock(return_value=outage(500))
    mine = listed_project(projectId="prj_new", createdAt=JUST_CREATED)
    older = listed_project(projectId="prj_old", createdAt=LONG_AGO)
    other = listed_project(projectId="prj_other", name="ai-stack-bob", createdAt=JUST_CREATED)
    look_up = api.get(f"{API}/project.all").respond(json=[other, mine, older])

    created = client.project_create(name="ai-stack-alice")

    assert create.call_count == 1
    assert look_up.call_count == 1
    assert waits == [1.0]
    assert created.project.project_id == "prj_new"
    assert created.environment.environment_id == ENVIRONMENT_ID
    assert created.environment.name == "production"
    order = [call.request.url.path for call in api.calls]
    assert order == ["/api/project.create", "/api/project.all"]


def test_project_create_retries_when_the_look_up_finds_nothing(api, client, waits, frozen):
    create = api.post(f"{API}/project.create").mock(
        side_effect=[
            outage(500),
            answer(200, {"project": project_row(), "environment": environment_row()}),
        ]
    )
    older = listed_project(projectId="prj_old", createdAt=LONG_AGO)
    look_up = api.get(f"{API}/project.all").respond(json=[older])

    created = client.project_create(name="ai-stack-alice")

    assert create.call_count == 2
    assert look_up.call_count == 1
    assert waits == [1.0]  # the create follows the look-up without another wait
    assert created.project.project_id == PROJECT_ID
    order = [call.request.url.path for call in api.calls]
    assert order == ["/api/project.create", "/api/project.all", "/api/project.create"]


def test_a_failed_look_up_counts_as_a_try_and_is_repeated(api, client, waits, calls, frozen):
    create = api.post(f"{API}/project.create").mock(side_effect=httpx.ReadTimeout("slow"))
    mine = listed_project(createdAt=JUST_CREATED)
    look_up = api.get(f"{API}/project.all").mock(side_effect=[outage(), answer(200, [mine])])

    created = client.project_create(name="ai-stack-alice")

    assert create.call_count == 1
    assert look_up.call_count == 2
    assert waits == [1.0, 2.0]
    assert created.project.project_id == PROJECT_ID
    assert [(c.endpoint, c.try_number) for c in calls] == [
        ("project.create", 1),
        ("project.all", 2),
        ("project.all", 3),
    ]


def test_a_create_that_surely_never_arrived_is_retried_without_a_look_up(api, client, waits):
    create = api.post(f"{API}/project.create").mock(
        side_effect=[
            httpx.ConnectError("refused"),
            answer(200, {"project": project_row(), "environment": environment_row()}),
        ]
    )
    look_up = api.get(f"{API}/project.all")

    client.project_create(name="ai-stack-alice")

    assert create.call_count == 2
    assert look_up.call_count == 0


def test_a_single_match_without_timestamps_is_taken(api, client, waits):
    api.post(f"{API}/project.create").mock(return_value=outage(500))
    mine = listed_project()
    del mine["createdAt"]
    api.get(f"{API}/project.all").respond(json=[mine])

    created = client.project_create(name="ai-stack-alice")

    assert created.project.project_id == PROJECT_ID


def test_project_found_without_its_environment_in_the_list_asks_for_it(api, client, waits, frozen):
    api.post(f"{API}/project.create").mock(return_value=outage(500))
    api.get(f"{API}/project.all").respond(
        json=[listed_project(environments=[], createdAt=JUST_CREATED)]
    )
    environments = api.get(f"{API}/environment.byProjectId").respond(
        json=[
            listed_environment(name="staging", isDefault=False, environmentId="env_s"),
            listed_environment(),
        ]
    )

    created = client.project_create(name="ai-stack-alice")

    assert environments.call_count == 1
    assert dict(environments.calls.last.request.url.params) == {"projectId": PROJECT_ID}
    assert created.environment.environment_id == ENVIRONMENT_ID


def test_application_create_is_found_through_its_project(api, client, waits, frozen):
    create = api.post(f"{API}/application.create").mock(return_value=outage(502))
    mine = application_summary(applicationId="app_new", createdAt=JUST_CREATED)
    look_up = api.get(f"{API}/environment.byProjectId").respond(
        json=[listed_environment([application_summary(name="other-app"), mine])]
    )

    app = client.application_create(
        name="opencode-alice", environment_id=ENVIRONMENT_ID, project_id=PROJECT_ID
    )

    assert isinstance(app, Application)
    assert create.call_count == 1
    assert look_up.call_count == 1
    assert dict(look_up.calls.last.request.url.params) == {"projectId": PROJECT_ID}
    assert app.application_id == "app_new"
    assert app.app_name == "opencode-alice-x1y2z3"
    assert app.environment_id == ENVIRONMENT_ID
    assert waits == [1.0]


def test_application_create_without_project_id_finds_the_project_first(api, client, waits, frozen):
    create = api.post(f"{API}/application.create").mock(
        side_effect=[httpx.RemoteProtocolError("dropped"), answer(200, application_row())]
    )
    projects = api.get(f"{API}/project.all").respond(
        json=[
            listed_project(
                projectId="prj_x", environments=[listed_environment(environmentId="env_x")]
            ),
            listed_project(),
        ]
    )
    environments = api.get(f"{API}/environment.byProjectId").respond(json=[listed_environment([])])

    app = client.application_create(name="opencode-alice", environment_id=ENVIRONMENT_ID)

    assert projects.call_count == 1
    assert environments.call_count == 1
    assert dict(environments.calls.last.request.url.params) == {"projectId": PROJECT_ID}
    assert create.call_count == 2  # nothing found: the create is sent again
    assert app.application_id == APPLICATION_ID


def test_domain_create_is_found_by_host(api, client, waits, frozen):
    create = api.post(f"{API}/domain.create").mock(side_effect=httpx.ReadTimeout("slow"))
    look_up = api.get(f"{API}/domain.byApplicationId").respond(
        json=[
            domain_row(domainId="dom_other", host="bob.ai.example.com", createdAt=JUST_CREATED),
            domain_row(domainId="dom_new", createdAt=JUST_CREATED),
        ]
    )

    domain = client.domain_create(
        host="alice.ai.example.com", application_id=APPLICATION_ID, port=8080
    )

    assert isinstance(domain, Domain)
    assert create.call_count == 1
    assert look_up.call_count == 1
    assert dict(look_up.calls.last.request.url.params) == {"applicationId": APPLICATION_ID}
    assert domain.domain_id == "dom_new"


def test_domain_create_retries_when_the_host_is_not_there(api, client, waits, frozen):
    create = api.post(f"{API}/domain.create").mock(
        side_effect=[outage(500), answer(200, domain_row())]
    )
    api.get(f"{API}/domain.byApplicationId").respond(json=[])

    domain = client.domain_create(
        host="alice.ai.example.com", application_id=APPLICATION_ID, port=8080
    )

    assert create.call_count == 2
    assert domain.domain_id == DOMAIN_ID


def test_a_create_that_keeps_failing_ends_ambiguous(api, client, waits, frozen):
    api.post(f"{API}/project.create").mock(return_value=outage(500))
    api.get(f"{API}/project.all").mock(return_value=outage(503))

    with pytest.raises(DokployError) as caught:
        client.project_create(name="ai-stack-alice")

    assert caught.value.ambiguous
    assert len(api.calls) == 6


# --- Errors -----------------------------------------------------------------------------------


def test_trpc_error_body_is_parsed(api, client):
    body = trpc_error(
        400,
        "BAD_REQUEST",
        "Input validation failed",
        "application.create",
        issues=[{"code": "too_small", "path": ["name"], "message": "Too small"}],
    )
    body["data"]["zodError"] = {"formErrors": [], "fieldErrors": {"name": ["Too small"]}}
    body["data"]["stack"] = "Error: at line 1"
    api.post(f"{API}/application.create").respond(400, json=body)

    with pytest.raises(DokployError) as caught:
        client.application_create(name="", environment_id=ENVIRONMENT_ID)

    error = caught.value
    assert error.status == 400
    assert error.code == "BAD_REQUEST"
    assert error.endpoint == "application.create"
    assert error.message == "Input validation failed (name: Too small)"
    assert error.api_response["data"]["path"] == "application.create"
    assert error.api_response["issues"][0]["path"] == ["name"]
    assert "stack" not in error.api_response["data"]
    assert str(error) == (
        "application.create failed: 400 BAD_REQUEST Input validation failed (name: Too small)"
    )


def test_project_create_error_reads_like_dokploy_said_it(api, client):
    message = "Error creating the project: permission denied"
    api.post(f"{API}/project.create").respond(
        400, json=trpc_error(400, "BAD_REQUEST", message, "project.create")
    )

    with pytest.raises(DokployError) as caught:
        client.project_create(name="ai-stack-alice")

    assert str(caught.value) == f"project.create failed: 400 BAD_REQUEST {message}"


def test_the_auth_wrappers_401_is_parsed(api, client):
    api.get(f"{API}/project.all").respond(401, json={"message": "Unauthorized"})

    with pytest.raises(DokployError) as caught:
        client.project_all()

    assert caught.value.code == "UNAUTHORIZED"
    assert caught.value.message == "Unauthorized"
    assert caught.value.api_response == {"message": "Unauthorized"}
    assert str(caught.value) == "project.all failed: 401 UNAUTHORIZED Unauthorized"


def test_an_html_error_page_is_summarised(api, client, waits):
    api.get(f"{API}/project.all").respond(
        502, text="<html><body>Bad Gateway</body></html>", headers={"content-type": "text/html"}
    )

    with pytest.raises(DokployError) as caught:
        client.project_all()

    assert caught.value.code == "BAD_GATEWAY"
    assert caught.value.message == "Bad Gateway"


def test_errors_survive_pickling(api, client):
    api.post(f"{API}/project.remove").respond(
        404, json=trpc_error(404, "NOT_FOUND", "Project not found", "project.remove")
    )
    with pytest.raises(DokployError) as caught:
        client.project_remove(PROJECT_ID)

    copy = pickle.loads(pickle.dumps(caught.value))  # noqa: S301 (our own bytes)

    assert isinstance(copy, DokployError)
    assert (
        str(copy) == str(caught.value) == "project.remove failed: 404 NOT_FOUND Project not found"
    )
    assert (copy.status, copy.code, copy.endpoint) == (404, "NOT_FOUND", "project.remove")
    assert copy.api_response == caught.value.api_response


def test_missing_key_is_a_configuration_error_and_sends_nothing(api):
    route = api.get(f"{API}/project.all")

    with make_client(api_key=None) as client, pytest.raises(DokployError) as caught:
        client.project_all()

    assert caught.value.code == "CONFIG"
    assert "DOKPLOY_API_KEY" in str(caught.value)
    assert route.call_count == 0


def test_unreadable_key_file_is_a_configuration_error(api, tmp_path):
    route = api.get(f"{API}/project.all")

    with (
        make_client(api_key=None, api_key_file=str(tmp_path / "missing")) as client,
        pytest.raises(DokployError) as caught,
    ):
        client.project_all()

    assert caught.value.code == "CONFIG"
    assert route.call_count == 0


# --- The key: rotation and redaction ----------------------------------------------------------


def test_key_file_is_read_again_when_it_changes(api, tmp_path):
    key_file = tmp_path / "dokploy.key"
    key_file.write_text("first-key-aaaaaaaa\n")
    route = api.get(f"{API}/project.all").respond(json=[])

    with make_client(api_key=None, api_key_file=str(key_file)) as client:
        client.project_all()
        client.project_all()
        key_file.write_text("  second-key-bbbbbbbbbb  \n")
        stat = key_file.stat()
        os.utime(key_file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
        client.project_all()

    keys = [call.request.headers["x-api-key"] for call in route.calls]
    assert keys == ["first-key-aaaaaaaa", "first-key-aaaaaaaa", "second-key-bbbbbbbbbb"]


def _everything_about(error: DokployError) -> str:
    seen = [str(error), repr(error), repr(error.args), json.dumps(error.api_response)]
    seen += [repr(value) for value in vars(error).values()]
    for linked in (error.__cause__, error.__context__):
        if linked is not None:
            seen.append(repr(linked))
            seen += [repr(value) for value in vars(linked).values()]
    return "\n".join(seen)


@pytest.mark.django_db
def test_the_key_never_leaks_even_when_dokploy_echoes_it(api, caplog):
    echoed = f"Invalid API key {CANARY_KEY} for organization"
    api.post(f"{API}/project.create").respond(
        400, json=trpc_error(400, "BAD_REQUEST", echoed, "project.create", key=CANARY_KEY)
    )
    api.get(f"{API}/project.all").mock(side_effect=httpx.ConnectError(f"refused {CANARY_KEY}"))
    caplog.set_level(logging.DEBUG)
    waits: list[float] = []

    with make_client(waits=waits, on_call=record_call) as client:
        with pytest.raises(DokployError) as rejected:
            client.project_create(name="ai-stack-alice")
        with pytest.raises(DokployError) as unreachable:
            client.project_all()

    for error in (rejected.value, unreachable.value):
        assert CANARY_KEY not in _everything_about(error)
    assert "Invalid API key [redacted]" in str(rejected.value)
    assert rejected.value.api_response["key"] == "[redacted]"
    assert caplog.records, "the calls were logged"
    for record in caplog.records:
        assert CANARY_KEY not in record.getMessage()
        assert CANARY_KEY not in repr(vars(record))
    rows = list(DokployCall.objects.values())
    assert len(rows) == 7
    assert CANARY_KEY not in repr(rows)


def test_calls_are_logged_at_debug_with_fields(api, client, caplog):
    api.get(f"{API}/project.all").respond(json=[])
    caplog.set_level(logging.DEBUG, logger="stacks.dokploy")

    client.project_all()

    [record] = [r for r in caplog.records if r.name == "stacks.dokploy"]
    assert record.levelno == logging.DEBUG
    assert record.endpoint == "project.all"
    assert record.status == 200
    assert record.__dict__["try"] == 1
    assert isinstance(record.duration_ms, int)


def test_registry_password_is_masked_once_sent(api, client):
    api.post(f"{API}/application.saveDockerProvider").respond(
        400, json=trpc_error(400, "BAD_REQUEST", "login failed for hunter2-registry", "x")
    )

    with pytest.raises(DokployError) as caught:
        client.application_save_docker_provider(
            application_id=APPLICATION_ID, docker_image="img", password="hunter2-registry"
        )

    assert "hunter2-registry" not in str(caught.value)


# --- Call records -----------------------------------------------------------------------------


@pytest.fixture
def attempt(alice) -> DeploymentAttempt:
    stack = Stack.objects.create(owner=alice, username="alice", host="alice.ai.example.com")
    return DeploymentAttempt.objects.create(stack=stack, kind="create")


@pytest.mark.django_db
def test_calls_of_a_run_are_stored_for_its_attempt_and_phase(api, attempt, settings):
    settings.DOKPLOY_URL = "https://dokploy.test"
    settings.DOKPLOY_API_KEY = CANARY_KEY
    settings.DOKPLOY_API_KEY_FILE = ""
    settings.DOKPLOY_RETRY_BASE = 0.0
    api.get(f"{API}/project.all").mock(side_effect=[outage(), answer(200, []), answer(200, [])])

    with DokployClient.from_settings() as client:
        run = Run(attempt, owner="worker-1", client=client)
        run.phase = "project"
        client.project_all()
    with DokployClient.from_settings() as client:
        client.project_all()  # outside any attempt

    rows = list(DokployCall.objects.order_by("id"))
    assert [(r.endpoint, r.method, r.status_code, r.try_number) for r in rows] == [
        ("project.all", "GET", 503, 1),
        ("project.all", "GET", 200, 2),
        ("project.all", "GET", 200, 1),
    ]
    assert [(r.attempt_id, r.phase) for r in rows] == [
        (attempt.pk, "project"),
        (attempt.pk, "project"),
        (None, ""),
    ]
    assert rows[0].error_code == "INTERNAL_SERVER_ERROR"
    assert all(r.duration_ms >= 0 for r in rows)


@pytest.mark.django_db
def test_record_call_to_db_writes_one_row(attempt):
    record_call_to_db(
        CallRecord("domain.create", "POST", None, 12, 2, "TIMEOUT"),
        attempt_id=attempt.pk,
        phase="domain",
    )

    row = DokployCall.objects.get()
    assert (row.endpoint, row.method, row.status_code, row.duration_ms) == (
        "domain.create",
        "POST",
        None,
        12,
    )
    assert (row.try_number, row.error_code, row.attempt_id, row.phase) == (
        2,
        "TIMEOUT",
        attempt.pk,
        "domain",
    )


def test_a_failing_recorder_does_not_fail_the_call(api, caplog):
    def broken(record: CallRecord) -> None:
        raise RuntimeError("database is down")

    api.get(f"{API}/project.all").respond(json=[])

    with make_client(on_call=broken) as client:
        assert client.project_all() == []

    assert "could not record a Dokploy call" in caplog.text


@pytest.mark.django_db
def test_from_settings_uses_the_settings_and_a_shared_breaker(settings):
    settings.DOKPLOY_URL = "https://dokploy.example.com"
    settings.DOKPLOY_TIMEOUT = 7.5
    settings.DOKPLOY_RETRY_BASE = 0.25
    settings.DOKPLOY_RETRY_AFTER_MAX = 12.0

    with DokployClient.from_settings() as client:
        assert client.base_url == "https://dokploy.example.com"
        assert client.timeout == 7.5
        assert client.retry.base == 0.25
        assert client.retry.retry_after_max == 12.0
        assert isinstance(client.breaker, CircuitBreaker)
        assert client.on_call is record_call
    with DokployClient.from_settings(breaker=None) as client:
        assert client.breaker is None


# --- Against the simulator --------------------------------------------------------------------


def test_a_whole_stack_against_the_simulator(simulator):
    with DokployClient(
        base_url=simulator.url, api_key="simulator-key", retry_base=0.0, jitter=False
    ) as client:
        created = client.project_create(name="ai-stack-alice", description="AI Stack for alice")
        app = client.application_create(
            name="opencode-alice",
            environment_id=created.environment.environment_id,
            app_name="opencode-alice",
            source_type="docker",
        )
        assert client.application_save_docker_provider(
            application_id=app.application_id, docker_image="ghcr.io/ai-stack/opencode:1"
        )
        domain = client.domain_create(
            host="alice.ai.example.com", application_id=app.application_id, port=8080
        )
        client.application_deploy(app.application_id)
        assert simulator.wait_idle()
        deployments = client.deployment_all(app.application_id)
        one = client.application_one(app.application_id)

    assert (app.app_name or "").startswith("opencode-alice-")
    assert [d.domain_id for d in one.domains] == [domain.domain_id]
    assert one.docker_image == "ghcr.io/ai-stack/opencode:1"
    assert deployments[0].status == "done"


def test_an_ambiguous_create_against_the_simulator_makes_one_project(simulator):
    simulator.fail("project.create", status=500, after_effect=True)

    with DokployClient(
        base_url=simulator.url, api_key="simulator-key", retry_base=0.0, jitter=False
    ) as client:
        created = client.project_create(name="ai-stack-alice")
        projects = client.project_all()

    assert [p.project_id for p in projects] == [created.project.project_id]
    assert simulator.call_count("project.create") == 1


def test_a_workspace_volume_and_limits_through_the_client_against_the_simulator(simulator):
    with DokployClient(
        base_url=simulator.url, api_key="simulator-key", retry_base=0.0, jitter=False
    ) as client:
        created = client.project_create(name="ai-stack-alice")
        app = client.application_create(
            name="opencode-alice",
            environment_id=created.environment.environment_id,
            app_name="opencode-alice",
            source_type="docker",
        )
        client.application_save_docker_provider(
            application_id=app.application_id, docker_image="ghcr.io/ai-stack/opencode:1"
        )
        mount = client.mounts_create_volume(
            application_id=app.application_id, volume_name=VOLUME_NAME, mount_path="/workspace"
        )
        client.application_set_limits(
            app.application_id, memory_bytes=2 * GIB, cpu_nanos=1_500_000_000
        )
        client.application_deploy(app.application_id)
        assert simulator.wait_idle()
        one = client.application_one(app.application_id)
        listed = client.mounts_list_by_service_id(app.application_id)
        assert app.app_name is not None
        simulator.write_file(app.app_name, "/workspace/notes.txt", "kept")
        spec = simulator.state()["services"][app.app_name]
        client.application_delete(app.application_id)
        kept = simulator.volume(VOLUME_NAME)
        client.docker_volume_remove(VOLUME_NAME)  # in use once, then the retry removes it
        with pytest.raises(DokployError) as gone:
            client.docker_volume_remove(VOLUME_NAME)

    assert one.deployments[0].status == "done"
    assert one.mounts == [mount]
    assert listed == [mount]
    assert (one.memory_limit, one.cpu_limit) == ("2147483648", "1500000000")
    assert spec["mounts"] == [{"Type": "volume", "Source": VOLUME_NAME, "Target": "/workspace"}]
    assert spec["resources"] == {
        "Limits": {"MemoryBytes": 2147483648, "NanoCPUs": 1500000000},
        "Reservations": {},
    }
    assert kept is not None
    assert kept["files"] == {"notes.txt": "kept"}
    assert simulator.volume(VOLUME_NAME) is None
    assert volume_missing(gone.value)
    # "in use" once, then removed; "no such volume" is final at once (not retried).
    assert simulator.call_count("dockerVolume.removeVolume") == 2 + 1
