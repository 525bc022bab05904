"""Staff are told once per outage, with a count, and again when it ends: the breaker, failed
rollbacks and orphans, through the real pipeline and reconciler, by mail and webhook."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core import mail
from django.db import transaction

from stacks import alerts, lifecycle, reconcile
from stacks.dokploy.client import DokployClient
from stacks.models import AlertState, BreakerEvent, DeploymentAttempt
from stacks.resilience import CircuitBreaker

Status = DeploymentAttempt.Status
PULL_DENIED = "pull access denied for ghcr.io/ai-stack/opencode-ttyd"


class Webhook:
    """A chat's incoming webhook: records every JSON body posted to it."""

    def __init__(self, status: int = 200) -> None:
        self.posts: list[dict[str, Any]] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                hook.posts.append(json.loads(self.rfile.read(length)))
                self.send_response(status)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/secret-path"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def told(settings) -> Iterator[Webhook]:
    """Staff with a mailbox and a chat webhook."""
    webhook = Webhook()
    settings.ADMINS = [("Ops", "ops@example.com")]
    settings.ALERT_WEBHOOK_URL = webhook.url
    settings.SITE_URL = "https://portal.example.com"
    try:
        yield webhook
    finally:
        webhook.stop()


def deploy(username: str, kind: str = "create") -> DeploymentAttempt:
    user = User.objects.filter(username=username).first() or User.objects.create_user(username)
    attempt = lifecycle.request_attempt(user, kind)
    attempt.refresh_from_db()
    return attempt


def sent() -> list[tuple[str, str]]:
    return [(str(message.subject), str(message.body)) for message in mail.outbox]


def test_a_breaker_outage_sends_one_message_with_a_count_and_the_recovery(dokploy, settings, told):
    settings.BREAKER_RESET = 0.2
    # Five failures open the breaker; after the reset the probe fails once more (opens again).
    dokploy.fail("project.all", times=6, status=503)

    first = deploy("alice")
    refused = deploy("bob")  # the breaker is open: it fails at once, and sends no message
    assert (first.error_code, refused.error_code) == ("BREAKER_OPEN", "BREAKER_OPEN")
    assert len(mail.outbox) == 1
    time.sleep(0.25)
    probe_failed = deploy("carol")
    assert probe_failed.error_code == "BREAKER_OPEN"
    assert len(mail.outbox) == 1
    time.sleep(0.25)
    recovered = deploy("dave")  # three good probes close the breaker on the way

    assert recovered.status == Status.SUCCEEDED, recovered.error_message
    assert [subject for subject, _ in sent()] == [
        "[AI Stack Portal] Dokploy unavailable: circuit breaker dokploy open",
        "[AI Stack Portal] Dokploy answers again: circuit breaker dokploy closed",
    ]
    opening, closing = (body for _, body in sent())
    assert "(5 consecutive failures)" in opening
    assert "https://portal.example.com/admin/stacks/deploymentattempt/dashboard/" in opening
    assert "(3 probes succeeded in a row)" in closing
    assert "Times it opened: 2. The last: opened at" in closing
    assert "the probe failed" in closing
    assert [(p["status"], p["alert"], p["count"]) for p in told.posts] == [
        ("firing", "breaker:dokploy", 1),
        ("resolved", "breaker:dokploy", 2),
    ]
    assert told.posts[0]["text"].startswith("Dokploy unavailable: circuit breaker dokploy open\n")
    assert told.posts[1]["ended_at"] is not None
    assert list(BreakerEvent.objects.order_by("id").values_list("from_state", "to_state")) == [
        ("closed", "open"),
        ("open", "half_open"),
        ("half_open", "open"),
        ("open", "half_open"),
        ("half_open", "closed"),
    ]
    state = AlertState.objects.get(key="breaker:dokploy")
    assert (state.active, state.count) == (False, 2)


def test_the_next_outage_is_a_new_message(dokploy, settings, told):
    breaker = CircuitBreaker()
    for _ in range(2):
        for _ in range(5):
            breaker.record_failure(breaker.claim())
        breaker.reset_breaker()

    assert [p["status"] for p in told.posts] == ["firing", "resolved", "firing", "resolved"]
    assert len(mail.outbox) == 4
    assert "(reset by hand)" in mail.outbox[1].body


def test_failed_rollbacks_are_one_message_until_a_rollback_succeeds(dokploy, told):
    for name in ("alice", "bob", "carol"):
        dokploy.fail_deploy(f"opencode-{name}", message=PULL_DENIED)
        dokploy.fail("project.remove", times=1, status=400)  # the rollback cannot remove it
        attempt = deploy(name)
        assert attempt.status == Status.FAILED
        assert attempt.rollback_errors
    assert len(mail.outbox) == 1
    dokploy.fail_deploy("opencode-dave", message=PULL_DENIED)

    clean = deploy("dave")

    assert clean.status == Status.ROLLED_BACK
    (opening, _), (closing, body) = sent()
    assert opening == "[AI Stack Portal] A rollback failed: resources were left in Dokploy"
    assert closing == "[AI Stack Portal] Rollbacks succeed again"
    assert f"attempt #{clean.pk} (create of dave's stack) removed everything" in body
    assert "Failed rollbacks: 3." in body
    assert "carol" in body  # the last one
    assert [(p["status"], p["count"]) for p in told.posts] == [("firing", 1), ("resolved", 3)]


def test_orphans_are_one_message_until_a_run_finds_none(dokploy, told):
    assert deploy("alice").status == Status.SUCCEEDED
    client = DokployClient.from_settings()
    client.project_create(name="ai-stack-ghost", description="AI Stack for ghost")

    reconcile.run()
    reconcile.run()
    assert len(mail.outbox) == 1
    reconcile.run(fix=True)  # removes the orphan: none left
    reconcile.run()

    (opening, first), (closing, last) = sent()
    assert opening == "[AI Stack Portal] The reconciler found 1 orphan(s) in Dokploy"
    assert "ai-stack-ghost" in first
    assert closing == "[AI Stack Portal] No orphans left in Dokploy"
    assert "Runs that found orphans: 2." in last


def test_a_failed_reconcile_run_neither_starts_nor_ends_an_outage(dokploy, told):
    client = DokployClient.from_settings()
    client.project_create(name="ai-stack-ghost", description="AI Stack for ghost")
    reconcile.run()
    dokploy.fail("project.all", times=1, status=401)

    assert reconcile.run().status == "failed"
    assert AlertState.objects.get(key="orphans").active
    assert len(mail.outbox) == 1


def test_occurrences_while_active_only_count(db, told, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        assert alerts.occurred("test", "one", subject="Broken", opening="It broke.")
        assert not alerts.occurred("test", "two", subject="Broken", opening="It broke.")
        assert not alerts.occurred("test", "three", subject="Broken", opening="It broke.")
        assert alerts.ended("test", subject="Fixed", closing="It works.", counted="Breakages")
        assert not alerts.ended("test", subject="Fixed", closing="It works.", counted="Breakages")

    assert [subject for subject, _ in sent()] == [
        "[AI Stack Portal] Broken",
        "[AI Stack Portal] Fixed",
    ]
    assert "Breakages: 3. The last: three" in mail.outbox[1].body


def test_nothing_is_sent_for_a_change_that_was_rolled_back(
    db, told, django_capture_on_commit_callbacks
):
    def fails_after_the_change() -> None:
        with transaction.atomic():
            alerts.occurred("test", "one", subject="Broken", opening="It broke.")
            raise RuntimeError("the transaction fails")

    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(RuntimeError),
    ):
        fails_after_the_change()

    assert callbacks == []
    assert mail.outbox == []
    assert not AlertState.objects.filter(key="test", active=True).exists()


def test_a_mail_server_and_webhook_that_fail_never_raise(dokploy, settings, caplog):
    settings.ADMINS = [("Ops", "ops@example.com")]
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", 9, 0.5
    settings.ALERT_WEBHOOK_URL = "http://127.0.0.1:9/hooks/secret-path-0123456789"
    settings.ALERT_WEBHOOK_TIMEOUT = 0.5
    dokploy.fail("project.all", times=5, status=503)

    with caplog.at_level(logging.INFO, logger="stacks.alerts"):
        attempt = deploy("alice")

    assert attempt.error_code == "BREAKER_OPEN"
    assert AlertState.objects.get(key="breaker:dokploy").active
    warnings = [
        r.getMessage()
        for r in caplog.records
        if r.name == "stacks.alerts" and r.levelno == logging.WARNING
    ]
    assert warnings == ["could not call the alert webhook: ConnectError"]
    assert "secret-path" not in caplog.text


def test_a_webhook_that_answers_an_error_is_logged(
    db, settings, caplog, django_capture_on_commit_callbacks
):
    webhook = Webhook(status=404)
    settings.ALERT_WEBHOOK_URL = webhook.url
    try:
        with (
            caplog.at_level(logging.WARNING, logger="stacks.alerts"),
            django_capture_on_commit_callbacks(execute=True),
        ):
            alerts.occurred("test", "one", subject="Broken", opening="It broke.")
    finally:
        webhook.stop()

    assert [r.getMessage() for r in caplog.records] == ["the alert webhook answered 404"]
