#!/usr/bin/env bash
# Rebuild the dashboard's static files (src/computenet/web/static) from web-src/.
# Needs Node.js >= 18 and npm; installs exactly what web-src/package-lock.json pins.
# The built files are committed, so serving the dashboard (`make demo`) needs no Node.js.
#   scripts/build-web.sh          install (npm ci), type-check, build
#   scripts/build-web.sh --check  also fail if the result differs from what git has
set -euo pipefail
cd "$(dirname "$0")/../web-src"

if ! command -v npm >/dev/null 2>&1; then
  echo "error: npm not found; install Node.js (e.g. apt-get install -y nodejs npm) to rebuild the dashboard" >&2
  exit 2
fi

npm ci --no-audit --no-fund --loglevel=error
npx --no-install tsc --noEmit -p .
node build.mjs

if [[ "${1:-}" == "--check" ]]; then
  cd ..
  if ! git diff --quiet -- src/computenet/web/static || [[ -n "$(git ls-files --others --exclude-standard src/computenet/web/static)" ]]; then
    echo "error: src/computenet/web/static differs from web-src; commit the rebuilt files" >&2
    git status --short -- src/computenet/web/static >&2
    exit 1
  fi
  echo "dashboard assets are up to date"
fi
