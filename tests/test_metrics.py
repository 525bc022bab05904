"""/metrics on seeded records: exact values, folding into the stored totals, a fixed number of
queries, and who may scrape."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.test import Client
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)

from stacks import metrics
from stacks.models import DeploymentAttempt, MetricsRollup, Stack
from tests.metrics_scrape import TOKEN, counters_and_histograms, nonzero, pick, scrape, value
from tests.metrics_seed import NOW, ended, seed

Status = DeploymentAttempt.Status


@pytest.fixture
def clock():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.fixture
def token(settings) -> str:
    settings.METRICS_TOKEN = TOKEN
    settings.METRICS_ALLOWED_NETWORKS = []
    return TOKEN


@pytest.fixture
def seeded(db, clock) -> dict[str, DeploymentAttempt]:
    return seed()


def test_a_scrape_of_the_records_shows_exact_values(seeded, token):
    s = scrape()

    assert nonzero(s, "portal_deployments_total", "kind", "outcome") == {
        ("create", "succeeded"): 2,
        ("create", "rolled_back"): 1,
        ("create", "failed"): 1,
        ("start", "failed"): 1,
        ("redeploy", "succeeded"): 1,
        ("stop", "cancelled"): 1,
    }
    assert len(pick(s, "portal_deployments_total")) == 6 * 4  # every kind and outcome, even at 0
    assert nonzero(s, "portal_deployment_failures_total", "phase", "code") == {
        ("deploy", "DEPLOY_FAILED"): 1,
        ("domain", "BAD_REQUEST"): 1,
        ("project", "BREAKER_OPEN"): 1,
    }
    # The BREAKER_OPEN failure created nothing, so there was nothing to roll back.
    assert nonzero(s, "portal_rollbacks_total") == {("deploy",): 1, ("domain",): 1}
    assert nonzero(s, "portal_rollback_failures_total") == {("domain",): 1}
    assert value(s, "portal_rollback_failures_total", phase="health") == 0
    assert nonzero(s, "portal_deployment_retries_total") == {("application",): 5, ("domain",): 1}
    assert value(s, "portal_breaker_opens_total", breaker="dokploy") == 2

    # Request to end of the succeeded ones: 50 s and 100 s for creates, 1020 s for the redeploy.
    duration = "portal_deployment_duration_seconds"
    assert value(s, f"{duration}_count", kind="create") == 2
    assert value(s, f"{duration}_sum", kind="create") == 150
    assert value(s, f"{duration}_bucket", kind="create", le="30.0") == 0
    assert value(s, f"{duration}_bucket", kind="create", le="60.0") == 1
    assert value(s, f"{duration}_bucket", kind="create", le="120.0") == 2
    assert value(s, f"{duration}_bucket", kind="redeploy", le="900.0") == 0
    assert value(s, f"{duration}_bucket", kind="redeploy", le="1800.0") == 1
    assert value(s, f"{duration}_bucket", kind="redeploy", le="+Inf") == 1
    assert value(s, f"{duration}_sum", kind="redeploy") == 1020
    assert not pick(s, f"{duration}_count", kind="start")  # it failed

    wait = "portal_queue_wait_seconds"
    assert value(s, f"{wait}_count", kind="create") == 5  # four ended, and the stuck one
    assert value(s, f"{wait}_sum", kind="create") == 2 + 10 + 3 + 0.5 + 60
    assert value(s, f"{wait}_bucket", kind="create", le="1.0") == 1
    assert value(s, f"{wait}_bucket", kind="create", le="5.0") == 3
    assert value(s, f"{wait}_bucket", kind="create", le="15.0") == 4
    assert value(s, f"{wait}_bucket", kind="create", le="60.0") == 5
    assert value(s, f"{wait}_sum", kind="redeploy") == 20  # not the 600 s of the user's limit
    assert value(s, f"{wait}_bucket", kind="redeploy", le="15.0") == 0
    assert value(s, f"{wait}_bucket", kind="redeploy", le="30.0") == 1

    api = "portal_dokploy_request_duration_seconds"
    assert nonzero(s, f"{api}_count", "endpoint", "status") == {
        ("project.create", "200"): 2,
        ("application.create", "503"): 2,
        ("application.create", "200"): 1,
        ("project.all", "200"): 1,
        ("domain.create", "timeout"): 1,
    }
    assert value(s, f"{api}_sum", endpoint="application.create", status="503") == 0.25
    assert value(s, f"{api}_bucket", endpoint="project.create", status="200", le="0.025") == 1
    assert value(s, f"{api}_bucket", endpoint="project.create", status="200", le="0.05") == 2
    assert value(s, f"{api}_bucket", endpoint="application.create", status="503", le="0.1") == 0
    assert value(s, f"{api}_bucket", endpoint="application.create", status="503", le="0.25") == 2
    assert value(s, f"{api}_bucket", endpoint="domain.create", status="timeout", le="5.0") == 0
    assert value(s, f"{api}_bucket", endpoint="domain.create", status="timeout", le="10.0") == 1

    assert value(s, "portal_attempts", status="queued") == 2
    assert value(s, "portal_attempts", status="running") == 1
    assert value(s, "portal_attempts_stuck") == 1
    assert value(s, "portal_queue_oldest_wait_seconds") == 300  # erin's; fred's may not start yet
    assert nonzero(s, "portal_stacks") == {
        ("healthy",): 1,
        ("failed",): 1,
        ("stopped",): 1,
        ("provisioning",): 1,
        ("new",): 2,
    }
    assert value(s, "portal_stacks", state="absent") == 0
    assert nonzero(s, "portal_breaker_state", "breaker", "state") == {("dokploy", "open"): 1}
    assert value(s, "portal_breaker_state", breaker="dokploy", state="closed") == 0
    assert value(s, "portal_breaker_consecutive_failures", breaker="dokploy") == 5
    assert (
        value(s, "portal_breaker_last_change_timestamp_seconds", breaker="dokploy")
        == (NOW - timedelta(minutes=8)).timestamp()
    )
    assert value(s, "portal_reconcile_last_run_success") == 0
    assert value(s, "portal_reconcile_last_run_duration_seconds") == 1
    assert (
        value(s, "portal_reconcile_last_run_timestamp_seconds")
        == (NOW - timedelta(minutes=5) + timedelta(seconds=1)).timestamp()
    )
    assert (
        value(s, "portal_reconcile_last_success_timestamp_seconds")
        == (NOW - timedelta(minutes=20) + timedelta(seconds=3)).timestamp()
    )
    findings = pick(s, "portal_reconcile_findings")
    assert {(dict(key)["kind"], dict(key)["fixed"]): n for (_, key), n in findings.items()} == {
        ("orphan_project", "true"): 0,
        ("orphan_project", "false"): 1,
        ("orphan_application", "true"): 1,
        ("orphan_application", "false"): 0,
        ("image_drift", "true"): 0,
        ("image_drift", "false"): 1,
    }
    assert value(s, "portal_metrics_folded_until_timestamp_seconds") == 0


def test_openmetrics_when_the_scraper_asks_for_it(seeded, token):
    """Prometheus asks for OpenMetrics first; the same numbers come back in that format."""
    answer = Client().get(
        "/metrics",
        HTTP_AUTHORIZATION=f"Bearer {TOKEN}",
        HTTP_ACCEPT="application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
    )

    assert answer["Content-Type"].startswith("application/openmetrics-text; version=1.0.0")
    text = answer.content.decode()
    assert text.endswith("# EOF\n")
    # prometheus-client's OpenMetrics parser has no type hints.
    families = {f.name: f for f in openmetrics_families(text)}  # type: ignore[no-untyped-call]
    assert families["portal_deployments"].type == "counter"
    assert families["portal_deployment_duration_seconds"].type == "histogram"
    succeeded = [
        s.value
        for s in families["portal_deployments"].samples
        if s.labels == {"kind": "create", "outcome": "succeeded"}
    ]
    assert succeeded == [2]


def test_folding_into_the_stored_totals_changes_no_value(seeded, token, clock):
    before = scrape()

    assert metrics.fold() == NOW - timedelta(minutes=5)
    assert metrics.fold() is None  # nothing new to fold yet

    after = scrape()
    assert after == {
        **before,
        ("portal_metrics_folded_until_timestamp_seconds", ()): (
            NOW - timedelta(minutes=5)
        ).timestamp(),
    }
    rollup = MetricsRollup.objects.get()
    assert rollup.through == NOW - timedelta(minutes=5)


def test_counters_never_go_down_as_time_passes_and_folds_run(seeded, token, clock):
    """Rows that leave every time window stay counted: the totals keep them."""
    before = counters_and_histograms(scrape())

    for days in (1, 2, 45, 90):
        clock.move_to(NOW + timedelta(days=days))
        metrics.fold()
        assert counters_and_histograms(scrape()) == before


def test_rows_that_end_after_a_fold_are_added_once(seeded, token, clock):
    metrics.fold()
    clock.move_to(NOW + timedelta(minutes=30))
    DeploymentAttempt.objects.get(stack__username="erin").transition(
        Status.CANCELLED, finished_at=NOW + timedelta(minutes=15), error_code="CANCELLED"
    )
    late = ended(
        Stack.objects.get(username="erin"), "teardown", Status.SUCCEEDED,
        queued=NOW + timedelta(minutes=20), wait=1, took=30,
    )  # fmt: skip

    live = scrape()
    metrics.fold()
    folded = scrape()
    clock.move_to(NOW + timedelta(hours=3))
    metrics.fold()

    assert value(live, "portal_deployments_total", kind="teardown", outcome="succeeded") == 1
    assert value(live, "portal_deployments_total", kind="create", outcome="cancelled") == 1
    assert counters_and_histograms(folded) == counters_and_histograms(live)
    assert counters_and_histograms(scrape()) == counters_and_histograms(live)
    assert late.finished_at is not None
    assert late.finished_at < MetricsRollup.objects.get().through


def test_a_fold_that_lost_the_race_adds_nothing(seeded, token, clock, monkeypatch):
    """Two folds read the same `through`; the compare-and-set lets only the first one write."""
    metrics.fold()
    read_by_both = MetricsRollup.objects.get()
    clock.move_to(NOW + timedelta(hours=1))
    assert metrics.fold() == NOW + timedelta(minutes=55)
    won = MetricsRollup.objects.get()
    # The second fold read the row before the first one wrote it.
    monkeypatch.setattr(
        MetricsRollup.objects, "get_or_create", lambda **kwargs: (read_by_both, False)
    )

    assert metrics.fold() is None
    assert MetricsRollup.objects.get().totals == won.totals
    assert MetricsRollup.objects.get().through == won.through


def test_a_scrape_takes_a_fixed_number_of_queries(db, clock, token, django_assert_max_num_queries):
    with django_assert_max_num_queries(metrics.QUERIES):
        scrape()


def test_the_same_number_of_queries_with_records_and_a_fold(
    seeded, token, clock, django_assert_max_num_queries
):
    metrics.fold()
    with django_assert_max_num_queries(metrics.QUERIES):
        scrape()


# --- Who may scrape -----------------------------------------------------------------------------


@pytest.fixture
def empty(db, settings):
    settings.METRICS_TOKEN = ""
    settings.METRICS_ALLOWED_NETWORKS = []
    settings.TRUSTED_PROXIES = []
    settings.DEBUG = False


def get(**headers) -> int:
    return Client().get("/metrics", **headers).status_code


def test_not_configured_is_not_there(empty):
    assert get() == 404
    assert get(HTTP_AUTHORIZATION="Bearer anything") == 404


def test_not_configured_with_debug_serves_loopback_only(empty, settings):
    settings.DEBUG = True

    assert get(REMOTE_ADDR="127.0.0.1") == 200
    assert get(REMOTE_ADDR="::1") == 200
    assert get(REMOTE_ADDR="10.1.2.3") == 403


def test_the_token_is_required(empty, settings):
    settings.METRICS_TOKEN = TOKEN

    refused = Client().get("/metrics")

    assert refused.status_code == 401
    assert refused["WWW-Authenticate"] == 'Bearer realm="metrics"'
    assert b"portal_" not in refused.content
    assert get(HTTP_AUTHORIZATION=f"Bearer {TOKEN}x") == 401
    assert get(HTTP_AUTHORIZATION=f"Basic {TOKEN}") == 401
    assert get(HTTP_AUTHORIZATION=TOKEN) == 401
    assert get(HTTP_AUTHORIZATION=f"bearer {TOKEN}") == 200
    assert get(HTTP_AUTHORIZATION=f"Bearer {TOKEN}") == 200


def test_only_get(empty, settings):
    settings.METRICS_TOKEN = TOKEN

    answer = Client().post("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")

    assert answer.status_code == 405


def test_allowed_networks(empty, settings):
    settings.METRICS_ALLOWED_NETWORKS = ["10.0.0.0/8", "192.168.7.9/32", "fd00::/8"]

    assert get(REMOTE_ADDR="10.20.30.40") == 200
    assert get(REMOTE_ADDR="192.168.7.9") == 200
    assert get(REMOTE_ADDR="fd00::5") == 200
    assert get(REMOTE_ADDR="::ffff:10.0.0.1") == 200  # IPv4 on a dual-stack socket
    assert get(REMOTE_ADDR="192.168.7.10") == 403
    assert get(REMOTE_ADDR="8.8.8.8") == 403
    assert get(REMOTE_ADDR="") == 403


def test_forwarded_for_from_an_undeclared_proxy_is_never_believed(empty, settings):
    """The proxy's own address is inside the allowed network; the person behind it is not."""
    settings.METRICS_ALLOWED_NETWORKS = ["172.16.0.0/12"]

    assert get(REMOTE_ADDR="172.18.0.5") == 200
    assert get(REMOTE_ADDR="172.18.0.5", HTTP_X_FORWARDED_FOR="203.0.113.9") == 403
    assert get(REMOTE_ADDR="172.18.0.5", HTTP_X_FORWARDED_FOR="172.18.0.7") == 403
    assert get(REMOTE_ADDR="172.18.0.5", HTTP_FORWARDED="for=203.0.113.9") == 403
    assert get(REMOTE_ADDR="172.18.0.5", HTTP_X_REAL_IP="203.0.113.9") == 403


def test_forwarded_for_from_a_trusted_proxy(empty, settings):
    settings.METRICS_ALLOWED_NETWORKS = ["10.0.0.0/8"]
    settings.TRUSTED_PROXIES = ["172.18.0.2"]
    proxy = {"REMOTE_ADDR": "172.18.0.2"}

    assert get(**proxy, HTTP_X_FORWARDED_FOR="10.1.1.1") == 200
    assert get(**proxy, HTTP_X_FORWARDED_FOR="203.0.113.9") == 403
    # A client cannot put an allowed address in front: the proxy appends the real one.
    assert get(**proxy, HTTP_X_FORWARDED_FOR="10.1.1.1, 203.0.113.9") == 403
    assert get(**proxy, HTTP_X_FORWARDED_FOR="nonsense, 10.1.1.1") == 200
    assert get(**proxy, HTTP_X_FORWARDED_FOR="10.1.1.1, nonsense") == 403
    assert get(**proxy) == 403  # the proxy itself is not in the allowed network


def test_a_chain_of_trusted_proxies(empty, settings):
    settings.METRICS_ALLOWED_NETWORKS = ["10.0.0.0/8"]
    settings.TRUSTED_PROXIES = ["172.18.0.0/16", "192.0.2.1"]

    chain = "10.9.9.9, 192.0.2.1"
    assert get(REMOTE_ADDR="172.18.0.2", HTTP_X_FORWARDED_FOR=chain) == 200
    chain = "10.9.9.9, 198.51.100.1, 192.0.2.1"
    assert get(REMOTE_ADDR="172.18.0.2", HTTP_X_FORWARDED_FOR=chain) == 403


def test_token_and_networks_are_both_required_when_both_are_set(empty, settings):
    settings.METRICS_TOKEN = TOKEN
    settings.METRICS_ALLOWED_NETWORKS = ["10.0.0.0/8"]
    bearer = f"Bearer {TOKEN}"

    assert get(REMOTE_ADDR="10.0.0.3", HTTP_AUTHORIZATION=bearer) == 200
    assert get(REMOTE_ADDR="10.0.0.3") == 401
    assert get(REMOTE_ADDR="8.8.8.8", HTTP_AUTHORIZATION=bearer) == 403


def test_the_answer_is_never_cached(empty, settings):
    settings.METRICS_TOKEN = TOKEN

    answer = Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")

    assert answer["Cache-Control"] == "max-age=0, no-cache, no-store, must-revalidate, private"
