"""The database cache table, so `migrate` alone prepares a fresh database.

Without REDIS_URL the cache (rate limits, the per-phase pacing of Dokploy calls, django-q2's
bookkeeping) lives in the `portal_cache` table. `createcachetable` does nothing for a cache that
is not a database cache, and nothing for a table that already exists.
"""

from typing import Any

from django.core.management import call_command
from django.db import migrations


def create_cache_tables(apps: Any, schema_editor: Any) -> None:
    call_command("createcachetable", database=schema_editor.connection.alias, verbosity=0)


class Migration(migrations.Migration):
    dependencies = [("stacks", "0001_initial_stack_attempts")]

    operations = [
        # Nothing to undo: the table holds only throwaway cache entries.
        migrations.RunPython(create_cache_tables, migrations.RunPython.noop, elidable=False),
    ]
