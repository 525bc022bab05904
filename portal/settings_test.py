"""Test settings: the production settings with fast, deterministic knobs.

The database comes from DATABASE_URL like everywhere else, so the same suite runs on SQLite and
on PostgreSQL. django-q2 runs tasks inline (sync); Q_CLUSTER is read once at import, which is
why this is a settings module and not a fixture.
"""

import os

os.environ.setdefault("DEBUG", "false")
os.environ.setdefault("SECRET_KEY", "test-secret-key-not-for-production-0123456789abcdef")
os.environ.setdefault("ALLOWED_HOSTS", "testserver,127.0.0.1,localhost")
os.environ.setdefault("SECURE_SSL_REDIRECT", "false")
os.environ.setdefault("LOG_FORMAT", "json")

# The test settings are the production settings plus overrides: a star import by design.
from portal.settings import *  # noqa: F403
from portal.settings import DATA_DIR, DATABASES, Q_CLUSTER

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file, not memory, so worker subprocesses in tests see the same test database.
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / "test-portal.sqlite3")}

Q_CLUSTER = {**Q_CLUSTER, "sync": True}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
DOKPLOY_RETRY_BASE = 0.0
HEALTH_INTERVAL = 0.01
