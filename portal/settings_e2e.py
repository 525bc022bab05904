"""Browser-test settings: the test settings, with tasks sent to a real worker cluster.

The test settings run django-q2 tasks inline ("sync"), which would run a whole deployment inside
the request that asked for it. django-q2 reads Q_CLUSTER once, when it is imported, so no
fixture can switch that off: the browser tests run in their own pytest invocation with this
module (scripts/test does), and the `manage.py qcluster` they start uses it too.
"""

import os

# Both the test process (the live server's dispatcher) and the worker cluster read these.
os.environ.setdefault("MAX_CONCURRENT_DEPLOYMENTS", "2")
os.environ.setdefault("Q_WORKERS", "2")

from portal.settings_test import *  # noqa: F403
from portal.settings_test import DATA_DIR, DATABASES, Q_CLUSTER

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / "test-portal-e2e.sqlite3")}

Q_CLUSTER = {**Q_CLUSTER, "sync": False}
