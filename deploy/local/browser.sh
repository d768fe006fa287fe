#!/usr/bin/env bash
# The landing page in a real browser: Debian's Chromium driven by
# Playwright (playwright-core from the npm registry, pinned in
# deploy/browser/package.json) checks that the page works under its own
# Content-Security-Policy (security review finding 17, issue #14):
#
#   deploy/local/browser.sh
#
# - a new visitor sees the consent banner, our nonced script runs, and no
#   pixel script is requested before consent;
# - after "Accept", the tenant's pixels (GTM, GA4, Meta, TikTok) load and
#   receive smartlink_view / smartlink_click with the server's event ids;
#   hidden, the page reports its engagement to the edge (issue #19: a
#   beacon to its own URL, answered 204);
# - after "Refuse", and with `DNT: 1`, the policy allows no script but ours
#   and no pixel is requested;
# - a link whose texts carry markup runs none of it;
# - another site cannot frame the page (`frame-ancestors 'none'`);
# - no Content-Security-Policy violation anywhere (a listener on
#   `securitypolicyviolation` and the console).
#
# Needs the demo's edge and api running (deploy/local/demo.sh). Creates, on
# first use, a tenant of its own (`browser.smartlinks.local`, every pixel
# set) and its link through the API. Pixel hosts are answered by the test
# with stub scripts: the machine has no network, and the check is about
# what the policy lets the page load, not the vendors' code.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

API=${API:-http://127.0.0.1:8081}
EDGE=${EDGE:-http://127.0.0.1:8080}
HOST=browser.smartlinks.local
SLUG=csp-check

command -v chromium >/dev/null || apt_install chromium
command -v npm >/dev/null || apt_install npm
deps="$CACHE/browser-$(sha256sum "$ROOT/deploy/browser/package.json" | cut -c1-12)"
if [ ! -f "$deps/.complete" ]; then
  log "browser: installing $(grep -o '"playwright-core": "[^"]*"' "$ROOT/deploy/browser/package.json") from the npm registry"
  rm -rf "$deps" && mkdir -p "$deps"
  cp "$ROOT/deploy/browser/package.json" "$deps/"
  (cd "$deps" && npm install --silent --no-audit --no-fund >/dev/null) || die "browser: npm install failed"
  touch "$deps/.complete"
fi

# The check's tenant and link (idempotent).
op=$(cat "$STATE/api-operator-key")
call() { curl -fsS -H "Authorization: Bearer $op" -H 'Content-Type: application/json' "$@"; }
tracking='"tracking":{"gtm":"GTM-CSPCHECK","ga4":"G-CSPCHECK1","meta_pixel":"1234567890","tiktok":"CSPCHECK01"}'
# Found, the tenant is set back as the check needs it (schemathesis'
# operator run may suspend it or change its pixels).
tenant=$(api_tenant "$HOST" "{\"name\":\"Browser Check\",\"slug\":\"browser-check\",\"domain\":\"$HOST\",$tracking}" \
  "{\"status\":\"active\",$tracking}")
# Texts with markup: the page must show them as text and run none of it.
# Each run sets the link as the check needs it (created, or patched back:
# schemathesis' operator run may change or archive any tenant's links).
title='In Your Light \"><img src=x onerror=\"window.__xss=1\"></script><script>window.__xss=2</script>'
link="\"status\":\"active\",\"track\":{\"title\":\"$title\",\"artist_name\":\"Jiro <b>bold</b>\"},
  \"platforms\":{\"spotify\":\"https://open.spotify.com/track/csp\",\"deezer\":\"https://www.deezer.com/track/csp\"}"
status=$(curl -sS -o "$STATE/browser-link.json" -w '%{http_code}' -H "Authorization: Bearer $op" -H 'Content-Type: application/json' \
  -X POST "$API/v1/smartlinks" -d "{\"client_id\":\"$tenant\",\"slug\":\"$SLUG\",$link}")
case $status in
  201) ;;
  409)
    id=$(call "$API/v1/smartlinks?client_id=$tenant&limit=200" |
      python3 -c "import json,sys; print(next(l['id'] for l in json.load(sys.stdin)['items'] if l['slug'] == '$SLUG'))")
    call -o /dev/null -X PATCH "$API/v1/smartlinks/$id" \
      -d "{$link,\"publish_at\":\"\",\"expires_at\":\"\",\"expired_url\":\"\",\"routing\":{}}" ;;
  *) die "browser: creating the link answered $status: $(cat "$STATE/browser-link.json")" ;;
esac
sleep 2 # the edge picks a tenant or link change up within about a second

log "browser: the landing page under its CSP in Chromium ($(chromium --version 2>/dev/null | head -1))"
BROWSER_DEPS="$deps" PAGE_URL="http://$HOST:${EDGE##*:}/$SLUG" PAGE_HOST="$HOST" \
  node "$ROOT/deploy/browser/csp.mjs"
