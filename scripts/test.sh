#!/usr/bin/env bash
# The whole suite, as CI runs it (`make test` calls this after installing the test extras):
#   0. lint first, failing fast: ruff check, ruff format --check and mypy --strict
#      (scripts/lint.sh, also `make check`), before anything is installed or started;
#   1. system packages the browser tests need (Debian's chromium; never `playwright install`);
#   2. real services on 127.0.0.1 — Slurm with accounting, a Ray head, PostgreSQL —
#      started by scripts/services.sh and stopped by PID when this script exits;
#   3. the suite on SQLite (unit, contract on every backend, integration, e2e);
#   4. the store, server and integration tests again on PostgreSQL.
# With CI=true a missing service fails its tests instead of skipping them.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
export PYTHONUNBUFFERED=1

log() { printf '[test] %s\n' "$*" >&2; }

log "lint: ruff check, ruff format --check, mypy --strict (scripts/lint.sh)"
bash scripts/lint.sh

if [ ! -x /usr/bin/chromium ]; then
    log "installing Debian's chromium for the browser tests"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || true
    apt-get install -y -qq chromium >/dev/null
fi

# The services script's own test starts and stops a second, private set of
# services; it runs first and alone, so that two Ray clusters never run at once.
log "scripts/services.sh: start, status and stop leave nothing running"
$BIN/pytest -q -p no:cacheprovider tests/integration/test_services.py

stop_services() { bash scripts/services.sh stop all || true; }
trap stop_services EXIT
log "starting Slurm, Ray and PostgreSQL"
t0=$(date +%s)
bash scripts/services.sh start all
log "services up in $(( $(date +%s) - t0 )) s"
# shellcheck disable=SC1091
. var/services/env.sh

log "suite on SQLite"
$BIN/pytest -q -p no:cacheprovider --ignore=tests/integration/test_services.py "$@"

log "store, server and integration suites on PostgreSQL ($CNET_PG_URL)"
CNET_TEST_DB_URL="$CNET_PG_URL" $BIN/pytest -q -p no:cacheprovider \
    tests/unit/store tests/unit/server tests/integration -m "not services and not e2e and not own_db"
