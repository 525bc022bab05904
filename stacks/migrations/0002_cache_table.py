"""The database cache table, so `migrate` alone prepares a fresh database.

Without REDIS_URL the cache (rate limits, the per-phase pacing of Dokploy calls, django-q2's
bookkeeping) lives in the `portal_cache` table. It is made even while Redis is the cache, so a
later move to the database cache needs no extra step; `createcachetable` leaves an existing
table alone.
"""

from typing import Any

from django.core.management import call_command
from django.db import migrations


def create_cache_tables(apps: Any, schema_editor: Any) -> None:
    call_command(
        "createcachetable", "portal_cache", database=schema_editor.connection.alias, verbosity=0
    )


class Migration(migrations.Migration):
    dependencies = [("stacks", "0001_initial_stack_attempts")]

    operations = [
        # Nothing to undo: the table holds only throwaway cache entries.
        migrations.RunPython(create_cache_tables, migrations.RunPython.noop, elidable=False),
    ]
