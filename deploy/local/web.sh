#!/usr/bin/env bash
# Builds the dashboard (web/, issue #20) into web/dist, which the api serves
# under /app/ (API_APP_DIR):
#
#   deploy/local/web.sh
#
# Node.js 20.19+ and npm come with this project's machines (Vite 8 needs
# them; Debian's nodejs is older). Packages come from the npm registry at the
# versions web/package-lock.json pins (`npm ci`, into web/node_modules, kept
# while the lock file is unchanged). The build type-checks (tsc), bundles
# (Vite), gzips every text asset and prints the JavaScript's gzipped size
# against its 300 KB budget (web/scripts/budget.mjs fails the build above it).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

WEB="$ROOT/web"
command -v node >/dev/null && command -v npm >/dev/null || die "web: Node.js and npm are needed (this project's machines have them)"
node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a==20&&b>=19)?0:1)' ||
  die "web: Node.js $(node --version) is too old for Vite 8 (20.19+ or 22.12+)"
lock=$(sha256sum "$WEB/package-lock.json" | cut -c1-16)
if [ "$(cat "$WEB/node_modules/.lock-sha" 2>/dev/null)" != "$lock" ]; then
  log "web: installing the dashboard's packages from the npm registry (npm ci)"
  (cd "$WEB" && npm ci --no-audit --no-fund --loglevel=error >/dev/null) || die "web: npm ci failed"
  echo "$lock" >"$WEB/node_modules/.lock-sha"
fi
log "web: building the dashboard (web/dist)"
(cd "$WEB" && npm run --silent build) | sed 's/^/  /'
[ "${PIPESTATUS[0]}" -eq 0 ] || die "web: build failed"
