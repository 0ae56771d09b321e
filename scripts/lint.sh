#!/usr/bin/env bash
# Lint and type-check, as CI runs them before any test (scripts/test.sh) and as
# `make check` runs them: ruff's rules, ruff's formatting (checked, never
# rewritten here: `make format` does that) and mypy --strict (options in
# pyproject.toml, [tool.mypy]). Stops at the first that fails.
# The ruff version is pinned in pyproject.toml's test extras, so CI and every
# developer's .venv agree on the rules and the format.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
PATHS=(src tests bench)

log() { printf '[lint] %s\n' "$*" >&2; }

log "ruff check ${PATHS[*]}  ($($BIN/ruff --version))"
$BIN/ruff check "${PATHS[@]}"
log "ruff format --check ${PATHS[*]}"
$BIN/ruff format --check "${PATHS[@]}"
log "mypy (strict; files and options from pyproject.toml)"
$BIN/mypy
