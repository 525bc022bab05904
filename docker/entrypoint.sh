#!/bin/sh
# Runs the container's command (gunicorn by default, or `python manage.py qcluster` for the task
# worker). With MIGRATE_ON_START=true it first brings the database up to date (the cache table
# included), for single-container setups that have no separate migrate step.
set -eu

if [ "${MIGRATE_ON_START:-false}" = "true" ]; then
    python manage.py migrate --noinput
fi

exec "$@"
