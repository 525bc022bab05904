from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from stacks.models import DeploymentAttempt, DeploymentStep, Stack


@pytest.fixture
def staff_client(client, db):
    User.objects.create_superuser("staff", "staff@example.com", "password")
    client.login(username="staff", password="password")
    return client


def test_staff_audit_an_attempt_with_its_steps(staff_client, alice):
    stack = Stack.objects.create(owner=alice, username="alice")
    attempt = DeploymentAttempt.objects.create(stack=stack, kind="create")
    DeploymentStep.objects.create(
        attempt=attempt,
        seq=1,
        phase="domain",
        action="create",
        status="failed",
        summary="Create domain",
        error_code="BAD_REQUEST",
    )

    listing = staff_client.get("/admin/stacks/deploymentattempt/")
    detail = staff_client.get(f"/admin/stacks/deploymentattempt/{attempt.pk}/change/")

    assert listing.status_code == 200
    assert detail.status_code == 200
    assert b"BAD_REQUEST" in detail.content


def test_attempts_cannot_be_added_by_hand(staff_client):
    assert staff_client.get("/admin/stacks/deploymentattempt/add/").status_code == 403
