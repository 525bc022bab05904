"""Settings for real task-worker processes started by tests: the test settings, not in sync mode.

The test settings run django-q2 tasks inline ("sync": True). A `manage.py qcluster` started by
a test with this module consumes the real broker (the ORM broker on the test database, or Redis
with REDIS_URL), like a production worker.
"""

# The test settings plus one override: a star import by design.
from portal.settings_test import *  # noqa: F403
from portal.settings_test import Q_CLUSTER

Q_CLUSTER = {**Q_CLUSTER, "sync": False, "workers": 2, "poll": 0.1, "guard_cycle": 0.5}
