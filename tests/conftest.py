from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.core.cache import cache
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings

from stacks.dokploy.simulator import DokploySimulator

# The browser tests need a real worker cluster, which the inline ("sync") task settings cannot
# give; they run in their own invocation with tests.e2e.settings (see scripts/test).
collect_ignore = [] if settings.SETTINGS_MODULE == "tests.e2e.settings" else ["e2e"]

# Property-based tests draw the same examples on every run (a failure found in CI is found again
# on any machine), store nothing in the checkout, and have no deadline on a busy machine.
hypothesis_settings.register_profile(
    "portal",
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=200,
    suppress_health_check=[HealthCheck.too_slow],
)
hypothesis_settings.load_profile("portal")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Browser tests (marked e2e) run last, in their usual order.

    Playwright's sync API leaves its event loop marked as running in the main thread until the
    session ends, and Django then keeps that thread's database connections apart from the ones
    it had; a later test that forks processes would hand them a connection still open.
    """
    items.sort(key=lambda item: item.get_closest_marker("e2e") is not None)


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
def simulator() -> Iterator[DokploySimulator]:
    """A running Dokploy simulator on a free port, with fast deployments."""
    sim = DokploySimulator(deploy_seconds=0.1, queue_delay=0.01).start()
    try:
        yield sim
    finally:
        sim.stop()


@pytest.fixture
def dokploy(simulator: DokploySimulator, settings, transactional_db) -> DokploySimulator:
    """The simulator with the portal pointed at it: fast waits, no DNS check.

    Pipeline tests run with transactional_db: the lease heartbeat uses its own database
    connection and must see the attempt rows.
    """
    simulator.deploy_seconds = 0.05
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
    return simulator
