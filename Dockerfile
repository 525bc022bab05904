# --- builder: resolve the locked dependencies into /app/.venv --------------------------------
FROM python:3.11-slim-bookworm AS builder

ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN pip install --no-cache-dir uv==0.13.9

WORKDIR /app
# Only the lock inputs, so the dependency layer is rebuilt only when they change.
COPY pyproject.toml uv.lock ./
RUN uv sync --frozen --no-dev --no-install-project --no-cache --python /usr/local/bin/python3

# --- runtime: the venv, the code and the collected static files, run as a non-root user -------
FROM python:3.11-slim-bookworm AS runtime

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONPATH=/app \
    PATH="/app/.venv/bin:$PATH" \
    DJANGO_SETTINGS_MODULE=portal.settings \
    STATIC_ROOT=/app/staticfiles \
    DATA_DIR=/app/var \
    GUNICORN_WORKERS=2 \
    GUNICORN_THREADS=4 \
    FORWARDED_ALLOW_IPS="*"

RUN groupadd --gid 10001 portal \
    && useradd --uid 10001 --gid portal --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin portal

WORKDIR /app
COPY --from=builder /app/.venv /app/.venv
COPY . .

# The code's bytecode is compiled here, once, instead of in memory at every process start
# (PYTHONDONTWRITEBYTECODE and a read-only /app mean nothing would ever be cached). The code
# never changes inside the image, so the .pyc files are trusted without re-reading the sources
# (unchecked-hash), which also holds when a build rewrites the files' timestamps.
# The settings refuse to load with DEBUG off and no SECRET_KEY; this key exists only for
# collectstatic. The code and static files stay owned by root: the portal user writes only to
# var/.
RUN python -m compileall -q -j 0 --invalidation-mode unchecked-hash portal stacks \
    && env DEBUG=false SECRET_KEY=collectstatic-build-only-not-a-secret \
        DATABASE_URL=sqlite:////tmp/collectstatic.sqlite3 \
        python manage.py collectstatic --noinput \
    && install -d -o portal -g portal /app/var

USER 10001:10001
EXPOSE 8000

# One probe for both roles: /healthz for the web server, the cluster's own heartbeat for the
# task worker (portal/container_health.py reads which one the container runs).
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 \
    CMD ["python", "-m", "portal.container_health"]

ENTRYPOINT ["/app/docker/entrypoint.sh"]
# The task worker runs the same image with the command `python manage.py qcluster`.
CMD ["sh", "-c", "exec gunicorn portal.wsgi:application --bind 0.0.0.0:8000 \
     --workers \"$GUNICORN_WORKERS\" --threads \"$GUNICORN_THREADS\" \
     --worker-tmp-dir /dev/shm --no-control-socket \
     --forwarded-allow-ips \"$FORWARDED_ALLOW_IPS\" --access-logfile -"]
