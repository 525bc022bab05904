"""The Dokploy simulator against the behaviour documented in shared/dokploy/API-NOTES.md."""

from __future__ import annotations

import re
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from stacks.dokploy.simulator import DokploySimulator

IMAGE = "ghcr.io/ai-stack/opencode-ttyd:latest"
NANOID = re.compile(r"^[A-Za-z0-9_-]{21}$")
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")
# One TLS context for every client: building httpx's default one per client is slow.
TLS = ssl.create_default_context()


@pytest.fixture
def api(simulator: DokploySimulator) -> Iterator[httpx.Client]:
    headers = {"x-api-key": simulator.api_key}
    with httpx.Client(base_url=simulator.url, headers=headers, timeout=5, verify=TLS) as client:
        yield client


def wait_for(predicate: Callable[[], Any], timeout: float = 3.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.005)
    raise AssertionError("condition not met in time")


def ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def create_project(api: httpx.Client, name: str = "portal-alice") -> dict[str, Any]:
    return ok(api.post("/api/project.create", json={"name": name}))


def create_app(api: httpx.Client, environment_id: str, **extra: Any) -> dict[str, Any]:
    body = {"name": "opencode", "environmentId": environment_id, **extra}
    return ok(api.post("/api/application.create", json=body))


def save_image(api: httpx.Client, application_id: str, image: str | None = IMAGE) -> None:
    body = {
        "applicationId": application_id,
        "dockerImage": image,
        "username": None,
        "password": None,
        "registryUrl": None,
    }
    response = api.post("/api/application.saveDockerProvider", json=body)
    assert response.json() is True


def create_domain(api: httpx.Client, application_id: str, host: str) -> dict[str, Any]:
    body = {"host": host, "applicationId": application_id, "port": 8080}
    return ok(api.post("/api/domain.create", json=body))


def stack(api: httpx.Client, host: str | None = None) -> dict[str, Any]:
    """A project with one docker application (and a domain if ``host`` is given)."""
    created = create_project(api)
    app = create_app(api, created["environment"]["environmentId"], appName="opencode-alice")
    save_image(api, app["applicationId"])
    domain = create_domain(api, app["applicationId"], host) if host else None
    return {"project": created["project"], "app": app, "domain": domain}


def deployments(api: httpx.Client, application_id: str) -> list[dict[str, Any]]:
    response = api.get("/api/deployment.all", params={"applicationId": application_id})
    assert response.status_code == 200
    result: list[dict[str, Any]] = response.json()
    return result


def deploy_and_wait(
    api: httpx.Client, application_id: str, procedure: str = "application.deploy"
) -> dict[str, Any]:
    """Deploy, then wait for the new deployment row to leave ``running``; return it."""
    previous = [row["deploymentId"] for row in deployments(api, application_id)[:1]]
    response = api.post(f"/api/{procedure}", json={"applicationId": application_id})
    assert response.status_code == 200

    def finished() -> dict[str, Any] | None:
        rows = deployments(api, application_id)
        if rows and [rows[0]["deploymentId"]] != previous and rows[0]["status"] != "running":
            return rows[0]
        return None

    result: dict[str, Any] = wait_for(finished)
    return result


def health(simulator: DokploySimulator, host: str) -> httpx.Response:
    return get(simulator.stack_url_template.format(host=host) + "/health")


def get(url: str, **kwargs: Any) -> httpx.Response:
    return httpx.get(url, timeout=kwargs.pop("timeout", 5), verify=TLS, **kwargs)


def assert_trpc_error(response: httpx.Response, status: int, code: str, path: str | None) -> None:
    assert response.status_code == status
    body = response.json()
    assert body["code"] == code
    assert body["data"]["code"] == code
    assert body["data"]["httpStatus"] == status
    assert body["data"]["path"] == path
    assert "zodError" in body["data"]


# --- transport -------------------------------------------------------------------------------


def test_project_create_returns_project_and_production_environment(api: httpx.Client) -> None:
    body = create_project(api, "portal-alice")

    project, environment = body["project"], body["environment"]
    assert set(body) == {"project", "environment"}
    assert set(project) == {
        "projectId",
        "name",
        "description",
        "createdAt",
        "organizationId",
        "env",
    }
    assert NANOID.match(project["projectId"])
    assert ISO.match(project["createdAt"])
    assert project["name"] == "portal-alice"
    assert environment["name"] == "production"
    assert environment["isDefault"] is True
    assert environment["description"] == "Production environment"
    assert environment["env"] == ""
    assert environment["projectId"] == project["projectId"]
    assert NANOID.match(environment["environmentId"])


def test_project_names_are_not_unique_and_all_is_newest_first(api: httpx.Client) -> None:
    first = create_project(api, "same")["project"]["projectId"]
    second = create_project(api, "same")["project"]["projectId"]

    projects = api.get("/api/project.all").json()

    assert [p["projectId"] for p in projects] == [second, first]
    environment = projects[0]["environments"][0]
    assert environment["name"] == "production"
    assert environment["applications"] == []
    assert environment["compose"] == []
    assert environment["libsql"] == []
    assert projects[0]["projectTags"] == []


def test_unknown_body_keys_are_dropped(api: httpx.Client) -> None:
    response = api.post("/api/project.create", json={"name": "p", "colour": "blue"})

    assert response.status_code == 200
    assert "colour" not in response.json()["project"]


def test_wrong_method_is_404_not_found(api: httpx.Client) -> None:
    assert_trpc_error(api.get("/api/project.create"), 404, "NOT_FOUND", None)
    assert_trpc_error(api.post("/api/project.all", json={}), 404, "NOT_FOUND", None)


def test_post_without_json_content_type_is_415(api: httpx.Client) -> None:
    response = api.post(
        "/api/project.create", content=b'{"name": "p"}', headers={"Content-Type": "text/plain"}
    )

    assert_trpc_error(response, 415, "UNSUPPORTED_MEDIA_TYPE", "project.create")
    assert api.get("/api/project.all").json() == []


def test_malformed_json_is_a_parse_error(api: httpx.Client) -> None:
    response = api.post(
        "/api/project.create", content=b"{", headers={"Content-Type": "application/json"}
    )

    assert_trpc_error(response, 400, "PARSE_ERROR", "project.create")


@pytest.mark.parametrize("headers", [{}, {"x-api-key": "wrong"}, {"Authorization": "Bearer x"}])
@pytest.mark.parametrize("path", ["/api/project.all", "/api/nothing.here", "/api/"])
def test_bad_or_missing_key_is_401_before_routing(
    simulator: DokploySimulator, headers: dict[str, str], path: str
) -> None:
    response = get(simulator.url + path, headers=headers)

    assert response.status_code == 401
    assert response.json() == {"message": "Unauthorized"}


def test_unknown_path_with_a_good_key_is_404(api: httpx.Client) -> None:
    assert_trpc_error(api.get("/api/nothing.here"), 404, "NOT_FOUND", None)


def test_validation_failure_body_has_issues_and_flattened_zod_error(api: httpx.Client) -> None:
    response = api.post("/api/project.create", json={"description": 5})

    assert_trpc_error(response, 400, "BAD_REQUEST", "project.create")
    body = response.json()
    assert body["message"] == "Input validation failed"
    by_path = {tuple(issue["path"]): issue for issue in body["issues"]}
    assert by_path[("name",)]["code"] == "invalid_type"
    assert by_path[("description",)]["code"] == "invalid_type"
    assert set(body["data"]["zodError"]["fieldErrors"]) == {"name", "description"}
    assert body["data"]["zodError"]["formErrors"] == []


def test_min_length_and_query_inputs_are_validated(api: httpx.Client) -> None:
    empty = api.post("/api/project.create", json={"name": ""})
    missing = api.get("/api/project.one")

    assert empty.status_code == 400
    assert empty.json()["issues"][0]["code"] == "too_small"
    assert missing.status_code == 400
    assert missing.json()["issues"][0]["path"] == ["projectId"]


# --- projects and environments ---------------------------------------------------------------


def test_project_search_is_a_substring_match_with_paging(api: httpx.Client) -> None:
    for name in ("portal-alice", "portal-alicia", "portal-bob"):
        create_project(api, name)

    found = api.get("/api/project.search", params={"name": "ALIC", "limit": 1}).json()

    assert found["total"] == 2
    assert [item["name"] for item in found["items"]] == ["portal-alicia"]
    assert "environments" not in found["items"][0]


def test_project_one_includes_environments_and_app_names(api: httpx.Client) -> None:
    created = create_project(api)
    app = create_app(api, created["environment"]["environmentId"])

    project = api.get("/api/project.one", params={"projectId": created["project"]["projectId"]})

    [environment] = project.json()["environments"]
    [summary] = environment["applications"]
    assert summary["appName"] == app["appName"]
    assert summary["applicationStatus"] == "idle"
    assert summary["server"] is None
    missing = api.get("/api/project.one", params={"projectId": "nope"})
    assert_trpc_error(missing, 404, "NOT_FOUND", "project.one")
    assert missing.json()["message"] == "Project not found"


def test_environment_by_project_id(api: httpx.Client) -> None:
    created = create_project(api)
    app = create_app(api, created["environment"]["environmentId"])

    environments = api.get(
        "/api/environment.byProjectId", params={"projectId": created["project"]["projectId"]}
    ).json()

    [environment] = environments
    assert environment["isDefault"] is True
    assert environment["project"]["projectId"] == created["project"]["projectId"]
    assert environment["applications"][0]["appName"] == app["appName"]


def test_environment_one_has_no_app_names_and_404s(api: httpx.Client) -> None:
    created = create_project(api)
    create_app(api, created["environment"]["environmentId"])
    env_id = created["environment"]["environmentId"]

    environment = api.get("/api/environment.one", params={"environmentId": env_id}).json()

    assert "appName" not in environment["applications"][0]
    assert environment["project"]["name"] == "portal-alice"
    missing = api.get("/api/environment.one", params={"environmentId": "nope"})
    assert missing.status_code == 404
    assert missing.json()["message"] == "Environment not found"


def test_unknown_ids_give_empty_lists_not_404(api: httpx.Client) -> None:
    assert api.get("/api/environment.byProjectId", params={"projectId": "nope"}).json() == []
    assert api.get("/api/domain.byApplicationId", params={"applicationId": "nope"}).json() == []
    assert api.get("/api/deployment.all", params={"applicationId": "nope"}).json() == []


# --- applications --------------------------------------------------------------------------


def test_application_create_returns_full_row_with_suffixed_app_name(api: httpx.Client) -> None:
    env_id = create_project(api)["environment"]["environmentId"]

    app = create_app(api, env_id, appName="OpenCode-Alice")

    assert re.fullmatch(r"opencode-alice-[a-z0-9]{6}", app["appName"])
    assert NANOID.match(app["applicationId"])
    assert app["environmentId"] == env_id
    assert app["sourceType"] == "github"
    assert app["applicationStatus"] == "idle"
    assert app["buildType"] == "nixpacks"
    assert app["dockerImage"] is None
    assert app["replicas"] == 1
    assert app["serverId"] is None
    assert app["refreshToken"]
    assert "domains" not in app


def test_application_without_app_name_gets_a_generated_one(api: httpx.Client) -> None:
    env_id = create_project(api)["environment"]["environmentId"]

    app = create_app(api, env_id)

    assert re.fullmatch(r"app-[a-z]+-[a-z]+-[a-z]+-[a-z0-9]{6}", app["appName"])


def test_app_name_rules(api: httpx.Client) -> None:
    env_id = create_project(api)["environment"]["environmentId"]

    longest = create_app(api, env_id, appName="a" * 56)
    too_long = api.post(
        "/api/application.create", json={"name": "x", "environmentId": env_id, "appName": "a" * 64}
    )
    bad_chars = api.post(
        "/api/application.create", json={"name": "x", "environmentId": env_id, "appName": "a/b"}
    )

    assert len(longest["appName"]) == 63
    assert too_long.status_code == 400
    assert too_long.json()["issues"][0]["code"] == "too_big"
    assert bad_chars.status_code == 400
    assert bad_chars.json()["issues"][0]["code"] == "invalid_format"


def test_application_create_errors(
    api: httpx.Client, simulator: DokploySimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_id = create_project(api)["environment"]["environmentId"]
    no_env = api.post("/api/application.create", json={"name": "x", "environmentId": "nope"})
    bad_source = api.post(
        "/api/application.create", json={"name": "x", "environmentId": env_id, "sourceType": "svn"}
    )
    monkeypatch.setattr(simulator, "_random_suffix", lambda: "aaaaaa")
    create_app(api, env_id, appName="dup")
    duplicate = api.post(
        "/api/application.create", json={"name": "x", "environmentId": env_id, "appName": "dup"}
    )

    assert no_env.status_code == 404
    assert no_env.json()["message"] == "Environment not found"
    assert bad_source.status_code == 400
    assert bad_source.json()["issues"][0]["code"] == "invalid_value"
    assert_trpc_error(duplicate, 409, "CONFLICT", "application.create")


def test_save_docker_provider_requires_all_five_keys(api: httpx.Client) -> None:
    env_id = create_project(api)["environment"]["environmentId"]
    app = create_app(api, env_id)
    body = {"applicationId": app["applicationId"], "dockerImage": IMAGE, "username": None}

    missing = api.post("/api/application.saveDockerProvider", json=body)
    ok = api.post(
        "/api/application.saveDockerProvider",
        json={**body, "password": "s3cret", "registryUrl": None},
    )

    assert missing.status_code == 400
    assert {tuple(i["path"]) for i in missing.json()["issues"]} == {("password",), ("registryUrl",)}
    assert ok.status_code == 200
    assert ok.json() is True
    one = api.get("/api/application.one", params={"applicationId": app["applicationId"]}).json()
    assert one["sourceType"] == "docker"
    assert one["dockerImage"] == IMAGE
    assert one["password"] == "s3cret"
    assert one["applicationStatus"] == "idle"


def test_update_returns_true_ignores_app_name_and_400s_for_unknown_id(api: httpx.Client) -> None:
    env_id = create_project(api)["environment"]["environmentId"]
    app = create_app(api, env_id)

    updated = api.post(
        "/api/application.update",
        json={"applicationId": app["applicationId"], "appName": "renamed", "env": "A=1\nB=2"},
    )
    unknown = api.post("/api/application.update", json={"applicationId": "nope", "env": "A=1"})

    assert updated.status_code == 200
    assert updated.json() is True
    one = api.get("/api/application.one", params={"applicationId": app["applicationId"]}).json()
    assert one["appName"] == app["appName"]
    assert one["env"] == "A=1\nB=2"
    assert_trpc_error(unknown, 400, "BAD_REQUEST", "application.update")
    assert unknown.json()["message"] == "Error updating application"


def test_application_one_shape(api: httpx.Client) -> None:
    built = stack(api, host="alice.ai.localhost")
    app_id = built["app"]["applicationId"]

    one = api.get("/api/application.one", params={"applicationId": app_id}).json()

    assert one["environment"]["project"]["projectId"] == built["project"]["projectId"]
    assert [d["host"] for d in one["domains"]] == ["alice.ai.localhost"]
    assert one["deployments"] == []
    assert one["mounts"] == []
    assert one["ports"] == []
    assert one["previewDeployments"] == []
    assert one["server"] is None
    assert one["registry"] is None
    missing = api.get("/api/application.one", params={"applicationId": "nope"})
    assert missing.status_code == 404
    assert missing.json()["message"] == "Application not found"


# --- deployments -----------------------------------------------------------------------------


def test_deploy_returns_empty_body_and_runs_asynchronously(
    api: httpx.Client, simulator: DokploySimulator
) -> None:
    simulator.queue_delay = 0.2
    simulator.deploy_seconds = 0.5
    built = stack(api, host="alice.ai.localhost")
    app_id = built["app"]["applicationId"]

    response = api.post("/api/application.deploy", json={"applicationId": app_id})

    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["content-type"].startswith("application/json")
    assert deployments(api, app_id) == []  # only queued so far
    running = wait_for(lambda: deployments(api, app_id))
    assert running[0]["status"] == "running"
    assert running[0]["title"] == "Manual deployment"
    one = api.get("/api/application.one", params={"applicationId": app_id}).json()
    assert one["applicationStatus"] == "running"
    assert health(simulator, "alice.ai.localhost").status_code == 502
    done = wait_for(lambda: deployments(api, app_id)[0]["status"] == "done")
    assert done
    one = api.get("/api/application.one", params={"applicationId": app_id}).json()
    assert one["applicationStatus"] == "done"
    assert simulator.state()["services"][built["app"]["appName"]]["replicas"] == 1
    assert health(simulator, "alice.ai.localhost").json() == {"status": "ok"}


def test_deploy_unknown_application_is_404(api: httpx.Client) -> None:
    response = api.post("/api/application.deploy", json={"applicationId": "nope"})

    assert_trpc_error(response, 404, "NOT_FOUND", "application.deploy")


def test_deployment_all_is_newest_first_and_keeps_ten(
    api: httpx.Client, simulator: DokploySimulator
) -> None:
    simulator.deploy_seconds = 0.0
    simulator.queue_delay = 0.0
    app_id = stack(api)["app"]["applicationId"]

    for number in range(12):
        body = {"applicationId": app_id, "title": f"deploy {number}"}
        api.post("/api/application.deploy", json=body)
    assert simulator.wait_idle(timeout=5)

    rows = deployments(api, app_id)
    assert [row["title"] for row in rows] == [f"deploy {n}" for n in range(11, 1, -1)]
    assert all(row["status"] == "done" for row in rows)
    first = rows[0]
    expected = {"deploymentId", "title", "description", "status", "logPath", "pid"}
    expected |= {"applicationId", "createdAt", "startedAt", "finishedAt", "errorMessage"}
    assert expected <= set(first)


def test_redeploy_uses_its_default_title_and_skips_the_pull(api: httpx.Client) -> None:
    app_id = stack(api)["app"]["applicationId"]
    deploy_and_wait(api, app_id)

    latest = deploy_and_wait(api, app_id, "application.redeploy")

    assert latest["status"] == "done"
    assert latest["title"] == "Rebuild deployment"
    params = {"deploymentId": latest["deploymentId"]}
    log = api.get("/api/deployment.readLogs", params=params).json()
    assert "Pulling" not in log
    assert "Updating service" in log


def test_deploy_fault_ends_in_error_with_the_message_in_the_log(
    api: httpx.Client, simulator: DokploySimulator
) -> None:
    built = stack(api, host="alice.ai.localhost")
    app = built["app"]
    simulator.fail_deploy(app["appName"], message="manifest unknown")

    failed = deploy_and_wait(api, app["applicationId"])

    assert failed["status"] == "error"
    assert failed["errorMessage"] == "manifest unknown"
    log = api.get("/api/deployment.readLogs", params={"deploymentId": failed["deploymentId"]})
    assert log.json().endswith("manifest unknown")
    one = api.get("/api/application.one", params={"applicationId": app["applicationId"]}).json()
    assert one["applicationStatus"] == "error"
    assert app["appName"] not in simulator.state()["services"]
    assert health(simulator, "alice.ai.localhost").status_code == 502
    assert deploy_and_wait(api, app["applicationId"])["status"] == "done"  # the fault was used up


def test_deploy_fault_by_display_name(api: httpx.Client, simulator: DokploySimulator) -> None:
    app_id = stack(api)["app"]["applicationId"]
    simulator.fail_deploy("opencode", message="boom")

    assert deploy_and_wait(api, app_id)["errorMessage"] == "boom"


def test_deploy_without_image_errors(api: httpx.Client) -> None:
    env_id = create_project(api)["environment"]["environmentId"]
    app = create_app(api, env_id, sourceType="docker")

    failed = deploy_and_wait(api, app["applicationId"])

    assert failed["status"] == "error"
    assert failed["errorMessage"]


def test_read_logs_tail_and_unknown_deployment(api: httpx.Client) -> None:
    app_id = stack(api)["app"]["applicationId"]
    deployment_id = deploy_and_wait(api, app_id)["deploymentId"]

    tail = api.get("/api/deployment.readLogs", params={"deploymentId": deployment_id, "tail": 1})
    missing = api.get("/api/deployment.readLogs", params={"deploymentId": "nope"})

    assert tail.json() == "Docker Deployed: ✅"
    assert missing.status_code == 404


def test_stop_and_start_return_the_application_before_the_change(
    api: httpx.Client, simulator: DokploySimulator
) -> None:
    built = stack(api, host="alice.ai.localhost")
    app_id = built["app"]["applicationId"]
    never_deployed = api.post("/api/application.start", json={"applicationId": app_id})
    deploy_and_wait(api, app_id)

    stopped = api.post("/api/application.stop", json={"applicationId": app_id}).json()
    assert stopped["applicationStatus"] == "done"
    assert health(simulator, "alice.ai.localhost").status_code == 502
    started = api.post("/api/application.start", json={"applicationId": app_id}).json()

    assert never_deployed.status_code == 500
    assert started["applicationStatus"] == "idle"
    assert started["domains"][0]["host"] == "alice.ai.localhost"
    assert health(simulator, "alice.ai.localhost").status_code == 200


def test_reload_requires_app_name_and_applies_the_service(
    api: httpx.Client, simulator: DokploySimulator
) -> None:
    app = stack(api)["app"]
    missing_name = api.post("/api/application.reload", json={"applicationId": app["applicationId"]})

    reloaded = api.post(
        "/api/application.reload",
        json={"applicationId": app["applicationId"], "appName": app["appName"]},
    )

    assert missing_name.status_code == 400
    assert reloaded.json() is True
    assert app["appName"] in simulator.state()["services"]


# --- deletion --------------------------------------------------------------------------------


def test_project_remove_deletes_rows_but_leaves_the_service_orphaned(
    api: httpx.Client, simulator: DokploySimulator
) -> None:
    built = stack(api, host="alice.ai.localhost")
    app, project_id = built["app"], built["project"]["projectId"]
    deploy_and_wait(api, app["applicationId"])

    removed = api.post("/api/project.remove", json={"projectId": project_id})

    assert removed.status_code == 200
    assert removed.json()["projectId"] == project_id
    assert api.get("/api/project.one", params={"projectId": project_id}).status_code == 404
    one = api.get("/api/application.one", params={"applicationId": app["applicationId"]})
    assert one.status_code == 404
    state = simulator.state()
    assert state["domains"] == {}
    assert state["deployments"] == {}
    assert state["environments"] == {}
    assert app["appName"] in state["services"]
    assert health(simulator, "alice.ai.localhost").status_code == 200
    again = api.post("/api/project.remove", json={"projectId": project_id})
    assert again.status_code == 404


def test_application_delete_removes_service_domains_and_deployments(
    api: httpx.Client, simulator: DokploySimulator
) -> None:
    built = stack(api, host="alice.ai.localhost")
    app = built["app"]
    deploy_and_wait(api, app["applicationId"])

    deleted = api.post("/api/application.delete", json={"applicationId": app["applicationId"]})

    assert deleted.status_code == 200
    assert deleted.json()["applicationId"] == app["applicationId"]
    assert deleted.json()["domains"][0]["host"] == "alice.ai.localhost"
    state = simulator.state()
    assert app["appName"] not in state["services"]
    assert state["domains"] == {}
    assert state["deployments"] == {}
    domain_id = built["domain"]["domainId"]
    assert api.get("/api/domain.one", params={"domainId": domain_id}).status_code == 404
    assert health(simulator, "alice.ai.localhost").status_code == 404
    again = api.post("/api/application.delete", json={"applicationId": app["applicationId"]})
    assert again.status_code == 404


# --- domains ---------------------------------------------------------------------------------


def test_domain_defaults_and_duplicate_hosts_are_allowed(api: httpx.Client) -> None:
    env_id = create_project(api)["environment"]["environmentId"]
    app = create_app(api, env_id)

    first = api.post(
        "/api/domain.create", json={"host": "a.ai.localhost", "applicationId": app["applicationId"]}
    ).json()
    second = api.post(
        "/api/domain.create", json={"host": "a.ai.localhost", "applicationId": app["applicationId"]}
    ).json()

    assert first["https"] is False
    assert first["certificateType"] == "none"
    assert first["port"] == 3000
    assert first["path"] == "/"
    assert first["internalPath"] == "/"
    assert first["stripPath"] is False
    assert first["domainType"] == "application"
    assert isinstance(first["uniqueConfigKey"], int)
    assert second["domainId"] != first["domainId"]
    listed = api.get("/api/domain.byApplicationId", params={"applicationId": app["applicationId"]})
    assert [d["domainId"] for d in listed.json()] == [first["domainId"], second["domainId"]]
    assert listed.json()[0]["application"] == {
        "applicationId": app["applicationId"],
        "appName": app["appName"],
        "name": app["name"],
    }


@pytest.mark.parametrize(
    "extra",
    [
        {"host": "under_score.example.com"},
        {"host": " padded.example.com"},
        {"port": 0},
        {"port": 65536},
        {"certificateType": "acme"},
        {"domainType": "service"},
        {"https": "yes"},
    ],
)
def test_domain_create_validation(api: httpx.Client, extra: dict[str, Any]) -> None:
    response = api.post("/api/domain.create", json={"host": "ok.example.com", **extra})

    assert response.status_code == 400
    assert response.json()["message"] == "Input validation failed"
    assert response.json()["issues"][0]["path"] == [next(iter(extra))]


def test_domain_create_unknown_application_is_a_wrapped_400(api: httpx.Client) -> None:
    response = api.post("/api/domain.create", json={"host": "x.example.com", "applicationId": "no"})

    assert_trpc_error(response, 400, "BAD_REQUEST", "domain.create")
    assert "foreign key" in response.json()["message"]


def test_domain_update_one_and_delete(api: httpx.Client, simulator: DokploySimulator) -> None:
    built = stack(api, host="old.ai.localhost")
    deploy_and_wait(api, built["app"]["applicationId"])
    domain_id = built["domain"]["domainId"]

    updated = api.post(
        "/api/domain.update",
        json={"domainId": domain_id, "host": "new.ai.localhost", "https": True},
    ).json()

    assert updated["host"] == "new.ai.localhost"
    assert updated["https"] is True
    assert api.get("/api/domain.one", params={"domainId": domain_id}).json()["host"] == (
        "new.ai.localhost"
    )
    assert health(simulator, "new.ai.localhost").status_code == 200
    assert health(simulator, "old.ai.localhost").status_code == 404
    deleted = api.post("/api/domain.delete", json={"domainId": domain_id})
    assert deleted.json()["domainId"] == domain_id
    missing = api.post("/api/domain.delete", json={"domainId": domain_id})
    assert missing.status_code == 404
    assert missing.json()["message"] == "Domain not found"
    assert health(simulator, "new.ai.localhost").status_code == 404


# --- mounts ----------------------------------------------------------------------------------

WORKSPACE = "/workspace"
REFUSED = "(HTTP code 400) bad parameter - rpc error: code = InvalidArgument desc = "
DAEMON = "task failed to start: Error response from daemon: "


def create_mount(
    api: httpx.Client,
    application_id: str,
    volume_name: str | None = "ws-alice",
    path: str = WORKSPACE,
    **extra: Any,
) -> dict[str, Any]:
    body = {
        "serviceId": application_id,
        "serviceType": "application",
        "type": "volume",
        "volumeName": volume_name,
        "mountPath": path,
        **extra,
    }
    return ok(api.post("/api/mounts.create", json=body))


def app_one(api: httpx.Client, application_id: str) -> dict[str, Any]:
    return ok(api.get("/api/application.one", params={"applicationId": application_id}))


def service(simulator: DokploySimulator, app: dict[str, Any]) -> dict[str, Any]:
    services: dict[str, dict[str, Any]] = simulator.state()["services"]
    return services[app["appName"]]


def test_mount_create_answers_the_row_and_every_read_shows_it(api: httpx.Client) -> None:
    app = stack(api)["app"]
    app_id = app["applicationId"]

    mount = create_mount(api, app_id)

    assert NANOID.match(mount["mountId"])
    assert mount == {
        "mountId": mount["mountId"],
        "type": "volume",
        "hostPath": None,
        "volumeName": "ws-alice",
        "filePath": None,
        "content": None,
        "serviceType": "application",
        "mountPath": WORKSPACE,
        "applicationId": app_id,
        "composeId": None,
        "libsqlId": None,
        "mariadbId": None,
        "mongoId": None,
        "mysqlId": None,
        "postgresId": None,
        "redisId": None,
    }
    assert app_one(api, app_id)["mounts"] == [mount]
    listed = api.get(
        "/api/mounts.listByServiceId", params={"serviceId": app_id, "serviceType": "application"}
    )
    assert listed.json() == [mount]
    one = ok(api.get("/api/mounts.one", params={"mountId": mount["mountId"]}))
    assert one["volumeName"] == "ws-alice"
    assert one["application"]["appName"] == app["appName"]
    assert one["application"]["serverId"] is None
    assert one["postgres"] is None


def test_a_mount_without_service_type_is_stored_unattached_and_never_mounted(
    api: httpx.Client, simulator: DokploySimulator
) -> None:
    app = stack(api)["app"]
    body = {"serviceId": app["applicationId"], "type": "volume", "volumeName": "ws-alice"}

    mount = ok(api.post("/api/mounts.create", json={**body, "mountPath": WORKSPACE}))
    deploy_and_wait(api, app["applicationId"])

    assert mount["applicationId"] is None
    assert mount["serviceType"] == "application"
    assert app_one(api, app["applicationId"])["mounts"] == []
    assert service(simulator, app)["mounts"] == []
    assert simulator.volume("ws-alice") is None
    assert simulator.state()["mounts"][mount["mountId"]]["applicationId"] is None


def test_mount_create_is_not_idempotent_and_a_second_mount_on_a_path_breaks_every_deploy(
    api: httpx.Client, simulator: DokploySimulator
) -> None:
    app = stack(api)["app"]
    app_id = app["applicationId"]
    first = create_mount(api, app_id)
    deploy_and_wait(api, app_id)
    version = service(simulator, app)["version"]

    second = create_mount(api, app_id)
    failed = deploy_and_wait(api, app_id, "application.redeploy")
    failed_again = deploy_and_wait(api, app_id)

    assert second["mountId"] != first["mountId"]
    assert len(app_one(api, app_id)["mounts"]) == 2
    expected = REFUSED + "ContainerSpec: duplicate mount point: /workspace"
    assert failed["status"] == "error"
    assert failed["errorMessage"] == expected
    assert failed_again["errorMessage"] == expected
    log = api.get("/api/deployment.readLogs", params={"deploymentId": failed["deploymentId"]})
    assert log.json().endswith(f"Error: {expected}")
    assert app_one(api, app_id)["applicationStatus"] == "error"
    assert service(simulator, app)["version"] == version  # the old spec keeps running
    api.post("/api/mounts.remove", json={"mountId": second["mountId"]})
    assert deploy_and_wait(api, app_id, "application.redeploy")["status"] == "done"


@pytest.mark.parametrize(
    ("change", "path", "code"),
    [
        ({"mountPath": ""}, "mountPath", "too_small"),
        ({"mountPath": None}, "mountPath", "invalid_type"),
        ({"type": "nfs"}, "type", "invalid_value"),
        ({"serviceType": "service"}, "serviceType", "invalid_value"),
        ({"serviceType": None}, "serviceType", "invalid_value"),
        ({"serviceId": ""}, "serviceId", "too_small"),
        ({"volumeName": 5}, "volumeName", "invalid_type"),
    ],
)
def test_mount_create_validation(
    api: httpx.Client, change: dict[str, Any], path: str, code: str
) -> None:
    body = {"serviceId": "x", "type": "volume", "volumeName": "v1", "mountPath": WORKSPACE}

    response = api.post("/api/mounts.create", json={**body, **change})

    assert_trpc_error(response, 400, "BAD_REQUEST", "mounts.create")
    assert [(issue["path"], issue["code"]) for issue in response.json()["issues"]] == [
        ([path], code)
    ]


@pytest.mark.parametrize("service_type", ["application", "postgres"])
def test_mount_for_an_unknown_service_is_a_foreign_key_400(
    api: httpx.Client, service_type: str
) -> None:
    body = {"serviceId": "nope", "serviceType": service_type, "type": "volume"}

    response = api.post("/api/mounts.create", json={**body, "mountPath": WORKSPACE})

    assert_trpc_error(response, 400, "BAD_REQUEST", "mounts.create")
    column = f"{service_type}Id"
    assert response.json()["message"] == (
        'Error insert or update on table "mount" violates foreign key constraint '
        f'"mount_{column}_{service_type}_{column}_fk"'
    )


def test_mount_remove_one_and_list_errors(api: httpx.Client) -> None:
    app = stack(api)["app"]
    mount = create_mount(api, app["applicationId"])

    removed = api.post("/api/mounts.remove", json={"mountId": mount["mountId"]})
    again = api.post("/api/mounts.remove", json={"mountId": mount["mountId"]})
    one = api.get("/api/mounts.one", params={"mountId": mount["mountId"]})
    unknown_app = api.get(
        "/api/mounts.listByServiceId", params={"serviceId": "nope", "serviceType": "application"}
    )
    database = api.get(
        "/api/mounts.listByServiceId", params={"serviceId": "pg", "serviceType": "postgres"}
    )
    nonsense = api.get(
        "/api/mounts.listByServiceId", params={"serviceId": "x", "serviceType": "website"}
    )

    assert removed.json() == mount
    assert app_one(api, app["applicationId"])["mounts"] == []
    assert_trpc_error(again, 404, "NOT_FOUND", "mounts.remove")
    assert again.json()["message"] == "Mount not found"
    assert_trpc_error(one, 404, "NOT_FOUND", "mounts.one")
    assert_trpc_error(unknown_app, 404, "NOT_FOUND", "mounts.listByServiceId")
    assert unknown_app.json()["message"] == "Application not found"
    assert database.json()["message"] == "Postgres not found"
    assert_trpc_error(nonsense, 401, "UNAUTHORIZED", "mounts.listByServiceId")


def test_deleting_the_application_cascades_to_its_mount_rows(
    api: httpx.Client, simulator: DokploySimulator
) -> None:
    app = stack(api)["app"]
    mount = create_mount(api, app["applicationId"])

    api.post("/api/application.delete", json={"applicationId": app["applicationId"]})

    assert simulator.state()["mounts"] == {}
    missing = api.get("/api/mounts.one", params={"mountId": mount["mountId"]})
    assert missing.status_code == 404


# --- volumes and files -----------------------------------------------------------------------


def test_a_named_volume_is_made_by_the_first_deploy_and_keeps_files_across_redeploys(
    api: httpx.Client, simulator: DokploySimulator
) -> None:
    app = stack(api)["app"]
    create_mount(api, app["applicationId"])
    assert simulator.volume("ws-alice") is None

    deploy_and_wait(api, app["applicationId"])
    in_volume = simulator.write_file(app["appName"], "/workspace/notes.txt", "kept")
    in_layer = simulator.write_file(app["appName"], "/tmp/scratch.txt", "lost")
    deploy_and_wait(api, app["applicationId"], "application.redeploy")
    deploy_and_wait(api, app["applicationId"])

    assert in_volume == "ws-alice"
    assert in_layer is None
    assert simulator.read_file(app["appName"], "/workspace/notes.txt") == "kept"
    assert simulator.read_file(app["appName"], "/tmp/scratch.txt") is None
    volume = simulator.volume("ws-alice")
    assert volume is not None
    assert volume["files"] == {"notes.txt": "kept"}
    assert volume["anonymous"] is False
    assert service(simulator, app)["mounts"] == [
        {"Type": "volume", "Source": "ws-alice", "Target": WORKSPACE}
    ]
    assert list(simulator.state()["volumes"]) == ["ws-alice"]


def test_files_survive_stop_and_start_but_start_keeps_the_last_spec(
    api: httpx.Client, simulator: DokploySimulator
) -> None:
    app = stack(api)["app"]
    app_id = app["applicationId"]
    create_mount(api, app_id)
    deploy_and_wait(api, app_id)
    simulator.write_file(app["appName"], "/workspace/notes.txt", "kept")

    api.post("/api/application.stop", json={"applicationId": app_id})
    with pytest.raises(ValueError, match="has no running container"):
        simulator.read_file(app["appName"], "/workspace/notes.txt")
    create_mount(api, app_id, volume_name="cache-alice", path="/cache")
    api.post("/api/application.start", json={"applicationId": app_id})

    assert simulator.read_file(app["appName"], "/workspace/notes.txt") == "kept"
    assert [m["Target"] for m in service(simulator, app)["mounts"]] == [WORKSPACE]
    assert simulator.volume("cache-alice") is None
    deploy_and_wait(api, app_id, "application.redeploy")
    assert [m["Target"] for m in service(simulator, app)["mounts"]] == [WORKSPACE, "/cache"]
    assert simulator.volume("cache-alice") is not None


def test_reload_restarts_a_stopped_application_with_its_new_mounts(
    api: httpx.Client, simulator: DokploySimulator
) -> None:
    app = stack(api)["app"]
    app_id = app["applicationId"]
    create_mount(api, app_id)
    deploy_and_wait(api, app_id)
    simulator.write_file(app["appName"], "/workspace/notes.txt", "kept")
    api.post("/api/application.stop", json={"applicationId": app_id})
    create_mount(api, app_id, volume_name="cache-alice", path="/cache")

    reload = api.post("/api/application.reload", json={"applicationId": app_id, "appName": "x"})

    assert reload.json() is True
    assert service(simulator, app)["replicas"] == 1
    assert [m["Target"] for m in service(simulator, app)["mounts"]] == [WORKSPACE, "/cache"]
    assert simulator.read_file(app["appName"], "/workspace/notes.txt") == "kept"
    assert app_one(api, app_id)["applicationStatus"] == "done"


def test_a_volume_outlives_its_mount_application_and_project(
    api: httpx.Client, simulator: DokploySimulator
) -> None:
    built = stack(api)
    app = built["app"]
    mount = create_mount(api, app["applicationId"])
    deploy_and_wait(api, app["applicationId"])
    simulator.write_file(app["appName"], "/workspace/notes.txt", "kept")

    api.post("/api/mounts.remove", json={"mountId": mount["mountId"]})
    deploy_and_wait(api, app["applicationId"], "application.redeploy")
    unmounted = simulator.read_file(app["appName"], "/workspace/notes.txt")
    api.post("/api/application.delete", json={"applicationId": app["applicationId"]})
    api.post("/api/project.remove", json={"projectId": built["project"]["projectId"]})
    again = stack(api)["app"]
    create_mount(api, again["applicationId"])
    deploy_and_wait(api, again["applicationId"])

    assert unmounted is None
    assert simulator.read_file(again["appName"], "/workspace/notes.txt") == "kept"


def test_project_remove_alone_leaves_the_service_using_its_volume(
    api: httpx.Client, simulator: DokploySimulator
) -> None:
    built = stack(api)
    app = built["app"]
    create_mount(api, app["applicationId"])
    deploy_and_wait(api, app["applicationId"])

    api.post("/api/project.remove", json={"projectId": built["project"]["projectId"]})
    removal = api.post("/api/dockerVolume.removeVolume", json={"volumeName": "ws-alice"})

    assert simulator.state()["mounts"] == {}
    assert removal.status_code == 500
    assert "volume is in use" in removal.json()["message"]


@pytest.mark.parametrize("volume_name", ["", None], ids=["empty", "null"])
def test_a_mount_without_a_volume_name_gets_an_empty_anonymous_volume_every_deploy(
    api: httpx.Client, simulator: DokploySimulator, volume_name: str | None
) -> None:
    app = stack(api)["app"]
    create_mount(api, app["applicationId"], volume_name=volume_name)
    deploy_and_wait(api, app["applicationId"])
    first = simulator.write_file(app["appName"], "/workspace/notes.txt", "lost")

    deploy_and_wait(api, app["applicationId"], "application.redeploy")

    assert first is not None
    assert re.fullmatch(r"[0-9a-f]{64}", first)
    assert service(simulator, app)["mounts"] == [
        {"Type": "volume", "Source": "", "Target": WORKSPACE}
    ]
    assert simulator.read_file(app["appName"], "/workspace/notes.txt") is None
    assert simulator.volume(first) is None
    [now] = simulator.state()["volumes"].values()
    assert now["anonymous"] is True
    assert now["files"] == {}


def test_earlier_files_in_an_existing_volume_are_seen_by_a_new_service(
    api: httpx.Client, simulator: DokploySimulator
) -> None:
    simulator.add_volume("ws-alice", {"projects/todo.md": "from before"})
    app = stack(api)["app"]
    create_mount(api, app["applicationId"])

    deploy_and_wait(api, app["applicationId"])

    assert simulator.read_file(app["appName"], "/workspace/projects/todo.md") == "from before"
    with pytest.raises(ValueError, match="not a valid Docker volume name"):
        simulator.add_volume("-x")


def test_files_are_only_reachable_inside_a_running_container(
    api: httpx.Client, simulator: DokploySimulator
) -> None:
    app = stack(api)["app"]
    create_mount(api, app["applicationId"])

    with pytest.raises(ValueError, match="has no running container"):
        simulator.write_file(app["appName"], "/workspace/notes.txt", "x")
    deploy_and_wait(api, app["applicationId"])
    with pytest.raises(ValueError, match="not an absolute path"):
        simulator.write_file(app["appName"], "workspace/notes.txt", "x")
    with pytest.raises(ValueError, match="is the mount point of volume ws-alice"):
        simulator.write_file(app["appName"], WORKSPACE, "x")
    with pytest.raises(ValueError, match="has no running container"):
        simulator.read_file("nobody", "/workspace/notes.txt")


def in_use_message(volume_name: str, container_id: str) -> str:
    return (
        f"Command execution failed: Command failed: docker volume rm {volume_name}\n"
        f"Error response from daemon: remove {volume_name}: volume is in use - [{container_id}]\n"
    )


def remove_volume(api: httpx.Client, volume_name: str = "ws-alice") -> httpx.Response:
    return api.post("/api/dockerVolume.removeVolume", json={"volumeName": volume_name})


def test_remove_volume_is_refused_while_a_service_uses_it_even_stopped(
    api: httpx.Client, simulator: DokploySimulator
) -> None:
    app = stack(api)["app"]
    create_mount(api, app["applicationId"])
    deploy_and_wait(api, app["applicationId"])
    container_id = service(simulator, app)["container"]["id"]

    running = remove_volume(api)
    api.post("/api/application.stop", json={"applicationId": app["applicationId"]})
    stopped = remove_volume(api)

    assert_trpc_error(running, 500, "INTERNAL_SERVER_ERROR", "dockerVolume.removeVolume")
    assert running.json()["message"] == in_use_message("ws-alice", container_id)
    assert stopped.json()["message"] == in_use_message("ws-alice", container_id)
    assert simulator.volume("ws-alice") is not None


def test_after_application_delete_the_volume_is_in_use_for_a_moment_then_removed(
    api: httpx.Client, simulator: DokploySimulator
) -> None:
    simulator.volume_release(calls=2)
    app = stack(api)["app"]
    create_mount(api, app["applicationId"])
    deploy_and_wait(api, app["applicationId"])
    container_id = service(simulator, app)["container"]["id"]
    api.post("/api/application.delete", json={"applicationId": app["applicationId"]})

    answers = [remove_volume(api) for _ in range(4)]

    assert [a.status_code for a in answers] == [500, 500, 200, 500]
    assert answers[0].json()["message"] == in_use_message("ws-alice", container_id)
    assert answers[2].content == b""
    assert answers[3].json()["message"] == (
        "Command execution failed: Command failed: docker volume rm ws-alice\n"
        "Error response from daemon: get ws-alice: no such volume\n"
    )
    assert simulator.volume("ws-alice") is None


def test_by_default_one_remove_volume_call_finds_a_deleted_service_still_there(
    api: httpx.Client, simulator: DokploySimulator
) -> None:
    app = stack(api)["app"]
    create_mount(api, app["applicationId"])
    deploy_and_wait(api, app["applicationId"])
    api.post("/api/application.delete", json={"applicationId": app["applicationId"]})

    assert [remove_volume(api).status_code for _ in range(2)] == [500, 200]


def test_the_release_can_last_seconds(api: httpx.Client, simulator: DokploySimulator) -> None:
    simulator.volume_release(calls=0, seconds=3600)
    app = stack(api)["app"]
    create_mount(api, app["applicationId"])
    deploy_and_wait(api, app["applicationId"])
    api.post("/api/application.delete", json={"applicationId": app["applicationId"]})

    assert [remove_volume(api).status_code for _ in range(3)] == [500, 500, 500]


def test_without_a_release_the_volume_goes_at_once(
    api: httpx.Client, simulator: DokploySimulator
) -> None:
    simulator.volume_release(calls=0)
    app = stack(api)["app"]
    create_mount(api, app["applicationId"])
    deploy_and_wait(api, app["applicationId"])
    api.post("/api/application.delete", json={"applicationId": app["applicationId"]})

    assert remove_volume(api).status_code == 200
    assert simulator.state()["volumes"] == {}


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"volumeName": ""}, 400, "Input validation failed"),
        ({"volumeName": "ws/alice"}, 400, "Input validation failed"),
        ({"volumeName": "ws-alice", "serverId": "srv"}, 404, "Server not found"),
    ],
)
def test_remove_volume_input(
    api: httpx.Client, body: dict[str, Any], status: int, message: str
) -> None:
    response = api.post("/api/dockerVolume.removeVolume", json=body)

    assert response.status_code == status
    assert response.json()["message"] == message


def test_remove_volume_pattern_message(api: httpx.Client) -> None:
    response = remove_volume(api, "ws alice")

    [issue] = response.json()["issues"]
    assert issue["message"] == "Invalid volume name."


def test_clean_unused_volumes_prunes_every_volume_no_running_service_uses(
    api: httpx.Client, simulator: DokploySimulator
) -> None:
    running = stack(api)["app"]
    create_mount(api, running["applicationId"], volume_name="ws-alice")
    deploy_and_wait(api, running["applicationId"])
    stopped = stack(api)["app"]
    create_mount(api, stopped["applicationId"], volume_name="ws-bob")
    deploy_and_wait(api, stopped["applicationId"])
    api.post("/api/application.stop", json={"applicationId": stopped["applicationId"]})
    simulator.add_volume("ws-carol", {"notes.txt": "from before"})

    response = api.post(
        "/api/settings.cleanUnusedVolumes",
        content=b"",
        headers={"Content-Type": "application/json"},
    )

    assert response.status_code == 200
    assert response.json() is True
    assert list(simulator.state()["volumes"]) == ["ws-alice"]


# --- limits ----------------------------------------------------------------------------------


def set_limits(api: httpx.Client, application_id: str, **limits: str | None) -> None:
    response = api.post("/api/application.update", json={"applicationId": application_id, **limits})
    assert response.json() is True


def test_limits_are_parse_int_ed_and_apply_at_the_next_deploy_redeploy_or_reload(
    api: httpx.Client, simulator: DokploySimulator
) -> None:
    app = stack(api)["app"]
    app_id = app["applicationId"]
    deploy_and_wait(api, app_id)
    before = service(simulator, app)["resources"]

    set_limits(
        api,
        app_id,
        memoryLimit="2147483648",
        memoryReservation="1073741824",
        cpuLimit="1500000000",
        cpuReservation="500000000",
    )
    unchanged = service(simulator, app)["resources"]
    deploy_and_wait(api, app_id, "application.redeploy")
    applied = service(simulator, app)["resources"]
    set_limits(api, app_id, memoryLimit=None, memoryReservation=None, cpuReservation=None)
    api.post("/api/application.stop", json={"applicationId": app_id})
    api.post("/api/application.start", json={"applicationId": app_id})
    after_start = service(simulator, app)["resources"]
    reload = api.post("/api/application.reload", json={"applicationId": app_id, "appName": "x"})

    assert before == {"Limits": {}, "Reservations": {}}
    assert unchanged == before
    assert applied == {
        "Limits": {"MemoryBytes": 2147483648, "NanoCPUs": 1500000000},
        "Reservations": {"MemoryBytes": 1073741824, "NanoCPUs": 500000000},
    }
    assert after_start == applied
    assert reload.json() is True
    assert service(simulator, app)["resources"] == {
        "Limits": {"NanoCPUs": 1500000000},
        "Reservations": {},
    }
    assert app_one(api, app_id)["cpuLimit"] == "1500000000"


@pytest.mark.parametrize(
    ("limits", "error"),
    [
        ({"memoryLimit": "2G"}, REFUSED + "invalid memory value 2: Must be at least 4MiB"),
        (
            {"memoryReservation": "512M"},
            REFUSED + "invalid memory value 512: Must be at least 4MiB",
        ),
        ({"cpuLimit": "1.5"}, REFUSED + "invalid cpu value 1e-09: Must be at least 0.001"),
        ({"cpuLimit": "1"}, REFUSED + "invalid cpu value 1e-09: Must be at least 0.001"),
        ({"memoryLimit": "5242880"}, DAEMON + "Minimum memory limit allowed is 6MB"),
        (
            {"cpuLimit": "5000000000"},
            DAEMON + "Range of CPUs is from 0.01 to 4.00, as there are only 4 CPUs available",
        ),
        (
            {"memoryReservation": "17179869184"},
            "task not scheduled: no suitable node (insufficient resources on 1 node)",
        ),
    ],
    ids=["2G", "512M", "cpus-1.5", "cpus-1", "5MiB", "5-cpus", "16GiB-reserved"],
)
def test_limits_swarm_would_reject_fail_the_deploy(
    api: httpx.Client, simulator: DokploySimulator, limits: dict[str, str], error: str
) -> None:
    app = stack(api)["app"]
    set_limits(api, app["applicationId"], **limits)

    failed = deploy_and_wait(api, app["applicationId"])

    assert failed["status"] == "error"
    assert failed["errorMessage"] == error
    log = api.get("/api/deployment.readLogs", params={"deploymentId": failed["deploymentId"]})
    assert log.json().endswith(f"Error: {error}")
    assert app["appName"] not in simulator.state()["services"]
    assert app_one(api, app["applicationId"])["applicationStatus"] == "error"


def test_a_limit_parse_int_cannot_read_is_silently_no_limit(
    api: httpx.Client, simulator: DokploySimulator
) -> None:
    app = stack(api)["app"]
    set_limits(api, app["applicationId"], memoryLimit="two gigabytes", cpuLimit="one")

    done = deploy_and_wait(api, app["applicationId"])

    assert done["status"] == "done"
    assert service(simulator, app)["resources"] == {"Limits": {}, "Reservations": {}}


def test_reload_with_limits_swarm_rejects_is_a_500(
    api: httpx.Client, simulator: DokploySimulator
) -> None:
    app = stack(api)["app"]
    deploy_and_wait(api, app["applicationId"])
    set_limits(api, app["applicationId"], memoryLimit="2G")

    reload = api.post(
        "/api/application.reload",
        json={"applicationId": app["applicationId"], "appName": app["appName"]},
    )

    assert_trpc_error(reload, 500, "INTERNAL_SERVER_ERROR", "application.reload")
    assert reload.json()["message"] == "Error reloading application"
    assert app_one(api, app["applicationId"])["applicationStatus"] == "error"
    assert service(simulator, app)["resources"] == {"Limits": {}, "Reservations": {}}


def test_a_bigger_simulated_host() -> None:
    with DokploySimulator(deploy_seconds=0.0, queue_delay=0.0, host_cpus=16) as sim:
        headers = {"x-api-key": sim.api_key}
        with httpx.Client(base_url=sim.url, headers=headers, timeout=5, verify=TLS) as client:
            app = stack(client)["app"]
            set_limits(client, app["applicationId"], cpuLimit="12000000000")
            assert deploy_and_wait(client, app["applicationId"])["status"] == "done"


# --- public side of the stacks ---------------------------------------------------------------


def test_stack_page_looks_like_ttyd(api: httpx.Client, simulator: DokploySimulator) -> None:
    built = stack(api, host="alice.ai.localhost")
    before = get(simulator.stack_url_template.format(host="alice.ai.localhost") + "/")
    deploy_and_wait(api, built["app"]["applicationId"])

    page = get(simulator.stack_url_template.format(host="alice.ai.localhost") + "/")

    assert before.status_code == 502
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "<title>ttyd - opencode</title>" in page.text
    assert '<div id="terminal-container">' in page.text


def test_unknown_host_is_404_and_needs_no_key(simulator: DokploySimulator) -> None:
    response = health(simulator, "nobody.ai.localhost")

    assert response.status_code == 404


def test_unhealthy_host_answers_503(api: httpx.Client, simulator: DokploySimulator) -> None:
    built = stack(api, host="alice.ai.localhost")
    deploy_and_wait(api, built["app"]["applicationId"])
    simulator.unhealthy("alice.ai.localhost")

    assert health(simulator, "alice.ai.localhost").status_code == 503
    assert health(simulator, "alice.ai.localhost").status_code == 503
    simulator.healthy("alice.ai.localhost")
    assert health(simulator, "alice.ai.localhost").status_code == 200
    simulator.unhealthy("alice.ai.localhost", forever=False)
    assert health(simulator, "alice.ai.localhost").status_code == 503
    assert health(simulator, "alice.ai.localhost").status_code == 200


# --- fault injection -------------------------------------------------------------------------


def test_fail_n_times_then_succeed(api: httpx.Client, simulator: DokploySimulator) -> None:
    simulator.fail("project.create", times=2, status=503)

    statuses = [api.post("/api/project.create", json={"name": "p"}).status_code for _ in range(3)]

    assert statuses == [503, 503, 200]
    assert len(simulator.state()["projects"]) == 1
    assert simulator.call_count("project.create") == 3


def test_fault_body_is_trpc_shaped_unless_given(
    api: httpx.Client, simulator: DokploySimulator
) -> None:
    simulator.fail("project.all", status=500)
    simulator.fail("project.all", status=502, body="<html>bad gateway</html>")

    default = api.get("/api/project.all")
    custom = api.get("/api/project.all")

    assert_trpc_error(default, 500, "INTERNAL_SERVER_ERROR", "project.all")
    assert custom.status_code == 502
    assert custom.text == "<html>bad gateway</html>"
    assert custom.headers["content-type"].startswith("text/html")


def test_fault_with_retry_after(api: httpx.Client, simulator: DokploySimulator) -> None:
    simulator.fail("project.all", status=429, retry_after=7)

    response = api.get("/api/project.all")

    assert response.status_code == 429
    assert response.headers["retry-after"] == "7"
    assert "retry-after" not in api.get("/api/project.all").headers


def test_fault_delay_forces_a_client_timeout(
    api: httpx.Client, simulator: DokploySimulator
) -> None:
    simulator.fail("project.all", status=200, delay=0.5)

    with pytest.raises(httpx.ReadTimeout):
        api.get("/api/project.all", timeout=0.1)
    assert api.get("/api/project.all").status_code == 200


def test_fault_drop_closes_the_connection(api: httpx.Client, simulator: DokploySimulator) -> None:
    simulator.fail("project.create", drop=True)

    with pytest.raises(httpx.RemoteProtocolError):
        api.post("/api/project.create", json={"name": "p"})

    assert simulator.state()["projects"] == {}
    assert simulator.calls()[-1]["status"] is None
    assert simulator.calls()[-1]["dropped"] is True


def test_fault_after_effect_fails_after_creating(
    api: httpx.Client, simulator: DokploySimulator
) -> None:
    simulator.fail("project.create", status=500, after_effect=True)

    response = api.post("/api/project.create", json={"name": "ambiguous"})

    assert response.status_code == 500
    [project] = api.get("/api/project.all").json()
    assert project["name"] == "ambiguous"


def test_fault_drop_after_effect(api: httpx.Client, simulator: DokploySimulator) -> None:
    simulator.fail("project.create", drop=True, after_effect=True)

    with pytest.raises(httpx.RemoteProtocolError):
        api.post("/api/project.create", json={"name": "ambiguous"})

    assert len(api.get("/api/project.all").json()) == 1


def test_fail_rejects_unknown_endpoints(simulator: DokploySimulator) -> None:
    with pytest.raises(ValueError, match="unknown endpoint"):
        simulator.fail("project.delete")


def test_latency_applies_to_every_call(api: httpx.Client, simulator: DokploySimulator) -> None:
    simulator.latency(0.2)

    started = time.monotonic()
    api.get("/api/project.all")
    elapsed = time.monotonic() - started

    assert elapsed >= 0.2
    simulator.latency(0)
    started = time.monotonic()
    api.get("/api/project.all")
    assert time.monotonic() - started < 0.2


def test_calls_record_the_exact_request_sequence(
    api: httpx.Client, simulator: DokploySimulator
) -> None:
    created = create_project(api)
    api.get("/api/environment.byProjectId", params={"projectId": created["project"]["projectId"]})
    api.get("/api/project.create")

    calls = simulator.calls()

    assert [(c["method"], c["path"], c["status"]) for c in calls] == [
        ("POST", "/api/project.create", 200),
        ("GET", "/api/environment.byProjectId", 200),
        ("GET", "/api/project.create", 404),
    ]
    assert calls[0]["input"] == {"name": "portal-alice"}
    assert calls[1]["input"] == {"projectId": created["project"]["projectId"]}


def test_reset_clears_state_faults_and_calls(
    api: httpx.Client, simulator: DokploySimulator
) -> None:
    built = stack(api, host="alice.ai.localhost")
    deploy_and_wait(api, built["app"]["applicationId"])
    simulator.fail("project.all", times=5)
    simulator.unhealthy("alice.ai.localhost")
    simulator.latency(0.5)

    simulator.reset()

    state = simulator.state()
    assert state["projects"] == {}
    assert state["applications"] == {}
    assert state["services"] == {}
    assert state["faults"] == []
    assert state["unhealthy"] == []
    assert state["latency"] == 0
    assert simulator.calls() == []
    assert api.get("/api/project.all", timeout=0.4).status_code == 200


def test_reset_drops_queued_deployments(api: httpx.Client, simulator: DokploySimulator) -> None:
    simulator.queue_delay = 0.2
    app_id = stack(api)["app"]["applicationId"]
    api.post("/api/application.deploy", json={"applicationId": app_id})

    simulator.reset()

    assert simulator.wait_idle(timeout=2)
    assert simulator.state()["deployments"] == {}


# --- control API -----------------------------------------------------------------------------


def test_control_api(api: httpx.Client, simulator: DokploySimulator) -> None:
    control = httpx.Client(base_url=simulator.url + "/_sim", timeout=5, verify=TLS)
    fault = {"endpoint": "project.create", "times": 1, "status": 503, "retry_after": 2}
    assert control.post("/faults", json=fault).json() == {"ok": True}

    failed = api.post("/api/project.create", json={"name": "p"})
    built = stack(api, host="alice.ai.localhost")
    control.post("/deploy-fault", json={"app": built["app"]["appName"], "message": "pull denied"})
    failed_deploy = deploy_and_wait(api, built["app"]["applicationId"])
    deploy_and_wait(api, built["app"]["applicationId"])
    control.post("/unhealthy", json={"host": "alice.ai.localhost"})
    unhealthy = health(simulator, "alice.ai.localhost")
    control.post("/latency", json={"seconds": 0.01})
    state = control.get("/state").json()
    calls = control.get("/calls").json()

    assert failed.status_code == 503
    assert failed.headers["retry-after"] == "2"
    assert failed_deploy["errorMessage"] == "pull denied"
    assert unhealthy.status_code == 503
    assert state["latency"] == 0.01
    assert state["callCounts"]["project.create"] == 2
    assert built["app"]["appName"] in state["services"]
    assert calls[0] == {
        "method": "POST",
        "path": "/api/project.create",
        "endpoint": "project.create",
        "input": {"name": "p"},
        "status": 503,
        "dropped": False,
    }
    assert control.post("/faults", json={"endpoint": "nope"}).status_code == 400
    assert control.post("/reset").json() == {"ok": True}
    assert control.get("/state").json()["projects"] == {}
    control.close()


def test_control_api_for_files_volumes_and_release(
    api: httpx.Client, simulator: DokploySimulator
) -> None:
    control = httpx.Client(base_url=simulator.url + "/_sim", timeout=5, verify=TLS)
    seeded = {"name": "ws-alice", "files": {"todo.md": "from before"}}
    assert control.post("/volumes", json=seeded).json() == {"ok": True}
    assert control.post("/volume-release", json={"calls": 0}).json() == {"ok": True}
    app = stack(api)["app"]
    create_mount(api, app["applicationId"])
    deploy_and_wait(api, app["applicationId"])

    written = control.post(
        "/files", json={"app": app["appName"], "path": "/workspace/notes.txt", "content": "hi"}
    )
    read = control.get("/files", params={"app": app["appName"], "path": "/workspace/todo.md"})
    layer = control.get("/files", params={"app": app["appName"], "path": "/etc/motd"})
    volumes = control.get("/volumes").json()
    api.post("/api/application.delete", json={"applicationId": app["applicationId"]})
    removed = remove_volume(api)
    stopped = control.get("/files", params={"app": app["appName"], "path": "/workspace/x"})

    assert written.json() == {"ok": True, "volume": "ws-alice"}
    assert read.json() == {"content": "from before", "volume": "ws-alice"}
    assert layer.json() == {"content": None, "volume": None}
    assert volumes["ws-alice"]["files"] == {"todo.md": "from before", "notes.txt": "hi"}
    assert removed.status_code == 200
    assert stopped.status_code == 400
    assert "has no running container" in stopped.json()["error"]
    assert control.post("/volume-release", json={"calls": -1}).status_code == 400
    assert control.post("/volumes", json={"name": "ws-bob", "files": []}).status_code == 400
    assert control.get("/nothing").status_code == 404
    control.close()


def test_reset_forgets_mounts_and_volumes(api: httpx.Client, simulator: DokploySimulator) -> None:
    app = stack(api)["app"]
    create_mount(api, app["applicationId"])
    deploy_and_wait(api, app["applicationId"])

    simulator.reset()

    state = simulator.state()
    assert state["mounts"] == {}
    assert state["volumes"] == {}


# --- lifecycle -------------------------------------------------------------------------------


def test_context_manager_and_stop_leave_no_threads() -> None:
    with DokploySimulator(deploy_seconds=0.05, queue_delay=0.0) as sim:
        headers = {"x-api-key": sim.api_key}
        client = httpx.Client(base_url=sim.url, headers=headers, verify=TLS)
        app_id = stack(client)["app"]["applicationId"]
        client.post("/api/application.deploy", json={"applicationId": app_id})
        assert sim.wait_idle(timeout=5)
        url = sim.url
        prefix = f"dokploy-simulator-{sim.port}"
        assert any(t.name.startswith(prefix) for t in threading.enumerate())

    lingering = [t.name for t in threading.enumerate() if t.name.startswith(prefix)]
    assert lingering == []
    with pytest.raises(httpx.TransportError):
        get(url + "/api/project.all", timeout=1)
    client.close()


def test_runs_standalone_from_the_command_line() -> None:
    root = Path(__file__).resolve().parents[2]
    code = (
        "import sys; from stacks.dokploy.simulator import main; "
        "main(sys.argv[1:]); print('django' in sys.modules, flush=True)"
    )
    args = [sys.executable, "-c", code, "--port", "0", "--api-key", "k", "--deploy-seconds", "0"]
    process = subprocess.Popen(args, cwd=root, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        banner = process.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+", banner)
        assert url, banner
        response = get(url.group(0) + "/api/project.all", headers={"x-api-key": "k"})
        assert response.json() == []
        process.terminate()
        out, _ = process.communicate(timeout=10)
    finally:
        process.kill()
    assert process.returncode == 0
    assert out.strip() == "False"  # no Django imported


def test_get_volumes_lists_the_docker_hosts_volumes_like_docker_volume_ls(simulator, api):
    simulator.add_volume("ai-stack-alice-files-0123abcd", {"a.txt": "a"})
    simulator.add_volume("other")

    listed = api.get("/api/dockerVolume.getVolumes").json()
    remote = api.get("/api/dockerVolume.getVolumes", params={"serverId": "remote-1"}).json()

    assert [row["Name"] for row in listed] == ["ai-stack-alice-files-0123abcd", "other"]
    assert listed[0] == {
        "Name": "ai-stack-alice-files-0123abcd",
        "Driver": "local",
        "Scope": "local",
        "Mountpoint": "/var/lib/docker/volumes/ai-stack-alice-files-0123abcd/_data",
        "Labels": "",
    }
    assert remote == []  # Dokploy swallows the failing command and answers nothing
