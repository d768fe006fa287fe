#!/usr/bin/env bash
# The dashboard end to end in a real browser (issue #20): Debian's Chromium
# driven by Playwright (playwright-core and axe-core pinned in
# web/package-lock.json) against the demo's api and edge:
#
#   deploy/local/app-e2e.sh
#
# Needs deploy/local/demo.sh first (the stages, the built dashboard, the demo
# logins in .state/app-logins.json). Signs in as the demo's admin, viewer and
# the operator; checks every page's numbers against the API, link creation
# through to the edge, role limits, accessibility (axe-core), CSP; prints the
# overview's first load and the JavaScript transferred. Screenshots of every
# page: .state/artifacts/app/*.png (web/e2e/app.mjs says what each checks).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

command -v chromium >/dev/null || apt_install chromium
[ -f "$ROOT/web/dist/index.html" ] && [ -d "$ROOT/web/node_modules/playwright-core" ] || "$DEPLOY/web.sh"
[ -s "$STATE/app-logins.json" ] || die "app-e2e: no demo logins: run deploy/local/demo.sh first"
log "dashboard in Chromium ($(chromium --version 2>/dev/null | head -1))"
(cd "$ROOT/web" && ARTIFACTS="$STATE/artifacts/app" node e2e/app.mjs)
