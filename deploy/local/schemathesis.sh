#!/usr/bin/env bash
# The API's own OpenAPI document as a test suite: schemathesis (PyPI,
# pinned) generates requests for every operation of /v1/openapi.json and
# checks the answers, as the operator, as a tenant key of its own (tenant
# `schemathesis`, created on first use) and as a session of an admin user
# of that tenant (logged in on each run).
#
#   deploy/local/schemathesis.sh [MAX_EXAMPLES]   (default 10 per operation)
#
# Needs the demo's api running (deploy/local/demo.sh leaves it on
# $API, default http://127.0.0.1:8081). Checks (chosen in
# deploy/schemathesis/schemathesis.toml): no server error (5xx);
# every status answered is documented for its operation
# (status_code_conformance); answers' content types, headers and bodies
# match the documented schemas; and what the document says is valid input
# is accepted (positive_data_acceptance) — except on the operations listed
# in deploy/schemathesis/schemathesis.toml, whose rules tie parameters
# together in ways OpenAPI cannot state (each with its reason there).
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
DOMAIN=schemathesis.smartlinks.local
# Enterprise, with room for a user per run and every generated request:
# the plan limits have their own tests (api/tests/api.rs).
LIMITS='"plan_type":"enterprise","settings":{"max_users_per_client":100000,"api_rate_limit":100000000}'
TENANT="{\"name\":\"Schemathesis\",\"slug\":\"schemathesis\",\"domain\":\"$DOMAIN\",$LIMITS}"
tenant_key="$STATE/schemathesis-tenant-key"
# Made, or brought to today's plan and limits, before any run.
id=$(api_tenant "$DOMAIN" "$TENANT" "{$LIMITS}")
if [ ! -s "$tenant_key" ]; then
  op=$(cat "$STATE/api-operator-key")
  curl -fsS -H "Authorization: Bearer $op" -H 'Content-Type: application/json' -X POST "$API/v1/clients/$id/api-keys" \
    -d '{"name":"schemathesis","scopes":["links:write","analytics:read","crm:write","billing:write","gdpr:write","campaigns:write","alerts:write"]}' |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])' >"$tenant_key"
fi
# A session: a new admin user of that tenant each run (a generated
# request may change the last one's password or disable it), logged in.
session() {
  local op tenant email password
  op=$(cat "$STATE/api-operator-key")
  tenant=$(api_tenant "$DOMAIN" "$TENANT" "{$LIMITS}")
  email="run-$(date +%s)-$$@schemathesis.test"
  password="schemathesis-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
  curl -fsS -o /dev/null -H "Authorization: Bearer $op" -H 'Content-Type: application/json' -X POST "$API/v1/users" \
    -d "{\"client_id\":\"$tenant\",\"email\":\"$email\",\"password\":\"$password\",\"first_name\":\"Schema\",\"last_name\":\"Thesis\",\"role\":\"admin\"}"
  curl -fsS -H 'Content-Type: application/json' -X POST "$API/v1/auth/login" \
    -d "{\"email\":\"$email\",\"password\":\"$password\"}" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])'
}
failed=0
cd "$STATE" # schemathesis keeps its cache (.schemathesis/) in the working directory
for who in operator tenant session; do
  exclude=()
  case $who in
    # The operator names the tenant it acts for (`client_id`, required for
    # it alone): what it may send is not what the document, written for a
    # tenant's keys and sessions, says is valid — every other check runs.
    operator) key=$(cat "$STATE/api-operator-key"); exclude=(--exclude-checks positive_data_acceptance) ;;
    tenant) key=$(cat "$tenant_key") ;;
    # Logging out would end the run's own session at its first operation.
    session) key=$(session); exclude=(--exclude-path /v1/auth/logout) ;;
  esac
  log "schemathesis as the $who: every operation, $MAX_EXAMPLES examples each"
  if ! "$venv/bin/schemathesis" --config-file "$ROOT/deploy/schemathesis/schemathesis.toml" run "$API/v1/openapi.json" \
      "${exclude[@]}" -H "Authorization: Bearer $key" --max-examples "$MAX_EXAMPLES" \
      --phases coverage,fuzzing --seed 1 --no-color >"$STATE/schemathesis-$who.log" 2>&1; then
    grep -a -A12 "FAILURES\|ERRORS" "$STATE/schemathesis-$who.log" | head -60 || true
    log "FAIL schemathesis as the $who (full report: $STATE/schemathesis-$who.log)"
    failed=1
  else
    log "ok   schemathesis as the $who: $(grep -a -o '[0-9]* generated, [0-9]* passed' "$STATE/schemathesis-$who.log" | tail -1)"
  fi
done
exit $failed
