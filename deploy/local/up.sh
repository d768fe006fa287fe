#!/usr/bin/env bash
# Installs (when missing) and starts the local stack on loopback: Apache Kafka
# (127.0.0.1:9092), ClickHouse (8123/9000), FerretDB, a MongoDB-wire server
# (27017), Prometheus (9090, scraping the stages' admin listeners, rules in
# deploy/prometheus) and Alertmanager (9095; Kafka's controller has 9093); then runs `migrate` (topics,
# ClickHouse tables, MongoDB indexes).
# A second run changes nothing. State: $SMARTLINKS_STATE_DIR (default .state/).
source "$(dirname "$0")/lib.sh"

mkdir -p "$STATE" "$CACHE"
ensure_build_deps
install_data
install_kafka   # also used by tests that run a private broker (testkit::KafkaInstance)
start_kafka
start_clickhouse
start_ferretdb
start_prometheus
start_alertmanager

log "migrate: building and applying topics, ClickHouse DDL and MongoDB indexes"
cargo build -q -p migrate --bin migrate 2>"$STATE/migrate-build.log" \
  || die "migrate: build failed" "$STATE/migrate-build.log"
RUST_LOG=${RUST_LOG:-warn} "$CARGO_TARGET_DIR/debug/migrate" || die "migrate failed"

"$DEPLOY/status.sh"
