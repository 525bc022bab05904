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
