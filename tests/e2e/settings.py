"""Browser-test settings: the worker settings, for the test process as well as its workers.

The live server dispatches the attempts people ask for. With the test settings django-q2 runs
a task inline ("sync"), so a whole deployment would run inside the request that asked for it.
django-q2 reads Q_CLUSTER once, when it is imported, so no fixture can change that: the browser
tests run in their own pytest invocation with this module (scripts/test does), and the
`manage.py qcluster` they start uses it too, so both sides agree on every setting.
"""

from tests.worker_settings import *  # noqa: F403
from tests.worker_settings import DATA_DIR, DATABASES

# Two slots, so a test fills them all with two stand-ins.
MAX_CONCURRENT_DEPLOYMENTS = 2

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / "test-portal-e2e.sqlite3")}
