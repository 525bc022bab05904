from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.core.cache import cache


@pytest.fixture(autouse=True)
def _clear_cache(request: pytest.FixtureRequest) -> None:
    """The cache is shared (database or Redis): start every database test with it empty."""
    for name in ("transactional_db", "live_server", "db"):
        if name in request.fixturenames:
            request.getfixturevalue(name)
            cache.clear()
            return


@pytest.fixture
def alice(db: None) -> User:
    return User.objects.create_user("alice", "alice@example.com", "password")


@pytest.fixture
def bob(db: None) -> User:
    return User.objects.create_user("bob", "bob@example.com", "password")


@pytest.fixture
def charlie(db: None) -> User:
    return User.objects.create_user("charlie", "charlie@example.com", "password")


@pytest.fixture
def dokploy(settings, transactional_db):
    """A fresh Dokploy simulator with the portal pointed at it, fast waits, no DNS check.

    Pipeline tests run with transactional_db: the lease heartbeat uses its own database
    connection and must see the attempt rows.
    """
    from stacks.dokploy.simulator import DokploySimulator

    simulator = DokploySimulator(
        api_key="sim-key-0123456789", deploy_seconds=0.05, queue_delay=0.01
    )
    simulator.start()
    settings.DOKPLOY_URL = simulator.url
    settings.DOKPLOY_API_KEY = simulator.api_key
    settings.DOKPLOY_API_KEY_FILE = ""
    settings.DOKPLOY_RETRY_BASE = 0.0
    settings.STACK_URL = simulator.stack_url_template
    settings.STACK_DOMAIN = "ai.example.test"
    settings.STACK_CHECK_DNS = False
    settings.HEALTH_INTERVAL = 0.02
    settings.HEALTH_TIMEOUT = 1.0
    settings.DEPLOY_TIMEOUT = 60.0
    yield simulator
    simulator.stop()
