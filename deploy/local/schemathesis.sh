#!/usr/bin/env bash
# The API's own OpenAPI document as a test suite: schemathesis (PyPI,
# pinned) generates requests for every operation of /v1/openapi.json and
# checks the answers, as the operator and as a tenant key of its own
# (tenant `schemathesis`, created on first use).
#
#   deploy/local/schemathesis.sh [MAX_EXAMPLES]   (default 10 per operation)
#
# Needs the demo's api running (deploy/local/demo.sh leaves it on
# $API, default http://127.0.0.1:8081). Checks: no server error (5xx),
# answers' content types, headers and bodies match the documented schemas.
# Not yet checked (issue #14): that every status code an operation answers is
# documented (`status_code_conformance`), and that what the spec accepts
# the API accepts (`positive_data_acceptance`).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

MAX_EXAMPLES=${1:-10}
API=${API:-http://127.0.0.1:8081}
SCHEMATHESIS_VERSION=4.32.5
venv="$CACHE/schemathesis-$SCHEMATHESIS_VERSION"
if [ ! -x "$venv/bin/schemathesis" ]; then
  log "installing schemathesis $SCHEMATHESIS_VERSION from PyPI"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet "schemathesis==$SCHEMATHESIS_VERSION"
fi
# A tenant of its own: generated requests create, change and archive what
# they find, which must never be the demo's links.
tenant_key="$STATE/schemathesis-tenant-key"
if [ ! -s "$tenant_key" ]; then
  op=$(cat "$STATE/api-operator-key")
  id=$(curl -fsS -H "Authorization: Bearer $op" "$API/v1/clients?domain=schemathesis.smartlinks.local" |
    python3 -c 'import json,sys; a=json.load(sys.stdin); print(a[0]["id"] if a else "")')
  if [ -z "$id" ]; then
    id=$(curl -fsS -H "Authorization: Bearer $op" -H 'Content-Type: application/json' -X POST "$API/v1/clients" \
      -d '{"name":"Schemathesis","slug":"schemathesis","domain":"schemathesis.smartlinks.local"}' |
      python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
  fi
  curl -fsS -H "Authorization: Bearer $op" -H 'Content-Type: application/json' -X POST "$API/v1/clients/$id/api-keys" \
    -d '{"name":"schemathesis","scopes":["links:write","analytics:read","crm:write","billing:write","gdpr:write","campaigns:write","alerts:write"]}' |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])' >"$tenant_key"
fi
checks=not_a_server_error,content_type_conformance,response_headers_conformance,response_schema_conformance
failed=0
cd "$STATE" # schemathesis keeps its cache (.schemathesis/) in the working directory
for who in operator tenant; do
  case $who in
    operator) key=$(cat "$STATE/api-operator-key") ;;
    tenant) key=$(cat "$tenant_key") ;;
  esac
  log "schemathesis as the $who: every operation, $MAX_EXAMPLES examples each"
  if ! "$venv/bin/schemathesis" run "$API/v1/openapi.json" --checks "$checks" \
      -H "Authorization: Bearer $key" --max-examples "$MAX_EXAMPLES" --phases coverage,fuzzing \
      --seed 1 --no-color >"$STATE/schemathesis-$who.log" 2>&1; then
    grep -a -A12 "FAILURES" "$STATE/schemathesis-$who.log" | head -60
    log "FAIL schemathesis as the $who (full report: $STATE/schemathesis-$who.log)"
    failed=1
  else
    log "ok   schemathesis as the $who: $(grep -a -o '[0-9]* generated, [0-9]* passed' "$STATE/schemathesis-$who.log" | tail -1)"
  fi
done
exit $failed
