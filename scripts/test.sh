#!/usr/bin/env bash
# The whole suite, as CI runs it (`make test` calls this after installing the test extras):
#   0. lint first, failing fast: ruff check, ruff format --check and mypy --strict
#      (scripts/lint.sh, also `make check`), before anything is installed or started;
#   1. system packages the browser tests need (Debian's chromium; never `playwright install`);
#   2. real services on 127.0.0.1 — Slurm with accounting, a Ray head, PostgreSQL —
#      started by scripts/services.sh and stopped by PID when this script exits;
#   3. the suite on SQLite (unit, contract on every backend, integration, e2e), and
#   4. beside it, the store, server and integration tests again on PostgreSQL.
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

pg_pid=""
stop_services() {
    # An interrupted run leaves no PostgreSQL pass behind (it would outlive its services).
    [ -n "$pg_pid" ] && kill "$pg_pid" 2>/dev/null
    bash scripts/services.sh stop all || true
}
trap stop_services EXIT
log "starting Slurm, Ray and PostgreSQL"
t0=$(date +%s)
bash scripts/services.sh start all
log "services up in $(( $(date +%s) - t0 )) s"
# shellcheck disable=SC1091
. var/services/env.sh

# The two passes run side by side: most of their time is spent waiting on real
# processes (servers, agents, jobs), not on the CPU, so together they take little
# longer than the SQLite pass alone (~30 min), where one after the other took ~40.
# The PostgreSQL pass keeps its own pytest base dir (two sessions sharing one would
# prune each other's) and its own log, printed when it ends.
pg_log=var/test-postgres.log
pg_base="${TMPDIR:-/tmp}/pytest-of-$(id -un)-pg/pytest-pg"  # pytest-*: tests/conftest.py opens it to job users
mkdir -p var "$(dirname "$pg_base")"
log "store, server and integration suites on PostgreSQL ($CNET_PG_URL), beside the SQLite suite; log: $pg_log"
CNET_TEST_DB_URL="$CNET_PG_URL" $BIN/pytest -q -p no:cacheprovider --basetemp="$pg_base" \
    tests/unit/store tests/unit/server tests/integration \
    -m "not services and not e2e and not own_db" >"$pg_log" 2>&1 &
pg_pid=$!

log "suite on SQLite"
sqlite_rc=0
$BIN/pytest -q -p no:cacheprovider --ignore=tests/integration/test_services.py "$@" || sqlite_rc=$?

pg_rc=0
wait "$pg_pid" || pg_rc=$?
log "PostgreSQL pass (exit $pg_rc):"
tail -n 60 "$pg_log" >&2
log "SQLite suite exit $sqlite_rc, PostgreSQL pass exit $pg_rc"
[ "$sqlite_rc" -eq 0 ] && [ "$pg_rc" -eq 0 ]
