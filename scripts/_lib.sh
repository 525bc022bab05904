# Shared by scripts/run and scripts/test: idempotent set-up steps for a fresh machine.
# shellcheck shell=bash

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export UV_SYSTEM_CERTS=1
export UV_PYTHON_DOWNLOADS=never

log() { printf '\033[1m==> %s\033[0m\n' "$*"; }

python_bin() {
  command -v python3.11 || command -v python3
}

# Creates .venv from uv.lock (the lock file keeps installs reproducible).
ensure_venv() {
  local py
  py="$(python_bin)"
  if ! "$py" -m uv --version >/dev/null 2>&1; then
    log "installing uv"
    "$py" -m pip install --quiet --disable-pip-version-check uv
  fi
  log "syncing the virtualenv from uv.lock ($*)"
  (cd "$ROOT" && "$py" -m uv sync --frozen --quiet --python "$py" "$@")
  export PATH="$ROOT/.venv/bin:$PATH"
}

# PostgreSQL on 127.0.0.1:5432 with a role that may create the test database.
ensure_postgres() {
  if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
    if ls /etc/postgresql >/dev/null 2>&1; then
      log "starting PostgreSQL"
      pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -n | tail -1)" main start \
        || true
    fi
    for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 0.5; done
  fi
  pg_isready -q -h 127.0.0.1 -p 5432 || return 1
  local psql=(psql -h 127.0.0.1 -p 5432 -U postgres -d postgres -v ON_ERROR_STOP=1 -qtA)
  if [ "$("${psql[@]}" -c "SELECT 1 FROM pg_roles WHERE rolname='portal'")" != "1" ]; then
    "${psql[@]}" -c "CREATE ROLE portal LOGIN CREATEDB"
  fi
  if [ "$("${psql[@]}" -c "SELECT 1 FROM pg_database WHERE datname='portal'")" != "1" ]; then
    "${psql[@]}" -c "CREATE DATABASE portal OWNER portal"
  fi
}

# Redis on 127.0.0.1:6379 (keeps nothing on disk).
ensure_redis() {
  if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
    command -v redis-server >/dev/null || return 1
    log "starting Redis"
    mkdir -p /tmp/portal-redis
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
      --dir /tmp/portal-redis --logfile /tmp/portal-redis/redis.log
    for _ in $(seq 1 20); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 0.25; done
  fi
  redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1
}

# The OpenID provider that the SSO browser tests sign in with: the npm package oidc-provider,
# locked by tests/oidc_provider/package-lock.json. `npm ci` runs again only when the lock changes.
ensure_oidc_provider() {
  local dir="$ROOT/tests/oidc_provider" want
  command -v npm >/dev/null 2>&1 || { log "npm is missing: the SSO tests need Node.js"; return 1; }
  want="$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)"
  if [ "$(cat "$dir/node_modules/.lock-sha256" 2>/dev/null)" != "$want" ]; then
    log "installing the test OpenID provider (npm ci)"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error) || return 1
    echo "$want" >"$dir/node_modules/.lock-sha256"
  fi
}

# Debian's Chromium for the browser tests; Playwright's own browser download does not work on
# these machines. CHROMIUM_PATH points elsewhere when it lives elsewhere.
ensure_chromium() {
  local chromium="${CHROMIUM_PATH:-/usr/bin/chromium}"
  if [ ! -x "$chromium" ]; then
    log "installing Chromium"
    local sudo=()
    [ "$(id -u)" = 0 ] || sudo=(sudo)
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
  fi
  [ -x "$chromium" ]
}

# promtool, to check and unit-test the Prometheus alert rules: Debian's prometheus package has
# it. RUNLEVEL=1 keeps the package from starting a Prometheus server where an init system
# would; only the tool is wanted.
ensure_promtool() {
  if ! command -v promtool >/dev/null 2>&1; then
    log "installing promtool (Debian's prometheus package)"
    local sudo=()
    [ "$(id -u)" = 0 ] || sudo=(sudo)
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 \
      apt-get install -y -qq --no-install-recommends prometheus
  fi
  command -v promtool >/dev/null 2>&1
}

# buildah, podman, runc and debootstrap: scripts/image-smoke builds and runs the container image
# with them, with no Docker engine. They need root; apt-get installs whichever are missing.
ensure_image_tools() {
  local tool missing=() out
  [ "$(id -u)" = "0" ] || { log "the image smoke run needs root"; return 1; }
  for tool in buildah podman runc debootstrap; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
  done
  [ "${#missing[@]}" -eq 0 ] && return 0
  command -v apt-get >/dev/null 2>&1 || { log "no apt-get to install ${missing[*]}"; return 1; }
  log "installing ${missing[*]}"
  out="$(mktemp)"
  if ! { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >"$out" 2>&1 \
    || { apt-get update -qq >>"$out" 2>&1 \
      && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >>"$out" 2>&1; }; }
  then
    tail -n 20 "$out"
    rm -f "$out"
    return 1
  fi
  rm -f "$out"
}
