#!/usr/bin/env bash
# Fetches the public user-agent lists the bot benchmark measures on
# (benches/src/bin/bot_recall.rs), pinned, from the npm registry, into
# $SMARTLINKS_CACHE_DIR/bot-data/. Idempotent: a second run does nothing.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CRAWLERS=crawler-user-agents@1.60.0
BROWSERS=user-agents@2.1.198
out="$CACHE/bot-data"
mkdir -p "$out"
fetch() { # package@version, file inside the package, destination name
  local stamp="$out/.$(echo "$1" | tr '@/' '__')"
  [ -f "$stamp" ] && [ -f "$out/$3" ] && return
  local tmp; tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent "$1" >/dev/null && tar xzf ./*.tgz)
  cp "$tmp/package/$2" "$out/$3"
  rm -rf "$tmp"
  touch "$stamp"
  log "bot data: $1 → $out/$3"
}
fetch "$CRAWLERS" crawler-user-agents.json crawler-user-agents.json
fetch "$BROWSERS" dist/user-agents.json user-agents.json
